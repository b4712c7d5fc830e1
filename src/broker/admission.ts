// Who may keep a connection to the control socket, decided at accept from the
// peer's credentials alone, before any channel or session exists: a refusal
// then costs one reply and a close (see Acceptor.admit). Fail closed: no
// credentials, or credentials without any grant, are refused before the peer
// learns anything about the listeners.
import type { FdbrokerErrorCode } from '../protocol/errors';
import type { PeerCred } from '../transport/acceptor';
import { allowsAny, type AccessPolicy } from './access';

export interface AdmissionState {
  policy: AccessPolicy;
  brokerUid: number;
  clients: number;
  maxClients: number;
  maxClientsPerUid: number;
  /** Clients `uid` has connected now. */
  clientsOfUid: (uid: number) => number;
}

export interface Refusal { code: FdbrokerErrorCode; message: string }

/** Why a peer with `cred` may not connect now, or undefined when it may. */
export function admissionRefusal(cred: PeerCred, s: AdmissionState): Refusal | undefined {
  if (typeof cred === 'number') return { code: 'ERR_FDBROKER_ACCESS_DENIED', message: 'the peer\'s credentials could not be read' };
  if (!allowsAny(s.policy, cred)) {
    return {
      code: 'ERR_FDBROKER_ACCESS_DENIED',
      message: `uid ${cred.uid} (gid ${cred.gid}) may not use this broker; the broker's owner can allow it with --grant (or --allow-uid, --allow-gid)`,
    };
  }
  if (s.clients >= s.maxClients) return { code: 'ERR_FDBROKER_OVERLOADED', message: `the broker serves at most ${s.maxClients} clients at once` };
  if (cred.uid !== s.brokerUid && cred.uid !== 0 && s.clientsOfUid(cred.uid) >= s.maxClientsPerUid) {
    return { code: 'ERR_FDBROKER_UID_LIMIT', message: `uid ${cred.uid} already has ${s.maxClientsPerUid} clients connected` };
  }
  return undefined;
}
