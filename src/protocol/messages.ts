// Protocol v1 (see PROTOCOL.md): message types, encoding and validation.
// Pure functions, no I/O. Every message is one SOCK_SEQPACKET packet holding
// one UTF-8 JSON object with a "type" field. Only "listeners" may carry fds.
import { FdbrokerError, isBrokerErrorCode, type FdbrokerErrorCode, type UnknownErrorCode } from './errors';
import { MAX_ERROR_TEXT_BYTES, MAX_GENERATION, MAX_GRANT_CHANGES, MAX_HOLDING_COUNT, MAX_INSTANCES, MAX_LABEL_BYTES, MAX_MESSAGE_BYTES, MAX_NAME_BYTES, MAX_NAMES_PER_REQUEST, MAX_PAUSE_REQUEST_MS, MAX_STANDBY_MS } from './limits';
import type { GenerationInfo } from '../core/generation-info';
import type { MetricsSnapshot } from './metrics-snapshot';

export type ListenerKind = 'tcp' | 'unix' | 'udp';
export const LISTENER_KINDS: readonly ListenerKind[] = ['tcp', 'unix', 'udp'];

/** What the broker announces about one listener; the fd travels beside it. */
export interface ListenerInfo {
  name: string;
  kind: ListenerKind;
  /** 'IPv4' | 'IPv6' for tcp and udp, 'unix' for unix. */
  family: 'IPv4' | 'IPv6' | 'unix';
  address?: string;
  port?: number;
  path?: string;
  /** The listen(2) backlog the broker set (tcp and unix). */
  backlog?: number;
  /** Status only: the listener no longer listens (a holder shut it down). */
  broken?: boolean;
  /** Status only: a reload removed it; holders keep their copies until they retire, nobody new gets it. */
  removed?: boolean;
  /** Status only: connections waiting in the accept queue, and the backlog in force (read from the socket). */
  queued?: number;
  backlogInForce?: number;
  /** Status only: since when the accept queue has not drained (nobody accepts). */
  stalledSince?: string;
  /** Status only: paused (`fdbroker pause`): since when, and when it resumes on its own. */
  paused?: { since: string; until: string };
  /** Status only: ms this listener has been paused in all, since the broker started. */
  pausedMs?: number;
  /** Status only: every process holding a copy of this socket (where the broker may read /proc). */
  holders?: HolderInfo[];
}

export interface HolderInfo {
  pid: number;
  comm?: string;
  /** The generation this process is, or descends from (a cluster worker, an exec'd program). */
  generation?: number;
}

export interface ClientInfo {
  id: number;
  pid: number;
  uid: number;
  gid: number;
  connectedAt: string;
  adopted: string[];
}

// Client -> broker
export interface HelloMessage { type: 'hello'; versions: number[]; client?: string }
export interface AdoptMessage { type: 'adopt'; id: number; names?: string[] | null }
/** `holders: false`: answer without the /proc scan for listener holders. */
export interface StatusRequest { type: 'status'; id: number; holders?: boolean }
/**
 * Adopt and stay connected as a new generation; `standby`: ms it can stand by after being retired (0: none).
 * `spare` (feature "spare"): a warm spare, joined ahead of time and not accepting until it is promoted; it is
 * exempt from the ready timeout and from the one-starting-at-a-time rule until it says ready.
 * `pause`: this generation stops and starts accepting when told ("accepting", feature "pause").
 */
export interface JoinMessage { type: 'join'; id: number; names?: string[] | null; label?: string; standby?: number; heartbeat?: boolean; spare?: boolean; slot?: number; pause?: boolean }
/** Answers the broker's "ping" (generations that joined with `heartbeat`). */
export interface PongMessage { type: 'pong'; id: number }
/** The states a generation may claim in `rejoin` ("standby" only where the broker lists the "standby-rejoin" feature). */
export type RejoinState = 'starting' | 'ready' | 'retiring' | 'standby';
/**
 * A generation that outlived its broker joins a new one, keeping the listeners
 * it has (no fds are sent). `standbyLeft`: with state "standby", the ms of its
 * window left; `epoch`: the epoch its broker gave it at join (absent: 0).
 */
export interface RejoinMessage {
  type: 'rejoin'; id: number; generation: number; state: RejoinState;
  names?: string[] | null; label?: string; standby?: number; heartbeat?: boolean; standbyLeft?: number; epoch?: number;
  /** Feature "slots": the instance slot it joined in (absent: 0). */
  slot?: number;
}
/** This generation stops on purpose (a planned stop, not a crash); no answer. Feature "leaving". */
export interface LeavingMessage { type: 'leaving' }
/** This generation now serves. */
export interface ReadyMessage { type: 'ready'; id: number }
/** A new broker asks the running one for everything it holds (§2.9); `protocol` and `software` are the new broker's versions. */
export interface TakeoverMessage { type: 'takeover'; id: number; protocol: number; software: string }
/** The new broker that sent `takeover` (same `id`) now answers on the control path: the old one moves its generations and exits. */
export interface CommittedMessage { type: 'committed'; id: number }
/**
 * A retiring generation's report of what it still holds (feature "holding",
 * sent only when the broker's welcome lists it). No answer, no fds.
 */
