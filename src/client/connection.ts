// The client side of the protocol: connect to a broker's control socket, say
// hello, and make requests. Used by adoptListeners(), `fdbroker status` and
// anything else that talks to a broker.
//
// Fd ownership: fds that arrive with a "listeners" reply are returned to the
// caller of adopt(), who owns them; on every error path they are closed here.
import { native } from '../native/binding';
import { Channel } from '../transport/channel';
import { FdbrokerError, systemError } from '../protocol/errors';
import {
  decodeBrokerMessage, encode, type AckMessage, type AdoptMessage, type BrokerMessage, type ClientMessage, type HandoffMessage,
  type MovedMessage, type PingMessage, type RejoinState, type ReloadedMessage, type RetireMessage, type ResumeMessage,
  type ReleaseMessage, type StatusMessage, type AcceptingMessage, type PausedMessage,
} from '../protocol/messages';
import { CONNECT_RETRY_MS, DEFAULT_TIMEOUT_MS } from './defaults';
import { MAX_GENERATION, PROTOCOL_VERSIONS } from '../protocol/limits';
import {
  checkGenerationFields, checkNames, handoffAnswer, invalid, isGenerationNumber, listenersAnswer, replyOf, statusAnswer,
  type InFlight, type ReceivedListener,
} from './answers';
import { controlTargets } from './control-target';
import { brokerError, closeAll, connectError, PendingConnection, timeoutError } from './handshake';

export type { ReceivedListener } from './answers';
import { VERSION } from '../protocol/version';
import { assertSupportedRuntime } from '../native/runtime';

export interface ConnectOptions {
  /** Whole-operation deadline in ms (default 10 s). */
  timeout?: number;
  /** Protocol versions to offer (tests use this to provoke a mismatch). */
  versions?: number[];
  /**
   * uids trusted to run the broker (default: this process's own uid, and root).
   * A socket at the path owned by anyone else could hand out sockets that
   * are not the service's: the connection is refused with ERR_FDBROKER_UNTRUSTED_BROKER.
   */
  trustUids?: number[];
}


const EAGAIN = -11;
const EPIPE = -32;
const ECONNRESET = -104;

/** The broker's unsolicited messages to a generation. */
export type Notice = RetireMessage | ResumeMessage | ReleaseMessage | MovedMessage | PingMessage | AcceptingMessage;

/** join() options. */
export interface JoinOptions {
  /** Free text shown in `fdbroker status`. */
  label?: string;
  /** Deadline for the whole answer, in ms (default 10 s). */
  timeout?: number;
  /** ms this generation can stand by after being retired (0 or absent: none). */
  standby?: number;
  /**
   * This process answers the broker's pings (default false): ask for it only
   * in the process that serves, so a hung server is seen as hung. A wrapper
   * that runs the server as another process (`fdbroker exec`) must not.
   */
  heartbeat?: boolean;
  /** A warm spare (sent only to a broker with feature "spare"): exempt from the ready timeout until it says ready. */
  spare?: boolean;
  /** Instance slot (`run --instances`; sent only to a broker with feature "slots"; absent: 0). */
  slot?: number;
  /**
   * This process stops and starts accepting when the broker says so (the
   * "accepting" notice, `fdbroker pause`), sent where the broker lists
   * feature "pause". Only for a process that runs its servers itself.
   */
  pause?: boolean;
}

/** rejoin() request: the rank and state this generation claims (PROTOCOL.md §2.6 rule 6). */
export interface RejoinRequest {
  generation: number;
  state: RejoinState;
  names: string[];
  label?: string;
  standby?: number;
  heartbeat?: boolean;
  /** With state "standby" (feature "standby-rejoin"): the ms of the window left. */
  standbyLeft?: number;
  /** The epoch the broker gave at join (feature "epoch"); absent: 0. */
  epoch?: number;
  /** Its instance slot (feature "slots"; absent: 0). */
  slot?: number;
}

