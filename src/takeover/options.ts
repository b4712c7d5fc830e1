// Broker takeover, the pure parts: who may take over (versions), what a
// broker hands its successor (options), and how the successor combines that
// with its own flags and listener specs. No I/O. The wire sequence is in
// PROTOCOL.md §2.9; the promises under faults in docs/FAULTS.md.
import { FdbrokerError } from '../protocol/errors';
import type { HandoffOptions, ListenerInfo } from '../protocol/messages';
import type { BrokerOptions } from '../broker/options';
import type { ListenerSpec } from '../broker/spec';

/** "fdbroker/1.2.3" or "1.2.3" -> [1, 2, 3, pre] (pre 0 for a release, -1 for a pre-release); undefined if not a version. */
function parseSoftware(v: string): [number, number, number, number] | undefined {
  const m = /^(?:fdbroker\/)?(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(?:\+.*)?$/.exec(v);
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3]), m[4] ? -1 : 0];
}

/** Orders two software versions: < 0 when a is older than b, 0 equal, > 0 newer; undefined when either is not a version. */
export function compareSoftware(a: string, b: string): number | undefined {
  const x = parseSoftware(a);
  const y = parseSoftware(b);
  if (!x || !y) return undefined;
  for (let i = 0; i < 4; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

/**
 * Why a successor of these versions may not take over from this broker, or
 * undefined when it may: an older protocol or an older (or unreadable)
 * software version would not understand everything this broker hands over.
 */
export function refuseSuccessor(mine: { protocol: number; software: string }, theirs: { protocol: number; software: string }): FdbrokerError | undefined {
  if (theirs.protocol < mine.protocol) {
    return new FdbrokerError('ERR_FDBROKER_VERSION',
      `a broker speaking protocol ${theirs.protocol} may not take over from this one (protocol ${mine.protocol}): it could not serve every client; run the takeover with fdbroker ${mine.software} or newer`);
  }
  const order = compareSoftware(theirs.software, mine.software);
  if (order === undefined) {
    return new FdbrokerError('ERR_FDBROKER_VERSION', `the successor's version "${theirs.software}" is not a version this broker can compare with ${mine.software}`);
  }
  if (order < 0) {
    return new FdbrokerError('ERR_FDBROKER_VERSION',
      `fdbroker ${theirs.software} is older than this broker (${mine.software}): a takeover never downgrades; to go back, stop this broker and start the older one with --adopt-from, or take over with ${mine.software} or newer`);
  }
  return undefined;
}

/** The options a successor needs to serve in this broker's place (what was given; defaults stay defaults). */
export function handoffOptions(o: BrokerOptions): HandoffOptions {
  const out: HandoffOptions = {
    backlog: o.backlog, mode: o.mode, group: o.group,
    handshakeTimeoutMs: o.handshakeTimeoutMs, readyTimeoutMs: o.readyTimeoutMs, retireTimeoutMs: o.retireTimeoutMs,
    standbyMs: o.standbyMs, stallTimeoutMs: o.stallTimeoutMs, idleTimeoutMs: o.idleTimeoutMs,
    maxClients: o.maxClients, maxClientsPerUid: o.maxClientsPerUid, maxQueuedMessages: o.maxQueuedMessages,
    access: o.access, insecureDir: o.insecureDir,
  };
  // Nothing granted and false are the defaults: leave them out, like every option not given.
  if (out.access && !Object.values(out.access).some((ids) => ids !== undefined && ids.length > 0)) delete out.access;
  if (out.insecureDir === false) delete out.insecureDir;
  for (const k of Object.keys(out) as Array<keyof HandoffOptions>) if (out[k] === undefined) delete out[k];
  return out;
}

/** The predecessor's options with every option the successor was given explicitly (not undefined) in their place. */
export function mergeOptions(received: HandoffOptions, given: Partial<BrokerOptions>): Partial<BrokerOptions> {
  const out: Partial<BrokerOptions> = { ...received };
  for (const [k, v] of Object.entries(given)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** Why `spec` does not describe the received listener `info` (same name), or undefined when it does. */
export function specMismatch(spec: ListenerSpec, info: ListenerInfo): string | undefined {
  if (spec.kind !== info.kind) return `is ${info.kind}, the configuration says ${spec.kind}`;
  if (spec.kind === 'unix') return spec.path === info.path ? undefined : `is at ${info.path}, the configuration says ${spec.path}`;
  if (spec.host !== info.address) return `is bound to ${info.address}, the configuration says ${spec.host}`;
  if (spec.port !== 0 && spec.port !== info.port) return `is bound to port ${info.port}, the configuration says ${spec.port}`;
  return undefined;
}

/**
 * The specs the successor must create: those naming a listener it did not
 * receive. A spec naming a received listener must describe it (port 0
 * matches any port), else ERR_FDBROKER_BAD_LISTENER.
 */
export function specsToCreate(received: readonly ListenerInfo[], specs: readonly ListenerSpec[]): ListenerSpec[] {
  const byName = new Map(received.map((i) => [i.name, i]));
  const out: ListenerSpec[] = [];
  for (const s of specs) {
    const info = byName.get(s.name);
    if (!info) {
      out.push(s);
      continue;
    }
    const why = specMismatch(s, info);
    if (why) {
      throw new FdbrokerError('ERR_FDBROKER_BAD_LISTENER',
        `listener "${s.name}" of the running broker ${why}: give the same spec, leave it out of --listen and --config, or use another name`);
    }
  }
  return out;
}

/** The specs that name (and, by specsToCreate(), describe) a received listener. */
export function specsOfReceived(received: readonly ListenerInfo[], specs: readonly ListenerSpec[]): ListenerSpec[] {
  const names = new Set(received.map((i) => i.name));
  return specs.filter((s) => names.has(s.name));
}

/** What the old broker knows when a takeover is asked (whoTakesOver's inputs). */
export interface TakeoverAsk {
  /** The asker's uid, and whether the grants let it take over. */
  uid: number;
  permitted: boolean;
  /** The broker's own uid (named in the refusal). */
  brokerUid: number;
  /** The broker is embedded in an app (self mode). */
  embedded: boolean;
  /** Set by the broker's owner: why no takeover is accepted now. */
  refusal: string | undefined;
  /** The pid of a takeover already in flight. */
  inFlightBy: number | undefined;
  /** Listeners paused now. */
  paused: string[];
  mine: { protocol: number; software: string };
  theirs: { protocol: number; software: string };
}

/**
 * Why this broker refuses a takeover now, or undefined when it accepts it:
 * only its own uid, root or a takeover grant; never an embedded broker;
 * one at a time; not while listeners are paused (a successor would not know
 * it); never an older version (refuseSuccessor).
 */
export function takeoverRefusal(a: TakeoverAsk): FdbrokerError | undefined {
  if (!a.permitted) {
    return new FdbrokerError('ERR_FDBROKER_NOT_PERMITTED',
      `uid ${a.uid} may not take over this broker: only its own uid (${a.brokerUid}), root, or a --grant with takeover may, whatever --allow-uid grants`);
  }
  if (a.embedded) return new FdbrokerError('ERR_FDBROKER_NOT_PERMITTED', 'this broker is embedded in an app: it is replaced by the app\'s next generation, not taken over');
  if (a.refusal !== undefined) return new FdbrokerError('ERR_FDBROKER_NOT_PERMITTED', a.refusal);
  if (a.inFlightBy !== undefined) return new FdbrokerError('ERR_FDBROKER_UPGRADE_IN_PROGRESS', `pid ${a.inFlightBy} is taking over already: one takeover at a time`);
  if (a.paused.length > 0) {
    return new FdbrokerError('ERR_FDBROKER_PAUSED', `listeners are paused (${a.paused.join(', ')}): a successor would not know it; run \`fdbroker resume\` first`);
  }
  return refuseSuccessor(a.mine, a.theirs);
}
