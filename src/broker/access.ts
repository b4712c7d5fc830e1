// Who may talk to a broker: a pure decision on the peer's uid and gid from
// SO_PEERCRED, never on its pid (pids are reused). The options users give
// (the --allow-* lists and per-name rules, --grant / [[grants]]) become one
// GrantPolicy (grants.ts): the --allow-* lists are rules over every name.
// Default: the broker's own uid, and root, may do everything; nobody else
// anything.
import { ALL_NAMES, grantPolicy, mayDo, mayDoAnything, type GrantOp, type GrantPolicy, type GrantRule } from './grants';

export type Grant = GrantOp;
export type AccessPolicy = GrantPolicy;
export type { GrantRule } from './grants';

export interface AccessOptions {
  /** uids that may adopt every listener, deploy and read status, besides the broker's own and root. */
  allowUids?: number[];
  /** gids (the peer's primary gid) given the same. */
  allowGids?: number[];
  /** uids that may only read status (every listener shown). */
  statusUids?: number[];
  /** gids given only that. */
  statusGids?: number[];
  /** Per-name rules (grants.ts); added to what the lists above grant. */
  grants?: GrantRule[];
}

/** The rules the --allow-* lists stand for. */
export function listRules(o: AccessOptions): GrantRule[] {
  const full = (): GrantRule => ({ adopt: [ALL_NAMES], status: true, deploy: true });
  return [
    ...(o.allowUids ?? []).map((uid) => ({ uid, ...full() })),
    ...(o.allowGids ?? []).map((gid) => ({ gid, ...full() })),
    ...(o.statusUids ?? []).map((uid) => ({ uid, status: [ALL_NAMES] })),
    ...(o.statusGids ?? []).map((gid) => ({ gid, status: [ALL_NAMES] })),
  ];
}

export function makePolicy(brokerUid: number, o: AccessOptions = {}): AccessPolicy {
  return grantPolicy(brokerUid, [...listRules(o), ...(o.grants ?? [])]);
}

/** Whether a peer with these credentials may do `grant` (adopt: some listener). Unknown credentials (-1) never may. */
export function allows(p: AccessPolicy, cred: { uid: number; gid: number }, grant: Grant): boolean {
  return mayDo(p, cred, grant);
}

/** Whether the peer may do anything at all (connect and say hello). */
export function allowsAny(p: AccessPolicy, cred: { uid: number; gid: number }): boolean {
  return mayDoAnything(p, cred);
}