/** Messages no request asked for: answered or handed to onNotice. */
const NOTICE_TYPES = new Set<BrokerMessage['type']>(['retire', 'resume', 'release', 'moved', 'ping', 'accepting']);

/**
 * A connection to a broker. Requests carry ids and answers are matched by id
 * (as undici pipelines): any number of requests may be in flight at once,
 * each gets its own answer, multi-part answers are put together per id, and
 * unsolicited notices go to onNotice. Every request in flight settles when
 * the connection ends (with ERR_FDBROKER_CLOSED after close(), else with
 * what ended it). A request on a closed connection, or a malformed one,
 * fails before anything is sent (ERR_FDBROKER_CLOSED, ERR_FDBROKER_INVALID_ARGUMENT).
 */
export class BrokerConnection {
  readonly path: string;
  readonly version: number;
  readonly brokerPid: number;
  /** The broker is embedded in an app (the app as its own broker), not `fdbroker serve`. */
  embedded = false;
  /** Optional message types the broker accepts (its welcome's `features`; none from an older broker). */
  features: readonly string[] = [];
  private readonly channel: Channel;
  private readonly inFlight = new Map<number, InFlight>();
  /** Takeovers whose handoff and listeners arrived: ids commit() may name. */
  private readonly takeovers = new Set<number>();
  /** A join or rejoin was sent: this connection is (or is about to be) a generation. */
  private joined = false;
  /** leave() was called: the channel closes once `leaving` is sent. */
  private leaving = false;
  /**
   * Called on the broker's unsolicited messages to a generation: retire,
   * resume, release, moved, ping. Notices that arrive before a handler is set
   * are kept and handed to it when it is set (a retire can follow a join's
   * last part in the same read). With no handler ever set, pings are not
   * answered: whoever asked for heartbeat answers them (see JoinOptions).
   */
  get onNotice(): ((msg: Notice) => void) | undefined { return this.noticeHandler; }
  set onNotice(fn: ((msg: Notice) => void) | undefined) {
    this.noticeHandler = fn;
    if (fn) for (const m of this.earlyNotices.splice(0)) fn(m);
  }
  private noticeHandler: ((msg: Notice) => void) | undefined;
  private readonly earlyNotices: Notice[] = [];
  /** Called once when the connection ends (broker gone, protocol error, or close()). */
  onClose: ((err: Error) => void) | undefined;
  private failure: Error | undefined;
  private nextId = 1;

  private constructor(path: string, channel: Channel, version: number, brokerPid: number) {
    this.path = path;
    this.channel = channel;
    this.version = version;
    this.brokerPid = brokerPid;
  }

  /** Connects and completes the version handshake, within `timeout` ms. */
  static async connect(path: string, options: ConnectOptions = {}): Promise<BrokerConnection> {
    return (await BrokerConnection.open(path, options, undefined)).conn;
  }

  /**
   * Connects, adopts and closes in one round trip: the adopt request is sent
   * right behind the hello, without waiting for the welcome (PROTOCOL.md
   * §2.1, pipelining). The broker still reads the hello first: a version it
   * does not speak ends the connection before the adopt is read, and access
   * is checked on the adopt as on any other. The broker's credentials are
   * checked before anything but the hello is sent. Same fd ownership as adopt().
   */
  static async adoptOnce(path: string, names: string[] | undefined, options: ConnectOptions = {}): Promise<ReceivedListener[]> {
    checkNames(names);
    const request: AdoptMessage = { type: 'adopt', id: 1, names: names ?? null };
    const { conn, answer } = await BrokerConnection.open(path, options, request);
    try {
      return ((await answer) as { listeners: ReceivedListener[] }).listeners;
    } finally {
      conn.close();
    }
  }