export interface HoldingMessage { type: 'holding'; connections: number; sessions: number; upgraded: number; hooked: number }
/** Re-read the broker's configuration and apply it (only the broker's own uid and root may). */
export interface ReloadRequest { type: 'reload'; id: number }
/**
 * Stop accepting on the listeners named (all when none) for `forMs` (the
 * broker's default and cap apply): every generation is told ("accepting"),
 * connections wait in the accept queue. Feature "pause"; the broker's own uid and root only.
 */
export interface PauseRequest { type: 'pause'; id: number; names?: string[] | null; forMs?: number }
/** End the pause of the listeners named (all when none). Feature "pause". */
export interface UnpauseRequest { type: 'unpause'; id: number; names?: string[] | null }
// Broker -> client
/** `features`: optional message types this broker accepts (absent: none; PROTOCOL.md §5). */
export interface WelcomeMessage { type: 'welcome'; version: number; broker: { pid: number; software: string; embedded?: boolean }; features?: string[] }
/** `generation` and `epoch` (feature "epoch") answer a join: the rank this generation has, (epoch, number). */
export interface ListenersMessage { type: 'listeners'; id: number; part: number; last: boolean; listeners: ListenerInfo[]; generation?: number; epoch?: number }
/**
 * A request was carried out (answers "ready", "rejoin" and "committed"). A
 * rejoin's ack says the number, state and epoch given; a committed's ack
 * lists in `left` the generations that left the old broker while the
 * takeover was pending (the successor applies them).
 */
export interface AckMessage { type: 'ack'; id: number; generation?: number; state?: string; epoch?: number; left?: number[] }
/**
 * Unsolicited: a newer generation is ready (or this one failed); this one
 * should stop accepting. With `standby` (ms) it keeps its connections and the
 * control connection and waits for "resume" or "release"; without, it drains
 * and exits.
 */
export interface RetireMessage { type: 'retire'; generation: number; by: number; standby?: number; reason?: 'newer' | 'failed' | 'not-holding' }
/** Unsolicited, to a generation standing by: the generation that replaced it failed; accept again (adopt anew). */
export interface ResumeMessage { type: 'resume'; generation: number; failed: number; reason: string }
/** Unsolicited, to a generation standing by: the window is over; drain and exit. */
export interface ReleaseMessage { type: 'release'; generation: number }
/** Answers "pause" and "unpause": every listener paused now, with since and until (ISO times). */
export interface PausedMessage { type: 'paused'; id: number; listeners: Array<{ name: string; since: string; until: string }> }
/**
 * Unsolicited, to a generation that joined with `pause`: the listeners it
 * must not accept on now (its copies closed, the broker's keeps the queue),
 * among those it adopted; it accepts on all others. The whole set each time.
 */
export interface AcceptingMessage { type: 'accepting'; paused: string[] }
/** Unsolicited, to the newest ready generation during a standby window, if it joined with `heartbeat`: answer "pong" at once. */
export interface PingMessage { type: 'ping'; id: number }
export interface StatusMessage {
  type: 'status'; id: number;
  /** Large answers come in parts (0, 1, ...) whose arrays add up; `last` on the final one. */
  part?: number; last?: boolean;
  broker: { pid: number; software: string; protocol: number; controlPath: string; startedAt: string };
  listeners: ListenerInfo[];
  clients: ClientInfo[];
  generations: GenerationInfo[];
  /** Handover counters and histograms since the broker started (README "Metrics"); in the first part only. */
  metrics?: MetricsSnapshot;
  /**
   * How the /proc scan behind `holders` went, when one was made: processes
   * read, not readable (another uid), and skipped because the scan's time
   * budget ran out (their holdings are unknown), and its duration in ms.
   */
  holdersScan?: { scanned: number; unreadable: number; skipped: number; ms: number };
}
/** Answers "reload": the listeners it added, removed, and changed (removed and added again with another spec). */
export interface ReloadedMessage { type: 'reloaded'; id: number; added: string[]; removed: string[]; changed: string[]; grants?: string[] }
/** `cause`: the system error code behind it (e.g. "EADDRINUSE" for a reload whose listener cannot bind). */
export interface ErrorMessage {
  type: 'error'; id?: number; code: FdbrokerErrorCode | UnknownErrorCode; message: string; versions?: number[]; names?: string[]; cause?: string;
}
/** The broker's options, as a successor needs them to serve in its place (§2.9). */
export interface HandoffOptions {
  backlog?: number; mode?: number; group?: number;
  handshakeTimeoutMs?: number; readyTimeoutMs?: number; retireTimeoutMs?: number; standbyMs?: number; stallTimeoutMs?: number;
  idleTimeoutMs?: number; maxClients?: number; maxClientsPerUid?: number; maxQueuedMessages?: number;
  access?: {
    allowUids?: number[]; allowGids?: number[]; statusUids?: number[]; statusGids?: number[];
    /** Per-name rules (src/broker/grants.ts GrantRule). */
    grants?: Array<{ uid?: number; gid?: number; adopt?: string[]; status?: boolean | string[]; deploy?: boolean; reload?: boolean; takeover?: boolean }>;
  };
  insecureDir?: boolean;
}
/**
 * Answers `takeover` before the listeners (which follow as `listeners` with
 * the same id): the broker's versions, options and generation table. In
 * parts like status: `generations` concatenate until `last`.
 */
