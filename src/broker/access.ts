// Who may talk to a broker: a pure decision on the peer's uid and gid from
// SO_PEERCRED, never on its pid (pids are reused). Two grants: "adopt"
// (receive listeners, join, ready) and "status" (read the broker's state).
// Default: the broker's own uid, and root, have both.

export type Grant = 'adopt' | 'status';

export interface AccessPolicy {
  adoptUids: ReadonlySet<number>;
  adoptGids: ReadonlySet<number>;
  statusUids: ReadonlySet<number>;
  statusGids: ReadonlySet<number>;
}

export interface AccessOptions {
  /** uids given both grants, besides the broker's own and root. */
  allowUids?: number[];
  /** gids (the peer's primary gid) given both grants. */
  allowGids?: number[];
  /** uids given only the status grant. */
  statusUids?: number[];
  /** gids given only the status grant. */
  statusGids?: number[];
}

export function makePolicy(brokerUid: number, o: AccessOptions = {}): AccessPolicy {
  const adoptUids = new Set([0, brokerUid, ...(o.allowUids ?? [])]);
  const adoptGids = new Set(o.allowGids ?? []);
  return {
    adoptUids,
    adoptGids,
    statusUids: new Set([...adoptUids, ...(o.statusUids ?? [])]),
    statusGids: new Set([...adoptGids, ...(o.statusGids ?? [])]),
  };
}

/** Whether a peer with these credentials has `grant`. Unknown credentials (-1) never do. */
export function allows(p: AccessPolicy, cred: { uid: number; gid: number }, grant: Grant): boolean {
  if (cred.uid < 0 || cred.gid < 0) return false;
  return grant === 'adopt'
    ? p.adoptUids.has(cred.uid) || p.adoptGids.has(cred.gid)
    : p.statusUids.has(cred.uid) || p.statusGids.has(cred.gid);
}

/** Whether the peer may do anything at all (connect and say hello). */
export function allowsAny(p: AccessPolicy, cred: { uid: number; gid: number }): boolean {
  return allows(p, cred, 'adopt') || allows(p, cred, 'status');
}