  /** connect(), with `pipelined` (if any) sent right after the hello; `answer` settles with its answer. */
  private static async open(path: string, options: ConnectOptions, pipelined: AdoptMessage | undefined): Promise<{ conn: BrokerConnection; answer?: Promise<unknown> }> {
    assertSupportedRuntime();
    const deadline = Date.now() + (options.timeout ?? DEFAULT_TIMEOUT_MS);
    const n = native();
    const c = n.constants;
    let fd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
    if (fd < 0) throw systemError(fd, 'socket');
    // The owner's own socket first, if there is one of ours (control-target.ts).
    // A Unix connect() fails at once with EAGAIN while the broker's queue is
    // full; retry until the deadline.
    const targets = controlTargets(path);
    for (let t = 0; ;) {
      const r = n.connect(fd, { family: 'unix', path: targets[t]! });
      if (r === 0) break;
      if (r !== EAGAIN && t + 1 < targets.length) {
        // Not answering there (a stopped broker's file, or gone): the shared path, on a fresh socket.
        n.close(fd);
        fd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
        if (fd < 0) throw systemError(fd, 'socket');
        t++;
        continue;
      }
      if (r !== EAGAIN || Date.now() >= deadline) {
        n.close(fd);
        if (r === EAGAIN) throw timeoutError(path, 'connect');
        throw connectError(r, path);
      }
      await new Promise((res) => setTimeout(res, CONNECT_RETRY_MS));
    }
    // The hello goes out before the Channel exists: a broker that refuses us
    // (access, client limits) may answer and hang up before it arrives; the
    // send then fails with EPIPE, but its reason is queued for us to read.
    const hello = encode({ type: 'hello', versions: options.versions ?? [...PROTOCOL_VERSIONS], client: `fdbroker-node/${VERSION}` });
    const sent = n.sendmsg(fd, hello, []);
    if (sent < 0 && sent !== EAGAIN && sent !== EPIPE && sent !== ECONNRESET) {
      n.close(fd);
      throw systemError(sent, 'sendmsg');
    }
    const cred = n.peercred(fd);
    const ownUid = process.getuid?.() ?? 0;
    const trusted = options.trustUids ?? [ownUid, 0];
    if (typeof cred === 'number' || !trusted.includes(cred.uid)) {
      n.close(fd);
      throw new FdbrokerError('ERR_FDBROKER_UNTRUSTED_BROKER', typeof cred === 'number'
        ? `cannot read the credentials of the process at ${path}`
        : `the process answering on ${path} runs as uid ${cred.uid}, which is not trusted (trusted: ${trusted.join(', ')}); pass trustUids to allow it`);
    }
    // The pipelined request goes out the same way, once the broker's uid is
    // trusted, and only behind a hello that went out: after EPIPE (a broker
    // that refused us and hung up) its reason waits to be read.
    const request = pipelined && (sent >= 0 || sent === EAGAIN) ? encode(pipelined) : undefined;
    const requestSent = request && sent >= 0 ? n.sendmsg(fd, request, []) : EAGAIN;
    if (requestSent < 0 && requestSent !== EAGAIN && requestSent !== EPIPE && requestSent !== ECONNRESET) {
      n.close(fd);
      throw systemError(requestSent, 'sendmsg');
    }
    let channel: Channel;
    try {
      channel = new Channel(fd);
    } catch (err) {
      n.close(fd);
      throw err;
    }
    const pending = new PendingConnection(channel, deadline, path);
    if (sent === EAGAIN) channel.send(hello);
    if (request && requestSent === EAGAIN) channel.send(request);
    const { msg } = await pending.next();
    if (msg.type === 'error') {
      pending.dropLater();
      channel.close();
      throw brokerError(msg);
    }
    if (msg.type !== 'welcome') {
      pending.dropLater();
      channel.close();
      throw new FdbrokerError('ERR_FDBROKER_PROTOCOL', `expected "welcome", got "${msg.type}"`);
    }
    const conn = new BrokerConnection(path, channel, msg.version, msg.broker?.pid ?? 0);
    conn.embedded = msg.broker?.embedded === true;
    conn.features = msg.features ?? [];
    pending.detach();
    if (!pipelined) {
      pending.dropLater();
      // The broker may have closed in the same read as its welcome: the close
      // event then went to the pending handlers, not to the connection's.
      if (channel.isClosed) throw new FdbrokerError('ERR_FDBROKER_CLOSED', `the broker at ${path} closed the connection after its welcome`);
      conn.listen();
      return { conn };
    }
    conn.nextId = pipelined.id + 1;
    const answer = conn.expect(pipelined.id, listenersAnswer(), Math.max(0, deadline - Date.now()));
    // Answers to the pipelined request read in the same turn as the welcome.
    for (const m of pending.later.splice(0)) conn.route(m.msg, m.fds);
    if (channel.isClosed) conn.fail(new FdbrokerError('ERR_FDBROKER_CLOSED', `the broker at ${path} closed the connection`));
    else conn.listen();
    return { conn, answer };
  }

