// Per-name grants (in the manner of s6-fdholderd's rules): which uid or gid
// may adopt which listeners by name, and who may read status, deploy (join as
// a generation), reload or take over. Pure: rules in, decisions out; no I/O,
// no user database (names are resolved to ids before a rule gets here).
//
// Contract:
// - The broker's own uid and root may do everything, rules or not: they can
//   take the broker's fds anyway (ptrace, pidfd_getfd, its config file).
// - Any other peer may do only what some rule matching it grants: a rule
//   matches a peer by its uid, or by its primary gid (SO_PEERCRED carries no
//   supplementary groups). Several matching rules add up (a union).
// - A listener name it is not granted is never named to it: not in a
//   handout, not in status, not in an error text (asking for one it was not
//   granted gets the same answer whether it exists or not).

/** What a rule can grant. */
export type GrantOp = 'adopt' | 'status' | 'deploy' | 'reload' | 'takeover';

/** The grant a request needs (the request as the audit names it). */
export function grantOf(request: 'connect' | 'adopt' | 'join' | 'rejoin' | 'ready' | 'status' | 'reload' | 'takeover'): GrantOp {
  switch (request) {
    case 'status': return 'status';
    case 'join': case 'rejoin': case 'ready': return 'deploy';
    case 'reload': return 'reload';
    case 'takeover': return 'takeover';
    default: return 'adopt';
  }
}

/** Every listener, present and future (not a valid listener name). */
export const ALL_NAMES = '*';

/** One rule: exactly one of uid, gid; then what it grants. */
export interface GrantRule {
  uid?: number;
  gid?: number;
  /** Listener names it may adopt (and receive when it joins as a generation); ["*"]: every listener. */
  adopt?: string[];
  /** Read status: true shows the listeners of `adopt`; names (or ["*"]) show those too. */
  status?: boolean | string[];
  /** Join as a generation, say ready (which retires the one serving), rejoin after a broker restart. */
  deploy?: boolean;
  /** Make the broker re-read its configuration. */
  reload?: boolean;
  /** Replace the broker (receives every listener, whatever `adopt` says). */
  takeover?: boolean;
}

/** The listener names a peer may see or take: every one, or those named. */
export type NameScope = { all: true } | { all: false; names: ReadonlySet<string> };

export interface GrantPolicy {
  /** uids that may do everything: root and the broker's own. */
  owners: ReadonlySet<number>;
  rules: readonly GrantRule[];
}

export interface Peer { uid: number; gid: number }

const NONE: NameScope = { all: false, names: new Set() };

export function grantPolicy(brokerUid: number, rules: readonly GrantRule[]): GrantPolicy {
  return { owners: new Set([0, brokerUid]), rules };
}

/** Unknown credentials (-1) match nothing and own nothing. */
const known = (p: Peer) => p.uid >= 0 && p.gid >= 0;
const isOwner = (pol: GrantPolicy, p: Peer) => known(p) && pol.owners.has(p.uid);

function matching(pol: GrantPolicy, p: Peer): GrantRule[] {
  if (!known(p)) return [];
  return pol.rules.filter((r) => (r.uid !== undefined && r.uid === p.uid) || (r.gid !== undefined && r.gid === p.gid));
}

function union(lists: Array<readonly string[] | undefined>): NameScope {
  const names = new Set<string>();
  for (const l of lists) {
    for (const n of l ?? []) {
      if (n === ALL_NAMES) return { all: true };
      names.add(n);
    }
  }
  return { all: false, names };
}

/** Whether `p` may do `op` at all (for adopt: some name; for status: the request itself). */
export function mayDo(pol: GrantPolicy, p: Peer, op: GrantOp): boolean {
  if (isOwner(pol, p)) return true;
  return matching(pol, p).some((r) => {
    if (op === 'adopt') return (r.adopt?.length ?? 0) > 0;
    if (op === 'status') return r.status === true || (Array.isArray(r.status) && r.status.length > 0);
    return r[op] === true;
  });
}

/** Whether `p` may do anything at all: a peer that may not is refused at accept. */
export function mayDoAnything(pol: GrantPolicy, p: Peer): boolean {
  return (['adopt', 'status', 'deploy', 'reload', 'takeover'] as const).some((op) => mayDo(pol, p, op));
}

/** The names `p` may adopt. */
export function adoptScope(pol: GrantPolicy, p: Peer): NameScope {
  if (isOwner(pol, p)) return { all: true };
  return union(matching(pol, p).map((r) => r.adopt));
}