export interface HandoffMessage {
  type: 'handoff'; id: number; part: number; last: boolean;
  /** `config`: the file the broker's reloads read, if any (its content is not sent: a successor not given one reads it). */
  broker: { pid: number; software: string; protocol: number; startedAt: string; config?: string };
  options: HandoffOptions;
  /** The number the next join gets: numbering continues in the new broker. */
  nextGeneration: number;
  /** The epoch the new broker's fresh joins get, and the first epoch of this line of brokers (ranks, PROTOCOL.md §2.6). */
  epoch?: number;
  floor?: number;
  generations: GenerationInfo[];
  /**
   * The name, among the listeners that follow, of the broker's own metrics
   * socket (--metrics): the successor serves its metrics on it and never
   * hands it to a client, so the port is never free for another user to bind.
   */
  metrics?: string;
}
/** Unsolicited, to a generation: a new broker took over the path (pid `to`); rejoin it now. This connection closes next. */
export interface MovedMessage { type: 'moved'; generation: number; to: number }

export type ClientMessage = HelloMessage | AdoptMessage | StatusRequest | JoinMessage | ReadyMessage | RejoinMessage | PongMessage
  | HoldingMessage | ReloadRequest | TakeoverMessage | CommittedMessage | LeavingMessage | PauseRequest | UnpauseRequest;
export type BrokerMessage = WelcomeMessage | ListenersMessage | StatusMessage | ErrorMessage | AckMessage | RetireMessage
  | ResumeMessage | ReleaseMessage | PingMessage | ReloadedMessage | HandoffMessage | MovedMessage | PausedMessage | AcceptingMessage;

export const CLIENT_MESSAGE_TYPES = ['hello', 'adopt', 'status', 'join', 'ready', 'rejoin', 'pong', 'reload', 'holding', 'takeover', 'committed', 'leaving', 'pause', 'unpause'] as const;
export const BROKER_MESSAGE_TYPES = ['welcome', 'listeners', 'status', 'error', 'ack', 'retire', 'resume', 'release', 'ping', 'reloaded', 'handoff', 'moved', 'paused', 'accepting'] as const;
/** The only message type that may carry fds. */
export const FD_MESSAGE_TYPE = 'listeners';