  private listen(): void {
    this.channel.on('message', (payload, fds) => {
      let msg: BrokerMessage;
      try {
        msg = decodeBrokerMessage(payload, fds.length);
      } catch (err) {
        closeAll(fds);
        this.fail(err as Error);
        return;
      }
      this.route(msg, fds);
    });
    this.channel.on('error', (err) => this.fail(err));
    // No new error (and stack capture) when the connection already failed or was closed: fail() keeps the first.
    this.channel.on('close', () => this.fail(this.failure ?? new FdbrokerError('ERR_FDBROKER_CLOSED', `the broker at ${this.path} closed the connection`)));
  }

  /** Hands one decoded message to its request (by id) or to onNotice; owns `fds` from here. */
  private route(msg: BrokerMessage, fds: number[]): void {
    if (NOTICE_TYPES.has(msg.type)) {
      closeAll(fds);
      const notice = msg as Notice;
      if (this.noticeHandler) this.noticeHandler(notice);
      else this.earlyNotices.push(notice);
      return;
    }
    const id = (msg as { id?: number }).id;
    if (msg.type === 'error' && id === undefined) {
      // An error that ends the connection (the broker closes next): every request fails with it.
      closeAll(fds);
      this.fail(brokerError(msg));
      return;
    }
    const req = id === undefined ? undefined : this.inFlight.get(id);
    if (!req) {
      closeAll(fds);
      this.fail(new FdbrokerError('ERR_FDBROKER_PROTOCOL', `unexpected "${msg.type}" message${id === undefined ? '' : ` for request ${id}, which is not in flight`}`));
      return;
    }
    if (msg.type === 'error') {
      closeAll(fds);
      this.settle(id!, req, brokerError(msg));
      return;
    }
    let value: unknown;
    try {
      value = req.take(msg, fds);
    } catch (err) {
      // The answers are out of step with the requests: nothing later can be trusted.
      this.fail(err as Error);
      return;
    }
    if (value !== undefined) this.settle(id!, req, undefined, value);
  }

  private settle(id: number, req: InFlight, err: Error | undefined, value?: unknown): void {
    this.inFlight.delete(id);
    clearTimeout(req.timer);
    if (err) {
      req.abandon();
      req.reject(err);
    } else {
      req.resolve(value);
    }
  }

  private fail(err: Error): void {
    const first = !this.failure;
    if (!this.failure) this.failure = err;
    if (first) queueMicrotask(() => this.onClose?.(err));
    this.channel.close();
    this.settleAll(this.failure);
  }

  /** Every request in flight fails with `err`; their collected fds are closed. */
  private settleAll(err: Error): void {
    for (const [id, req] of [...this.inFlight]) this.settle(id, req, err);
  }

  /** Lets the process exit while this connection is open. */
  unref(): void { this.channel.unref(); }
  ref(): void { this.channel.ref(); }

  /** Closes the connection; every request in flight rejects with ERR_FDBROKER_CLOSED. After leave(): nothing more (it closes once `leaving` is sent). */
  close(): void {
    if (!this.failure) this.failure = new FdbrokerError('ERR_FDBROKER_CLOSED', 'the connection was closed');
    if (!this.leaving) this.channel.close();
    this.settleAll(this.failure);
  }