/** The names `p` sees in status: those it may adopt, and those a status grant names. None without a status grant. */
export function statusScope(pol: GrantPolicy, p: Peer): NameScope {
  if (isOwner(pol, p)) return { all: true };
  const rules = matching(pol, p);
  if (!rules.some((r) => r.status === true || (Array.isArray(r.status) && r.status.length > 0))) return NONE;
  return union([...rules.map((r) => r.adopt), ...rules.map((r) => (Array.isArray(r.status) ? r.status : undefined))]);
}

export function inScope(s: NameScope, name: string): boolean {
  return s.all || s.names.has(name);
}

export type HandoutDecision =
  /** `names`: what to hand out (null: every listener, as asked). */
  | { ok: true; names: string[] | null }
  | { ok: false; code: 'ERR_FDBROKER_NOT_PERMITTED' | 'ERR_FDBROKER_UNKNOWN_LISTENER'; message: string; names?: string[] };

/**
 * Which listeners `p` gets when it asks for `asked` (null: all it may have).
 * `existing`: the broker's listener names, in its order. A peer that may adopt
 * every name gets today's answer (null, or its names, checked by the caller).
 * A scoped peer asking for all gets those of its names that exist; asking for
 * a name outside its scope is refused as not permitted whether or not it
 * exists; an unknown name inside its scope is named as unknown, with only its
 * own names as the hint. `what`: the request, for the texts ("adopt", "join").
 */
export function decideHandout(pol: GrantPolicy, p: Peer, asked: readonly string[] | null, existing: readonly string[], what: string): HandoutDecision {
  const scope = adoptScope(pol, p);
  if (scope.all) return { ok: true, names: asked === null ? null : [...asked] };
  if (scope.names.size === 0) {
    return { ok: false, code: 'ERR_FDBROKER_NOT_PERMITTED', message: `uid ${p.uid} (gid ${p.gid}) may adopt no listener of this broker; ${HINT}` };
  }
  if (asked === null) return { ok: true, names: existing.filter((n) => scope.names.has(n)) };
  const outside = asked.filter((n) => !scope.names.has(n));
  if (outside.length > 0) {
    return {
      ok: false, code: 'ERR_FDBROKER_NOT_PERMITTED', names: outside,
      message: `uid ${p.uid} (gid ${p.gid}) may not ${what} ${quote(outside)}; ${HINT}`,
    };
  }
  const have = new Set(existing);
  const unknown = asked.filter((n) => !have.has(n));
  if (unknown.length > 0) {
    const mine = existing.filter((n) => scope.names.has(n));
    return {
      ok: false, code: 'ERR_FDBROKER_UNKNOWN_LISTENER', names: unknown,
      message: `no listener named ${quote(unknown)}; of the listeners uid ${p.uid} may adopt, this broker has ${mine.length > 0 ? quote(mine) : 'none'}`,
    };
  }
  return { ok: true, names: [...new Set(asked)] };
}

const HINT = 'the broker\'s owner can grant it with --grant or [[grants]] in its configuration';

const quote = (names: readonly string[]) => names.map((n) => `"${n}"`).join(', ');

/** A rule as one line, the syntax of --grant with numeric ids: "uid=33 adopt=http,metrics status deploy". */
export function formatRule(r: GrantRule): string {
  const parts = [r.uid !== undefined ? `uid=${r.uid}` : `gid=${r.gid}`];
  if (r.adopt && r.adopt.length > 0) parts.push(`adopt=${r.adopt.join(',')}`);
  if (r.status === true) parts.push('status');
  else if (Array.isArray(r.status) && r.status.length > 0) parts.push(`status=${r.status.join(',')}`);
  for (const op of ['deploy', 'reload', 'takeover'] as const) if (r[op] === true) parts.push(op);
  return parts.join(' ');
}

/** What changes from `before` to `after`, as "grant +uid=33 adopt=http", "grant -gid=50 status" (removals after additions, each in order). */
export function ruleChanges(before: readonly GrantRule[], after: readonly GrantRule[]): string[] {
  const b = new Set(before.map(formatRule));
  const a = new Set(after.map(formatRule));
  return [...[...a].filter((x) => !b.has(x)).map((x) => `grant +${x}`), ...[...b].filter((x) => !a.has(x)).map((x) => `grant -${x}`)];
}