export function encode(msg: ClientMessage | BrokerMessage): Buffer {
  const buf = Buffer.from(JSON.stringify(msg), 'utf8');
  if (buf.length > MAX_MESSAGE_BYTES) {
    throw new FdbrokerError('ERR_FDBROKER_MESSAGE_TOO_LARGE',
      `a ${msg.type} message of ${buf.length} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  }
  return buf;
}

function protocolError(message: string): FdbrokerError {
  return new FdbrokerError('ERR_FDBROKER_PROTOCOL', message);
}

function parseObject(payload: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    throw protocolError(`a message is not valid JSON (${payload.length} bytes)`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw protocolError('a message is not a JSON object');
  }
  return value as Record<string, unknown>;
}

/** A message's `type` for an error text: String() of a peer's object may throw (a null toString). */
const typeName = (v: unknown): string => (typeof v === 'string' ? v : typeof v);
const isInt = (v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** A generation number as the wire allows it: 1..MAX_GENERATION. */
const isGeneration = (v: unknown): v is number => isInt(v, 1, MAX_GENERATION);
/** `by` and `failed` may be 0 (none). */
const isGenerationOrNone = (v: unknown): v is number => isInt(v, 0, MAX_GENERATION);

/** Most numbers a committed's ack may list in `left` (each left generation once). */
const MAX_LEFT_PER_ACK = 65_536;

const NAME_PATTERN = /^[A-Za-z0-9._:@-]+$/;

/** A listener name: 1..128 bytes of letters, digits and . _ - : @ */
/** A rule given or taken by a reload (grants.ts formatRule): "grant +uid=33 adopt=http,metrics status deploy". Bounded. */
const GRANT_RULE_CHANGE = /^grant [+-][ug]id=\d{1,10}( [a-z]+(=[A-Za-z0-9._:@*,-]{1,8192})?){0,5}$/;

export function isValidName(name: unknown): name is string {
  // The pattern admits ASCII only, so length is the byte length (no Buffer.byteLength per name: adopts name 1,000s).
  return typeof name === 'string' && name.length > 0 && name.length <= MAX_NAME_BYTES && NAME_PATTERN.test(name);
}

/** Decodes and validates a client's message; throws ERR_FDBROKER_PROTOCOL. */
export function decodeClientMessage(payload: Buffer, fdCount: number): ClientMessage {
  const m = parseObject(payload);
  if (fdCount > 0) throw protocolError(`a client may not send fds (got ${fdCount} with "${typeName(m.type)}")`);
  switch (m.type) {
    case 'hello':
      if (!Array.isArray(m.versions) || m.versions.length === 0 || m.versions.length > 16
        || !m.versions.every((v) => isInt(v, 1, 1_000_000))) {
        throw protocolError('hello.versions must be a non-empty array of protocol versions');
      }
      if (m.client !== undefined && (typeof m.client !== 'string' || m.client.length > 256)) {
        throw protocolError('hello.client must be a short string');
      }
      return { type: 'hello', versions: m.versions as number[], client: m.client as string | undefined };
    case 'adopt':
    case 'join':
    case 'rejoin': {
      if (!isInt(m.id)) throw protocolError(`${m.type}.id must be a non-negative integer`);
      const names = m.names;
      if (names !== undefined && names !== null) {
        if (!Array.isArray(names) || names.length > MAX_NAMES_PER_REQUEST || !names.every(isValidName)) {
          throw protocolError(`${m.type}.names must be an array of listener names`);
        }
      }
      if (m.type === 'adopt') return { type: 'adopt', id: m.id, names: (names ?? null) as string[] | null };
      if (m.label !== undefined && (typeof m.label !== 'string' || Buffer.byteLength(m.label) > MAX_LABEL_BYTES)) {
        throw protocolError(`${m.type}.label must be a string of at most ${MAX_LABEL_BYTES} bytes`);
      }
      if (m.standby !== undefined && !isInt(m.standby, 0, MAX_STANDBY_MS)) {
        throw protocolError(`${m.type}.standby must be a whole number of ms from 0 to ${MAX_STANDBY_MS}`);
      }
      if (m.heartbeat !== undefined && typeof m.heartbeat !== 'boolean') throw protocolError(`${m.type}.heartbeat must be a boolean`);
      if (m.slot !== undefined && !isInt(m.slot, 0, MAX_INSTANCES - 1)) throw protocolError(`${m.type}.slot must be an integer from 0 to ${MAX_INSTANCES - 1}`);
      const common = {
        id: m.id, names: (names ?? null) as string[] | null, label: m.label as string | undefined,
        ...(m.standby !== undefined ? { standby: m.standby as number } : {}),
        ...(m.heartbeat === true ? { heartbeat: true } : {}),
        ...(typeof m.slot === 'number' && m.slot > 0 ? { slot: m.slot } : {}),
      };
      if (m.type === 'join') {
        if (m.spare !== undefined && typeof m.spare !== 'boolean') throw protocolError('join.spare must be a boolean');
        if (m.pause !== undefined && typeof m.pause !== 'boolean') throw protocolError('join.pause must be a boolean');
        return { type: 'join', ...common, ...(m.spare === true ? { spare: true } : {}), ...(m.pause === true ? { pause: true } : {}) };
      }
      if (!isGeneration(m.generation)) throw protocolError(`rejoin.generation must be an integer from 1 to ${MAX_GENERATION}`);
      if (m.state !== 'starting' && m.state !== 'ready' && m.state !== 'retiring' && m.state !== 'standby') {
        throw protocolError('rejoin.state must be "starting", "ready", "retiring" or "standby"');
      }
      if (m.standbyLeft !== undefined && !isInt(m.standbyLeft, 0, MAX_STANDBY_MS)) {
        throw protocolError(`rejoin.standbyLeft must be a whole number of ms from 0 to ${MAX_STANDBY_MS}`);
      }
      if (m.epoch !== undefined && !isInt(m.epoch)) throw protocolError('rejoin.epoch must be a non-negative integer');
      return {
        type: 'rejoin', ...common, generation: m.generation, state: m.state,
        // standbyLeft means something only with state "standby".
        ...(m.state === 'standby' && m.standbyLeft !== undefined ? { standbyLeft: m.standbyLeft as number } : {}),
        ...(m.epoch !== undefined ? { epoch: m.epoch as number } : {}),
      };
    }
    case 'leaving':
      return { type: 'leaving' };
    case 'ready':
      if (!isInt(m.id)) throw protocolError('ready.id must be a non-negative integer');
      return { type: 'ready', id: m.id };
    case 'pong':
      if (!isInt(m.id)) throw protocolError('pong.id must be a non-negative integer');
      return { type: 'pong', id: m.id };
    case 'status':
      if (!isInt(m.id)) throw protocolError('status.id must be a non-negative integer');
      if (m.holders !== undefined && typeof m.holders !== 'boolean') throw protocolError('status.holders must be a boolean');
      return { type: 'status', id: m.id, ...(m.holders === false ? { holders: false } : {}) };
    case 'holding': {
      const counts = [m.connections, m.sessions, m.upgraded, m.hooked];
      if (!counts.every((v) => isInt(v, 0, MAX_HOLDING_COUNT))) {
        throw protocolError(`holding needs connections, sessions, upgraded and hooked, whole numbers from 0 to ${MAX_HOLDING_COUNT}`);
      }
      return { type: 'holding', connections: m.connections as number, sessions: m.sessions as number, upgraded: m.upgraded as number, hooked: m.hooked as number };
    }
    case 'reload':
      if (!isInt(m.id)) throw protocolError('reload.id must be a non-negative integer');
      return { type: 'reload', id: m.id };
    case 'pause':
    case 'unpause': {
      if (!isInt(m.id)) throw protocolError(`${m.type}.id must be a non-negative integer`);
      const names = m.names;
      if (names !== undefined && names !== null && (!Array.isArray(names) || names.length > MAX_NAMES_PER_REQUEST || !names.every(isValidName))) {
        throw protocolError(`${m.type}.names must be an array of listener names`);
      }
      if (m.type === 'unpause') return { type: 'unpause', id: m.id, names: (names ?? null) as string[] | null };
      if (m.forMs !== undefined && !isInt(m.forMs, 0, MAX_PAUSE_REQUEST_MS)) throw protocolError(`pause.forMs must be a whole number of ms from 0 to ${MAX_PAUSE_REQUEST_MS}`);
      return { type: 'pause', id: m.id, names: (names ?? null) as string[] | null, ...(m.forMs !== undefined ? { forMs: m.forMs as number } : {}) };
    }
    case 'takeover':
      if (!isInt(m.id)) throw protocolError('takeover.id must be a non-negative integer');
      if (!isInt(m.protocol, 1, 1_000_000)) throw protocolError('takeover.protocol must be a protocol version');
      if (typeof m.software !== 'string' || m.software.length === 0 || m.software.length > 64) {
        throw protocolError('takeover.software must be a version string of at most 64 chars');
      }
      return { type: 'takeover', id: m.id, protocol: m.protocol, software: m.software };
    case 'committed':
      if (!isInt(m.id)) throw protocolError('committed.id must be a non-negative integer');
      return { type: 'committed', id: m.id };
    default:
      throw protocolError(`unknown message type ${JSON.stringify(typeName(m.type)).slice(0, 80)}`);
  }
}

function validListenerInfo(v: unknown): v is ListenerInfo {
  if (typeof v !== 'object' || v === null) return false;
  const l = v as Record<string, unknown>;
  if (!isValidName(l.name) || !LISTENER_KINDS.includes(l.kind as ListenerKind)) return false;
  if (l.kind === 'unix') return l.family === 'unix' && typeof l.path === 'string';
  return (l.family === 'IPv4' || l.family === 'IPv6') && typeof l.address === 'string' && isInt(l.port, 0, 65535);
}

/** Decodes and validates a broker's message; throws ERR_FDBROKER_PROTOCOL. */
export function decodeBrokerMessage(payload: Buffer, fdCount: number): BrokerMessage {
  const m = parseObject(payload);
  if (fdCount > 0 && m.type !== FD_MESSAGE_TYPE) {
    throw protocolError(`fds arrived on a "${typeName(m.type)}" message; only "listeners" may carry fds`);
  }
  switch (m.type) {
    case 'welcome':
      if (!isInt(m.version, 1)) throw protocolError('welcome.version must be a positive integer');
      // features: a list of strings, else read as none (unknown fields are ignored).
      if (m.features !== undefined && !(Array.isArray(m.features) && m.features.every((f) => typeof f === 'string'))) delete m.features;
      return m as unknown as WelcomeMessage;
    case 'listeners': {
      if (!isInt(m.id) || !isInt(m.part) || typeof m.last !== 'boolean' || !Array.isArray(m.listeners)) {
        throw protocolError('listeners needs id, part, last and listeners');
      }
      if (!m.listeners.every(validListenerInfo)) throw protocolError('listeners holds an invalid entry');
      if (m.generation !== undefined && !isGeneration(m.generation)) throw protocolError(`listeners.generation must be an integer from 1 to ${MAX_GENERATION}`);
      if (m.epoch !== undefined && !isInt(m.epoch)) throw protocolError('listeners.epoch must be a non-negative integer');
      if (m.listeners.length !== fdCount) {
        throw protocolError(`listeners announces ${m.listeners.length} listeners but carries ${fdCount} fds`);
      }
      return m as unknown as ListenersMessage;
    }
    case 'status':
      if (!isInt(m.id) || !Array.isArray(m.listeners) || !Array.isArray(m.clients)) {
        throw protocolError('status needs id, listeners and clients');
      }
      if (m.part !== undefined && (!isInt(m.part) || typeof m.last !== 'boolean')) throw protocolError('status.part needs last');
      if (!Array.isArray(m.generations)) m.generations = [];
      return m as unknown as StatusMessage;
    case 'ack':
      if (!isInt(m.id)) throw protocolError('ack needs id');
      if (m.generation !== undefined && !isGeneration(m.generation)) throw protocolError(`ack.generation must be an integer from 1 to ${MAX_GENERATION}`);
      if (m.state !== undefined && typeof m.state !== 'string') throw protocolError('ack.state must be a string');
      if (m.epoch !== undefined && !isInt(m.epoch)) throw protocolError('ack.epoch must be a non-negative integer');
      if (m.left !== undefined && !(Array.isArray(m.left) && m.left.length <= MAX_LEFT_PER_ACK && m.left.every(isGeneration))) {
        throw protocolError('ack.left must be an array of generation numbers');
      }
      return m as unknown as AckMessage;
    case 'retire':
      if (!isGeneration(m.generation) || !isGenerationOrNone(m.by)) throw protocolError('retire needs generation and by (generation numbers)');
      if (m.standby !== undefined && !isInt(m.standby, 0, MAX_STANDBY_MS)) throw protocolError('retire.standby must be a whole number of ms');
      return m as unknown as RetireMessage;
    case 'resume':
      if (!isGeneration(m.generation) || !isGenerationOrNone(m.failed)) throw protocolError('resume needs generation and failed (generation numbers)');
      return { type: 'resume', generation: m.generation, failed: m.failed, reason: typeof m.reason === 'string' ? m.reason : '' };
    case 'release':
      if (!isGeneration(m.generation)) throw protocolError('release needs generation (a generation number)');
      return { type: 'release', generation: m.generation };
    case 'ping':
      if (!isInt(m.id)) throw protocolError('ping needs id');
      return { type: 'ping', id: m.id };
    case 'reloaded': {
      const names = (v: unknown): v is string[] => Array.isArray(v) && v.length <= MAX_NAMES_PER_REQUEST && v.every(isValidName);
      if (!isInt(m.id) || !names(m.added) || !names(m.removed) || !names(m.changed)) {
        throw protocolError('reloaded needs id, added, removed and changed (arrays of listener names)');
      }
      const grants = m.grants;
      if (grants !== undefined && !(Array.isArray(grants) && grants.length <= MAX_GRANT_CHANGES
        && grants.every((g) => typeof g === 'string' && (/^allow(-status)?-[ug]id [+-]\d{1,10}$/.test(g) || GRANT_RULE_CHANGE.test(g))))) {
        throw protocolError('reloaded: grants must be an array of "allow-uid +N"-like or "grant +uid=N adopt=NAME"-like changes');
      }
      return { type: 'reloaded', id: m.id, added: m.added, removed: m.removed, changed: m.changed, ...(grants ? { grants: grants as string[] } : {}) };
    }
    case 'handoff': {
      // nextGeneration may be one past the largest number (every number used).
      if (!isInt(m.id) || !isInt(m.part) || typeof m.last !== 'boolean' || !isInt(m.nextGeneration, 1, MAX_GENERATION + 1)
        || !Array.isArray(m.generations) || typeof m.options !== 'object' || m.options === null
        || typeof m.broker !== 'object' || m.broker === null) {
        throw protocolError('handoff needs id, part, last, broker, options, nextGeneration and generations');
      }
      const b = m.broker as Record<string, unknown>;
      if (!isInt(b.pid) || typeof b.software !== 'string' || !isInt(b.protocol, 1)) throw protocolError('handoff.broker needs pid, software and protocol');
      if (b.config !== undefined && typeof b.config !== 'string') throw protocolError('handoff.broker.config must be a path');
      const validGen = (g: unknown) => typeof g === 'object' && g !== null && isGeneration((g as GenerationInfo).number)
        && isInt((g as GenerationInfo).pid) && typeof (g as GenerationInfo).state === 'string' && Array.isArray((g as GenerationInfo).adopted);
      if (!m.generations.every(validGen)) throw protocolError('handoff holds an invalid generation');
      if ((m.epoch !== undefined && !isInt(m.epoch, 1)) || (m.floor !== undefined && !isInt(m.floor, 1))) throw protocolError('handoff.epoch and handoff.floor must be positive integers');
      if (m.metrics !== undefined && !isValidName(m.metrics)) throw protocolError('handoff.metrics must be a listener name');
      return m as unknown as HandoffMessage;
    }
    case 'moved':
      if (!isGeneration(m.generation) || !isInt(m.to)) throw protocolError('moved needs generation (a generation number) and to');
      return { type: 'moved', generation: m.generation, to: m.to };
    case 'accepting':
      if (!Array.isArray(m.paused) || m.paused.length > MAX_NAMES_PER_REQUEST || !m.paused.every(isValidName)) {
        throw protocolError('accepting.paused must be an array of listener names');
      }
      return { type: 'accepting', paused: m.paused };
    case 'paused': {
      const valid = (l: unknown) => typeof l === 'object' && l !== null && isValidName((l as { name?: unknown }).name)
        && typeof (l as { since?: unknown }).since === 'string' && typeof (l as { until?: unknown }).until === 'string';
      if (!isInt(m.id) || !Array.isArray(m.listeners) || m.listeners.length > MAX_NAMES_PER_REQUEST || !m.listeners.every(valid)) {
        throw protocolError('paused needs id and listeners (name, since, until)');
      }
      return m as unknown as PausedMessage;
    }
    case 'error':
      if (typeof m.code !== 'string' || typeof m.message !== 'string') {
        throw protocolError('error needs code and message');
      }
      if (m.cause !== undefined && typeof m.cause !== 'string') delete m.cause;
      // A code this version does not know (a newer broker's) is kept as sent; anything not shaped like one reads as a protocol error.
      return {
        ...(m as unknown as ErrorMessage),
        code: isBrokerErrorCode(m.code) ? m.code : 'ERR_FDBROKER_PROTOCOL',
      };
    default:
      throw protocolError(`unknown message type ${JSON.stringify(typeName(m.type)).slice(0, 80)}`);
  }
}

/** The newest version both sides speak, or undefined. */
export function negotiateVersion(offered: readonly number[], supported: readonly number[]): number | undefined {
  let best: number | undefined;
  for (const v of offered) if (supported.includes(v) && (best === undefined || v > best)) best = v;
  return best;
}

const jsonCache = new WeakMap<ListenerInfo, { text: string; bytes: number }>();

function cachedJson(info: ListenerInfo): { text: string; bytes: number } {
  let j = jsonCache.get(info);
  if (j === undefined) {
    const text = JSON.stringify(info);
    j = { text, bytes: Buffer.byteLength(text) };
    jsonCache.set(info, j);
  }
  return j;
}

/** The JSON text of a listener object, computed once per object (the broker's are fixed for its life). */
export function listenerJson(info: ListenerInfo): string {
  return cachedJson(info).text;
}

/** Room for {"type":"listeners","id":N,"part":N,"last":false,"generation":N,"epoch":N,"listeners":[]} with the largest N. */
const LISTENERS_ENVELOPE_BYTES = 160;

/**
 * Splits listeners into messages of at most `maxFds` fds and `maxBytes` bytes.
 * Returns groups of indexes into `infos`.
 */
export function chunkListeners(infos: readonly ListenerInfo[], maxFds: number, maxBytes: number): number[][] {
  const groups: number[][] = [];
  let current: number[] = [];
  let bytes = LISTENERS_ENVELOPE_BYTES;
  infos.forEach((info, i) => {
    const size = cachedJson(info).bytes + 1;
    if (current.length > 0 && (current.length >= maxFds || bytes + size > maxBytes)) {
      groups.push(current);
      current = [];
      bytes = LISTENERS_ENVELOPE_BYTES;
    }
    current.push(i);
    bytes += size;
  });
  if (current.length > 0 || groups.length === 0) groups.push(current);
  return groups;
}

/** encode() of a "listeners" message, built from each listener's cached JSON text. */
export function encodeListeners(id: number, part: number, last: boolean, infos: readonly ListenerInfo[], generation?: number, epoch?: number): Buffer {
  const gen = generation !== undefined ? `,"generation":${generation}${epoch !== undefined ? `,"epoch":${epoch}` : ''}` : '';
  const head = `{"type":"listeners","id":${id},"part":${part},"last":${last}${gen},"listeners":[`;
  const buf = Buffer.from(`${head}${infos.map(listenerJson).join(',')}]}`, 'utf8');
  if (buf.length > MAX_MESSAGE_BYTES) {
    throw new FdbrokerError('ERR_FDBROKER_MESSAGE_TOO_LARGE', `a listeners message of ${buf.length} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  }
  return buf;
}

/** Cuts `text` to at most `maxBytes` UTF-8 bytes (on a character boundary), marking the cut. */
export function boundText(text: string, maxBytes = MAX_ERROR_TEXT_BYTES): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  const mark = ' [...]';
  let cut = Buffer.from(text).subarray(0, maxBytes - mark.length).toString('utf8');
  if (cut.endsWith('\uFFFD')) cut = cut.slice(0, -1);
  return cut + mark;
}

