// A reload of the broker's configuration: what it applies, what it reports,
// the pure comparison of the listeners it has with those asked for, and the
// all-or-none creation of the new sockets. Broker.applyReload() carries the
// plan out atomically (every new socket is created before anything changes).
import { native } from '../native/binding';
import { FdbrokerError } from '../protocol/errors';
import type { AccessOptions } from './access';
import { ruleChanges } from './grants';
import { createListener, type CreateListenerOptions, type OwnedListener } from './listeners';
import type { ListenerSpec } from './spec';

/** What a reload applies: the listeners wanted, and the grants and limits for requests from now on. */
export interface ReloadSettings {
  /** Every listener created from a spec that should exist after the reload (others created from a spec are removed). */
  listeners: ListenerSpec[];
  /** Replaces the grants (absent: no grants besides the broker's own uid and root). */
  access?: AccessOptions;
  /** Absent fields: the broker's defaults. */
  limits?: { maxClients?: number; maxClientsPerUid?: number };
}

/** The outcome of a reload, by listener name. A changed listener (same name, another spec) was removed and added again. */
export interface ReloadResult {
  added: string[];
  removed: string[];
  changed: string[];
  /** Grants given and taken, as "allow-uid +1001", "allow-status-gid -50", "grant +uid=33 adopt=http status" (grantChanges). */
  grants?: string[];
}

const GRANT_FIELDS: ReadonlyArray<[Exclude<keyof AccessOptions, 'grants'>, string]> = [
  ['allowUids', 'allow-uid'], ['allowGids', 'allow-gid'], ['statusUids', 'allow-status-uid'], ['statusGids', 'allow-status-gid'],
];

/** What changes from `before` to `after`: "allow-uid +1001", "allow-gid -50", ..., then rules: "grant +uid=33 adopt=http" (in a fixed order). */
export function grantChanges(before: AccessOptions, after: AccessOptions): string[] {
  const out: string[] = [];
  for (const [field, flag] of GRANT_FIELDS) {
    const b = new Set(before[field] ?? []);
    const a = new Set(after[field] ?? []);
    for (const id of [...a].sort((x, y) => x - y)) if (!b.has(id)) out.push(`${flag} +${id}`);
    for (const id of [...b].sort((x, y) => x - y)) if (!a.has(id)) out.push(`${flag} -${id}`);
  }
  return [...out, ...ruleChanges(before.grants ?? [], after.grants ?? [])];
}

export interface ListenerPlan {
  /** Specs of new names. */
  add: ListenerSpec[];
  /** Names no longer wanted. */
  remove: string[];
  /** Specs of names whose spec differs: remove the old socket, add a new one. */
  change: ListenerSpec[];
  /** Specs of names whose address is the same and only socket options differ (nodelay, backlog): applied to the held socket in place. */
  retune: ListenerSpec[];
}

/** Where the socket is bound (and its file's mode): what only a new socket can change. */
function address(s: ListenerSpec): string {
  return JSON.stringify([s.kind, s.host ?? null, s.port ?? null, s.path ?? null, s.mode ?? null]);
}

/** The options a held socket can take in place (setsockopt, listen again), resolved. */
function options(s: ListenerSpec, defaultBacklog: number): string {
  return JSON.stringify([s.kind === 'udp' ? null : s.backlog ?? defaultBacklog, s.nodelay === true]);
}

/**
 * Compares the listeners created from specs (`current`, by name) with those
 * wanted (`next`, names unique). Listeners not created from a spec (taken
 * from systemd or another broker) are not in `current` and not touched.
 */
export function planListeners(current: ReadonlyMap<string, ListenerSpec>, next: readonly ListenerSpec[], defaultBacklog: number): ListenerPlan {
  const plan: ListenerPlan = { add: [], remove: [], change: [], retune: [] };
  const wanted = new Set(next.map((s) => s.name));
  for (const name of current.keys()) if (!wanted.has(name)) plan.remove.push(name);
  for (const s of next) {
    const old = current.get(s.name);
    if (!old) plan.add.push(s);
    else if (address(old) !== address(s)) plan.change.push(s);
    else if (options(old, defaultBacklog) !== options(s, defaultBacklog)) plan.retune.push(s);
  }
  return plan;
}

/**
 * Creates a socket for each spec, all or none: if one fails, those created
 * are closed and ERR_FDBROKER_RELOAD_FAILED is thrown (the system error as
 * cause). `changed`: names that still have a socket, for the hint when the
 * new one cannot bind beside it. The caller owns the returned fds.
 */
export function createAll(specs: readonly ListenerSpec[], defaultBacklog: number, changed: ReadonlySet<string>,
  options: CreateListenerOptions = {}): Array<{ l: OwnedListener; spec: ListenerSpec }> {
  const created: Array<{ l: OwnedListener; spec: ListenerSpec }> = [];
  let spec: ListenerSpec | undefined;
  try {
    for (spec of specs) created.push({ l: createListener(spec, defaultBacklog, options), spec });
    return created;
  } catch (err) {
    for (const c of created) native().close(c.l.fd);
    const e = err as Error & { code?: string };
    const hint = spec && changed.has(spec.name) && e.code === 'EADDRINUSE'
      ? ' (a changed listener is bound anew before its old socket closes: give it another address, or restart the broker)' : '';
    throw new FdbrokerError('ERR_FDBROKER_RELOAD_FAILED', `reload refused, nothing changed: ${e.message}${hint}`, { cause: err });
  }
}