  get isClosed(): boolean { return this.failure !== undefined; }

  /** Sends `msg`; throws (nothing sent) on a closed connection. */
  private send(msg: ClientMessage): void {
    if (this.failure) throw this.failure;
    this.channel.send(encode(msg));
  }

  /**
   * Sends `req` and returns its answer, as put together by `take` (see
   * InFlight); `timeoutMs` undefined: as long as the connection lives. A
   * request not answered in time fails the connection: a late answer could
   * no longer be told apart.
   */
  private call<T>(req: ClientMessage & { id: number }, take: InFlight['take'] & { abandon?: () => void }, timeoutMs: number | undefined): Promise<T> {
    try {
      this.send(req);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.expect(req.id, take, timeoutMs) as Promise<T>;
  }

  /** Registers request `id` (already sent) and returns the promise of its answer. */
  private expect(id: number, take: InFlight['take'] & { abandon?: () => void }, timeoutMs: number | undefined): Promise<unknown> {
    const p = new Promise<unknown>((resolve, reject) => {
      const timer = timeoutMs === undefined ? undefined
        : setTimeout(() => this.fail(timeoutError(this.path, `reply to request ${id}`)), Math.max(0, timeoutMs));
      this.inFlight.set(id, { take, abandon: take.abandon ?? (() => {}), resolve, reject, timer });
    });
    if (this.failure) this.settleAll(this.failure);
    return p;
  }

  /**
   * Asks for listeners by name (all when `names` is undefined). The caller owns
   * every returned fd. On error, every fd received so far is closed.
   */
  async adopt(names: string[] | undefined, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ReceivedListener[]> {
    checkNames(names);
    const r = await this.call<{ listeners: ReceivedListener[] }>({ type: 'adopt', id: this.nextId++, names: names ?? null }, listenersAnswer(), timeoutMs);
    return r.listeners;
  }

  /**
   * Adopts like adopt() and makes this connection a new generation, which
   * stays one while the connection is open. Same fd ownership as adopt().
   * Once per connection (a second join or rejoin: ERR_FDBROKER_INVALID_ARGUMENT).
   */
  async join(names: string[] | undefined, options: JoinOptions = {}): Promise<{ generation: number; epoch: number; listeners: ReceivedListener[] }> {
    checkNames(names);
    checkGenerationFields(options.label, options.standby);
    this.claimGeneration('join');
    const r = await this.call<{ generation?: number; epoch?: number; listeners: ReceivedListener[] }>({
      type: 'join', id: this.nextId++, names: names ?? null, ...(options.label ? { label: options.label } : {}),
      ...(options.standby ? { standby: options.standby } : {}), ...(options.heartbeat ? { heartbeat: true } : {}),
      ...(options.spare && this.features.includes('spare') ? { spare: true } : {}),
      ...(options.slot && this.features.includes('slots') ? { slot: options.slot } : {}),
      ...(options.pause && this.features.includes('pause') ? { pause: true } : {}),
    }, listenersAnswer(), options.timeout ?? DEFAULT_TIMEOUT_MS);
    if (r.generation === undefined) {
      closeAll(r.listeners.map((l) => l.fd));
      throw new FdbrokerError('ERR_FDBROKER_PROTOCOL', 'the broker did not assign a generation');
    }
    return { generation: r.generation, epoch: r.epoch ?? 0, listeners: r.listeners };
  }

  /**
   * Tells the broker this generation serves; older generations are then told
   * to retire. Without a timeout it waits as long as the connection lives: the
   * answer says whether the broker committed it, and there is no other way
   * to learn that on this connection.
   */
  async ready(timeoutMs?: number): Promise<void> {
    await this.call({ type: 'ready', id: this.nextId++ }, replyOf('ack'), timeoutMs);
  }

  /**
   * Joins this broker as a generation that already has its listeners (it
   * outlived the broker it joined): no fds are sent. Returns the number, state
   * and epoch the broker gave it (epoch: the one claimed, from a broker
   * without the "epoch" feature). State "standby" needs the broker's
   * "standby-rejoin" feature (else ERR_FDBROKER_INVALID_ARGUMENT, nothing sent).
   */
  async rejoin(req: RejoinRequest, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ generation: number; state: string; epoch: number }> {
    checkNames(req.names);
    checkGenerationFields(req.label, req.standby);
    if (!isGenerationNumber(req.generation)) throw invalid(`rejoin: generation must be an integer from 1 to ${MAX_GENERATION}`);
    if (req.state === 'standby' && !this.features.includes('standby-rejoin')) {
      throw invalid('rejoin: this broker does not take state "standby" (no "standby-rejoin" feature); claim "retiring"');
    }
    this.claimGeneration('rejoin');
    const withEpoch = this.features.includes('epoch') && req.epoch !== undefined;
    const ack = await this.call<AckMessage>({
      type: 'rejoin', id: this.nextId++, generation: req.generation, state: req.state, names: req.names,
      ...(req.label ? { label: req.label } : {}), ...(req.standby ? { standby: req.standby } : {}),
      ...(req.heartbeat ? { heartbeat: true } : {}),
      ...(req.state === 'standby' && req.standbyLeft !== undefined ? { standbyLeft: Math.max(0, Math.round(req.standbyLeft)) } : {}),
      ...(withEpoch ? { epoch: req.epoch } : {}),
      ...(req.slot && this.features.includes('slots') ? { slot: req.slot } : {}),
    }, replyOf('ack'), timeoutMs);
    return { generation: ack.generation ?? req.generation, state: ack.state ?? req.state, epoch: ack.epoch ?? req.epoch ?? 0 };
  }

  /** Answers a ping (heartbeat) with its id; false when the connection is closed. */
  pong(id: number): boolean {
    if (this.failure) return false;
    this.send({ type: 'pong', id });
    return true;
  }

  /**
   * A planned stop: tells the broker this generation stops on purpose (not a
   * crash), then closes once that is sent. Sent only if the broker announced
   * the "leaving" feature (else this is close()); returns whether it was.
   */
  leave(): boolean {
    if (this.failure) return false;
    const announced = this.features.includes('leaving');
    if (announced) {
      try {
        this.send({ type: 'leaving' });
      } catch { /* the connection failed as we sent: close() below */ }
    }
    if (!this.failure) this.failure = new FdbrokerError('ERR_FDBROKER_CLOSED', 'the connection was closed');
    this.settleAll(this.failure);
    // end(): the leaving message goes out before the close.
    this.leaving = true;
    this.channel.end();
    return announced;
  }

  /**
   * A retiring generation's report of what it still holds (no answer). Sent
   * only if the broker announced the "holding" feature; returns whether it was.
   */
  reportHolding(h: { connections: number; sessions: number; upgraded: number; hooked: number }): boolean {
    if (!this.features.includes('holding') || this.failure) return false;
    this.send({ type: 'holding', connections: h.connections, sessions: h.sessions, upgraded: h.upgraded, hooked: h.hooked });
    return true;
  }

  /**
   * Asks the broker to re-read its configuration and apply it (only the
   * broker's own uid and root may). Resolves with what changed; rejects with
   * the broker's error (ERR_FDBROKER_INVALID_CONFIG, ERR_FDBROKER_RELOAD_FAILED,
   * ERR_FDBROKER_NO_CONFIG, ERR_FDBROKER_NOT_PERMITTED, ERR_FDBROKER_UPGRADE_IN_PROGRESS
   * while a takeover is in flight), in which case nothing changed.
   */
  async reload(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ added: string[]; removed: string[]; changed: string[]; grants?: string[] }> {
    const r = await this.call<ReloadedMessage>({ type: 'reload', id: this.nextId++ }, replyOf('reloaded'), timeoutMs);
    return { added: r.added, removed: r.removed, changed: r.changed, ...(r.grants ? { grants: r.grants } : {}) };
  }

  /**
   * `fdbroker pause`: every generation stops accepting on `names` (all when
   * absent) for `forMs` (the broker's default and cap apply). Resolves with
   * every listener paused now. Rejects with ERR_FDBROKER_CANNOT_PAUSE (a
   * generation that cannot pause holds one: nothing paused), ERR_FDBROKER_NOT_PERMITTED,
   * ERR_FDBROKER_UNKNOWN_LISTENER, or ERR_FDBROKER_PROTOCOL from a broker without feature "pause".
   */
  async pause(names?: string[], forMs?: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<PausedMessage['listeners']> {
    checkNames(names);
    this.needFeature('pause');
    const r = await this.call<PausedMessage>({ type: 'pause', id: this.nextId++, names: names ?? null, ...(forMs !== undefined ? { forMs } : {}) },
      replyOf('paused'), timeoutMs);
    return r.listeners;
  }

  /** `fdbroker resume`: ends the pause of `names` (all when absent). Resolves with the listeners still paused. */
  async unpause(names?: string[], timeoutMs = DEFAULT_TIMEOUT_MS): Promise<PausedMessage['listeners']> {
    checkNames(names);
    this.needFeature('pause');
    const r = await this.call<PausedMessage>({ type: 'unpause', id: this.nextId++, names: names ?? null }, replyOf('paused'), timeoutMs);
    return r.listeners;
  }

  private needFeature(feature: string): void {
    if (!this.features.includes(feature)) {
      throw new FdbrokerError('ERR_FDBROKER_VERSION', `the broker at ${this.path} does not support "${feature}" (an older fdbroker): upgrade it first`);
    }
  }

  /**
   * Takeover (PROTOCOL.md §2.9): asks the broker for everything it holds,
   * offering this software's versions. Returns the handoff (its parts put
   * together) and every listener; the caller owns every fd, and on error
   * every fd received so far is closed. Then commit() once this process
   * answers on the path.
   */
  async takeover(protocol: number, software: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ id: number; handoff: HandoffMessage; listeners: ReceivedListener[] }> {
    const id = this.nextId++;
    const r = await this.call<{ handoff: HandoffMessage; listeners: ReceivedListener[] }>(
      { type: 'takeover', id, protocol, software }, handoffAnswer(), timeoutMs);
    this.takeovers.add(id);
    return { id, handoff: r.handoff, listeners: r.listeners };
  }

  /**
   * Takeover: tells the old broker this process answers on the path now (`id`:
   * a takeover() of this connection); resolves on its ack with `left`: the
   * generations that left the old broker while the takeover was pending.
   */
  async commit(id: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ left: number[] }> {
    if (!this.takeovers.has(id)) throw invalid(`commit(${id}): no takeover with that id was answered on this connection`);
    this.takeovers.delete(id);
    const ack = await this.call<AckMessage>({ type: 'committed', id }, replyOf('ack'), timeoutMs);
    return { left: ack.left ?? [] };
  }

  /**
   * The broker's listeners, clients and generations (a large answer arrives in
   * parts and is put together). `holders: false`: without each listener's
   * holders, which costs the broker a /proc scan.
   */
  async status(timeoutMs = DEFAULT_TIMEOUT_MS, options: { holders?: boolean } = {}): Promise<StatusMessage> {
    const id = this.nextId++;
    return this.call<StatusMessage>({ type: 'status', id, ...(options.holders === false ? { holders: false } : {}) }, statusAnswer(), timeoutMs);
  }

  /** A connection is one generation at most: a second join or rejoin is a caller's mistake, refused before it is sent. */
  private claimGeneration(what: string): void {
    if (this.failure) throw this.failure;
    if (this.joined) throw invalid(`${what}: this connection already joined as a generation (one join or rejoin per connection)`);
    this.joined = true;
  }
}