/**
 * An error reply that always fits one message: the text is bounded, and a
 * `names` list is shortened (keeping the first ones, which the text quotes)
 * until the whole message fits.
 */
export function encodeError(msg: ErrorMessage): Buffer {
  const bounded: ErrorMessage = { ...msg, message: boundText(msg.message) };
  let buf = Buffer.from(JSON.stringify(bounded), 'utf8');
  if (buf.length <= MAX_MESSAGE_BYTES) return buf;
  const names = bounded.names ?? [];
  let keep = names.length;
  while (keep > 0 && buf.length > MAX_MESSAGE_BYTES) {
    keep = Math.floor(keep / 2);
    buf = Buffer.from(JSON.stringify({ ...bounded, names: names.slice(0, keep) }), 'utf8');
  }
  return buf.length <= MAX_MESSAGE_BYTES ? buf : Buffer.from(JSON.stringify({ ...bounded, names: undefined }), 'utf8');
}

/** Room for the status envelope besides the arrays: {"type":"status","id":N,"part":N,"last":false,"broker":{...}, ...}. */
const STATUS_ENVELOPE_BYTES = 1024;

/**
 * A status answer as one or more messages, each within MAX_MESSAGE_BYTES:
 * every part carries the broker section and some of the listeners, clients
 * and generations, in order; a reader concatenates the arrays until `last`.
 * An entry that cannot fit a message alone (it cannot, within the field
 * limits) would be dropped rather than end the broker. Each entry is turned
 * into JSON once and the parts are put together from those texts: a status
 * of 2,000 clients is never one big string (a broker polled for status would
 * otherwise grow its heap by megabytes).
 */
