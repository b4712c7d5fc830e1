// adoptListeners(): connect to a broker, receive listeners, check each fd is
// what the broker says it is, and hand them to the caller keyed by name.
import { BrokerConnection, type ReceivedListener } from './connection';
import { native } from '../native/binding';
import { FdbrokerError } from '../protocol/errors';
import { Listener } from './listener';
import { describeSockets, matchesInfo } from '../transport/socket-info';
import { DEFAULT_CHECK, DEFAULT_FD_HEADROOM, DEFAULT_TIMEOUT_MS } from './defaults';
import { checkFdHeadroom } from './fd-headroom';
import { assertSupportedRuntime } from '../native/runtime';

export interface AdoptOptions {
  /** Only these listeners (default: every listener the broker has). */
  names?: string[];
  /** Deadline for connect + handshake + transfer, in ms (default 10 s). */
  timeout?: number;
  /** fds that must stay free below RLIMIT_NOFILE after adopting (default 64; 0 to skip the check). */
  fdHeadroom?: number;
  /** uids trusted to run the broker (default: this process's uid, and root). */
  trustUids?: number[];
  /**
   * When each fd is checked against what the broker announced (a socket of
   * that kind and family, listening, on that port): 'use' (default) when its
   * number is first given out (`listener.fd`, attach(), handOff()), which
   * then throws ERR_FDBROKER_BAD_LISTENER; 'adopt' before adoptListeners()
   * resolves, which then rejects. The check is three syscalls per fd: 'use'
   * spares them for listeners never used.
   */
  check?: 'adopt' | 'use';
}

/**
 * Adopts listeners from the broker at `path`.
 *
 * Resolves to the listeners keyed by name. Each Listener owns a fresh,
 * close-on-exec duplicate of the broker's socket: pass it to
 * `listener.attach(server)` (or `server.listen({ fd: l.fd }, l.backlog)`),
 * after which the server owns it; call `listener.close()` for one you do not
 * use. Fds the caller did not ask for, and every fd on an error path, are
 * closed before this returns. The connection to the broker is closed.
 *
 * Errors (FdbrokerError `code`): ERR_FDBROKER_NO_BROKER, ERR_FDBROKER_ACCESS_DENIED,
 * ERR_FDBROKER_NOT_A_BROKER, ERR_FDBROKER_VERSION, ERR_FDBROKER_UNKNOWN_LISTENER,
 * ERR_FDBROKER_BAD_LISTENER (with `check: 'adopt'`; by default the fd getter or attach()
 * throws it at first use), ERR_FDBROKER_TIMEOUT, ERR_FDBROKER_PROTOCOL,
 * ERR_FDBROKER_FD_HEADROOM (too close to RLIMIT_NOFILE to adopt safely).
 */
export async function adoptListeners(path: string, options: AdoptOptions = {}): Promise<Record<string, Listener>> {
  assertSupportedRuntime();
  if (typeof path !== 'string' || path.length === 0) {
    throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', 'adoptListeners(path): path must be the broker\'s control socket path');
  }
  checkFdHeadroom(options.fdHeadroom ?? DEFAULT_FD_HEADROOM, options.names?.length ?? 1);
  const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
  // One round trip: the adopt goes out right behind the hello (PROTOCOL.md §2.1).
  const received = await BrokerConnection.adoptOnce(path, options.names, { timeout, trustUids: options.trustUids });
  return toListeners(received, options.names, options.check ?? DEFAULT_CHECK);
}

/**
 * Checks (now, or at first use with `check: 'use'`) and wraps received fds;
 * closes all of them on any failure, and those not asked for.
 */
export function toListeners(received: ReceivedListener[], names?: string[], check: 'adopt' | 'use' = 'adopt'): Record<string, Listener> {
  const wanted = names ? new Set(names) : undefined;
  const out: Record<string, Listener> = Object.create(null) as Record<string, Listener>;
  const n = native();
  try {
    const kept: ReceivedListener[] = [];
    const seen = new Set<string>();
    for (const r of received) {
      if ((wanted && !wanted.has(r.info.name)) || seen.has(r.info.name)) {
        n.close(r.fd);
        r.fd = -1;
      } else {
        seen.add(r.info.name);
        kept.push(r);
      }
    }
    const described = check === 'adopt' ? describeSockets(kept.map((r) => r.fd)) : [];
    const batch: Listener[] = [];
    for (let i = 0; i < kept.length; i++) {
      const r = kept[i]!;
      if (check === 'adopt') {
        const d = described[i]!;
        const problem = d instanceof Error ? `cannot be inspected (${d.message})` : matchesInfo(d, r.info);
        if (problem) {
          throw new FdbrokerError('ERR_FDBROKER_BAD_LISTENER', `listener "${r.info.name}" ${problem}`);
        }
      }
      out[r.info.name] = new Listener(r.info, r.fd, check === 'adopt' ? {} : { check: 'use', batch });
      r.fd = -1;
    }
    if (wanted) {
      const missing = [...wanted].filter((w) => !out[w]);
      if (missing.length > 0) {
        throw new FdbrokerError('ERR_FDBROKER_UNKNOWN_LISTENER', `the broker did not send ${missing.map((m) => `"${m}"`).join(', ')}`);
      }
    }
    return out;
  } catch (err) {
    for (const r of received) if (r.fd >= 0) n.close(r.fd);
    for (const l of Object.values(out)) l.close();
    throw err;
  }
}