export function encodeStatus(status: StatusMessage, maxBytes = MAX_MESSAGE_BYTES): Buffer[] {
  type Key = 'listeners' | 'clients' | 'generations';
  const keys: Key[] = ['listeners', 'clients', 'generations'];
  const { listeners: _l, clients: _c, generations: _g, part: _p, last: _z, metrics, ...rest } = status;
  const texts = keys.map((k) => (status[k] as unknown[]).map((item) => JSON.stringify(item)));
  const sizes = texts.map((list) => list.map((t) => Buffer.byteLength(t) + 1));
  const build = (part: number, last: boolean, arrays: string[][]): Buffer => {
    // The metrics snapshot rides on part 0 only.
    const head = JSON.stringify({ ...rest, part, last, ...(part === 0 && metrics ? { metrics } : {}) });
    return Buffer.from(`${head.slice(0, -1)},${keys.map((k, j) => `"${k}":[${arrays[j]!.join(',')}]`).join(',')}}`, 'utf8');
  };
  const head = Buffer.byteLength(JSON.stringify(rest)) + STATUS_ENVELOPE_BYTES + (metrics ? Buffer.byteLength(JSON.stringify(metrics)) + 16 : 0);
  const total = sizes.reduce((a, list) => list.reduce((b, n) => b + n, a), head);
  if (total <= maxBytes) return [build(0, true, texts)];
  const parts: string[][][] = [];
  let current: string[][] = [[], [], []];
  let bytes = head;
  keys.forEach((_, j) => {
    texts[j]!.forEach((text, i) => {
      const size = sizes[j]![i]!;
      if (head + size > maxBytes) return;
      if (bytes + size > maxBytes) {
        parts.push(current);
        current = [[], [], []];
        bytes = head;
      }
      current[j]!.push(text);
      bytes += size;
    });
  });
  parts.push(current);
  return parts.map((p, i) => build(i, i === parts.length - 1, p));
}

/** Room for the handoff envelope besides the generations (broker section and options included). */
const HANDOFF_ENVELOPE_BYTES = 4096;

/**
 * A handoff answer as one or more messages, each within `maxBytes`: every
 * part repeats broker, options and nextGeneration and carries the next
 * generations in order; `last` on the final one.
 */
export function encodeHandoff(msg: Omit<HandoffMessage, 'part' | 'last'>, maxBytes = MAX_MESSAGE_BYTES): Buffer[] {
  const parts: GenerationInfo[][] = [];
  let current: GenerationInfo[] = [];
  let bytes = HANDOFF_ENVELOPE_BYTES;
  for (const g of msg.generations) {
    const size = Buffer.byteLength(JSON.stringify(g)) + 1;
    if (current.length > 0 && bytes + size > maxBytes) {
      parts.push(current);
      current = [];
      bytes = HANDOFF_ENVELOPE_BYTES;
    }
    current.push(g);
    bytes += size;
  }
  parts.push(current);
  return parts.map((generations, i) => encode({ ...msg, part: i, last: i === parts.length - 1, generations } as HandoffMessage));
}
