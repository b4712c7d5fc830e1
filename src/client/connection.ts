// The client side of the protocol: connect to a broker's control socket, say
// hello, and make requests. Used by adoptListeners(), `fdbroker status` and
// anything else that talks to a broker.
//
// Fd ownership: fds that arrive with a "listeners" reply are returned to the
// caller of adopt(), who owns them; on every error path they are closed here.
import * as fs from 'node:fs';
import { native } from '../native/binding';
import { Channel } from '../transport/channel';
import { FdbrokerError, systemError } from '../protocol/errors';
import {
  decodeBrokerMessage, encode, type AdoptMessage, type BrokerMessage, type ClientMessage, type HandoffMessage, type ListenerInfo, type MovedMessage,
  type RetireMessage, type ResumeMessage, type ReleaseMessage, type StatusMessage,
} from '../protocol/messages';
import { CONNECT_RETRY_MS, DEFAULT_TIMEOUT_MS } from './defaults';
import { PROTOCOL_VERSIONS } from '../protocol/limits';
import { VERSION } from '../protocol/version';

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

export interface ReceivedListener { info: ListenerInfo; fd: number }

const EAGAIN = -11;
const EPIPE = -32;
const ECONNRESET = -104;

function kindOf(st: fs.Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a fifo';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'some other kind of file';
}

function connectError(r: number, path: string): Error {
  const cause = systemError(r, 'connect', path);
  switch (cause.code) {
    case 'ENOENT':
    case 'ECONNREFUSED': {
      // connect(2) on a regular file (or a directory, a fifo) also answers
      // ECONNREFUSED: say what the path is rather than suggest starting a
      // broker there, which would fail because the path is taken.
      let st: fs.Stats | undefined;
      try { st = fs.statSync(path); } catch { st = undefined; }
      if (st && !st.isSocket()) {
        return new FdbrokerError('ERR_FDBROKER_NOT_A_BROKER',
          `${path} is not a socket but ${kindOf(st)}: give the control socket path the broker was started with`, { cause });
      }
      return new FdbrokerError('ERR_FDBROKER_NO_BROKER',
        `no broker is listening on ${path} (${cause.code}): start one with \`fdbroker serve ${path} --listen NAME=SPEC\``, { cause });
    }
    case 'EACCES':
    case 'EPERM':
      return new FdbrokerError('ERR_FDBROKER_ACCESS_DENIED',
        `not allowed to connect to ${path} (${cause.code}): run as the broker's user, or let this user in on both levels: the socket file's mode/group (fdbroker serve --mode 0660 --group GID) and the broker's grants (--allow-uid or --allow-gid)`, { cause });
    case 'EPROTOTYPE':
    case 'ENOTSOCK':
      return new FdbrokerError('ERR_FDBROKER_NOT_A_BROKER',
        `${path} is not an fdbroker control socket (${cause.code})`, { cause });
    default:
      return cause;
  }
}

type Notice = RetireMessage | ResumeMessage | ReleaseMessage | MovedMessage;

type Waiter = { resolve: (m: BrokerMessage, fds: number[]) => void; reject: (e: Error) => void };

export class BrokerConnection {
  readonly path: string;
  readonly version: number;
  readonly brokerPid: number;
  /** The broker is embedded in an app (the app as its own broker), not `fdbroker serve`. */
  embedded = false;
  /** Optional message types the broker accepts (its welcome's `features`; none from an older broker). */
  features: readonly string[] = [];
  private readonly channel: Channel;
  private waiter: Waiter | undefined;
  /**
   * Parts of a multi-part answer that arrived before the next next() call: the
   * channel reads several queued messages in one turn, faster than the
   * awaiting code installs its next waiter.
   */
  private readonly inbox: Array<{ msg: BrokerMessage; fds: number[] }> = [];
  private collecting = false;
  /**
   * Called on the broker's unsolicited messages to a generation: retire,
   * resume, release. Notices that arrive before a handler is set are kept and
   * handed to it when it is set (a retire can follow a join's last part in
   * the same read).
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
    return BrokerConnection.open(path, options, undefined);
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
    const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    const deadline = Date.now() + timeout;
    const request: AdoptMessage = { type: 'adopt', id: 1, names: names ?? null };
    const conn = await BrokerConnection.open(path, options, request);
    try {
      return (await conn.collectListeners(request.id, deadline)).listeners;
    } finally {
      conn.close();
    }
  }

  /** connect(), with `pipelined` (if any) sent right after the hello; its answer is then collected by the caller. */
  private static async open(path: string, options: ConnectOptions, pipelined: (ClientMessage & { id: number }) | undefined): Promise<BrokerConnection> {
    const deadline = Date.now() + (options.timeout ?? DEFAULT_TIMEOUT_MS);
    const n = native();
    const c = n.constants;
    const fd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
    if (fd < 0) throw systemError(fd, 'socket');
    // A Unix connect() fails at once with EAGAIN while the broker's queue is
    // full; retry until the deadline.
    for (;;) {
      const r = n.connect(fd, { family: 'unix', path });
      if (r === 0) break;
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
    // Answers to the pipelined request read in the same turn as the welcome.
    if (pipelined) {
      conn.nextId = pipelined.id + 1;
      conn.collecting = true;
      conn.inbox.push(...pending.later);
    } else {
      pending.dropLater();
    }
    // The broker may have closed in the same read as its welcome: the close
    // event then went to the pending handlers, not to the connection's.
    if (channel.isClosed && conn.inbox.length === 0) {
      throw new FdbrokerError('ERR_FDBROKER_CLOSED', `the broker at ${path} closed the connection after its welcome`);
    }
    if (channel.isClosed) {
      conn.failure = new FdbrokerError('ERR_FDBROKER_CLOSED', `the broker at ${path} closed the connection`);
      return conn;
    }
    conn.listen();
    return conn;
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
      if (msg.type === 'ping') {
        // Liveness: answered here, at once, by whatever runs this event loop.
        closeAll(fds);
        try { this.send({ type: 'pong', id: msg.id }); } catch { /* closed: the broker sees it */ }
        return;
      }
      if (msg.type === 'retire' || msg.type === 'resume' || msg.type === 'release' || msg.type === 'moved') {
        closeAll(fds);
        if (this.noticeHandler) this.noticeHandler(msg);
        else this.earlyNotices.push(msg);
        return;
      }
      const w = this.waiter;
      if (!w && this.collecting) {
        this.inbox.push({ msg, fds });
        return;
      }
      if (!w) {
        closeAll(fds);
        this.fail(new FdbrokerError('ERR_FDBROKER_PROTOCOL', `unexpected "${msg.type}" message`));
        return;
      }
      w.resolve(msg, fds);
    });
    this.channel.on('error', (err) => this.fail(err));
    // No new error (and stack capture) when the connection already failed or was closed: fail() keeps the first.
    this.channel.on('close', () => this.fail(this.failure ?? new FdbrokerError('ERR_FDBROKER_CLOSED', `the broker at ${this.path} closed the connection`)));
  }

  private fail(err: Error): void {
    const first = !this.failure;
    if (!this.failure) this.failure = err;
    if (first) queueMicrotask(() => this.onClose?.(err));
    this.dropInbox();
    this.channel.close();
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.failure);
  }

  /** Lets the process exit while this connection is open. */
  unref(): void { this.channel.unref(); }
  ref(): void { this.channel.ref(); }

  /** Closes the connection. */
  close(): void {
    if (!this.failure) this.failure = new FdbrokerError('ERR_FDBROKER_CLOSED', 'the connection was closed');
    this.dropInbox();
    this.channel.close();
  }

  get isClosed(): boolean { return this.failure !== undefined; }

  private send(msg: ClientMessage): void {
    if (this.failure) throw this.failure;
    this.channel.send(encode(msg));
  }

  /** Waits for the next message (one request at a time); `timeoutMs` undefined: as long as the connection lives. */
  private next(timeoutMs: number | undefined): Promise<{ msg: BrokerMessage; fds: number[] }> {
    if (this.waiter) return Promise.reject(new FdbrokerError('ERR_FDBROKER_INTERNAL', 'one request at a time'));
    const queued = this.inbox.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
        this.fail(timeoutError(this.path, 'reply'));
      }, Math.max(0, timeoutMs));
      this.waiter = {
        resolve: (msg, fds) => { if (timer) clearTimeout(timer); this.waiter = undefined; resolve({ msg, fds }); },
        reject: (e) => { if (timer) clearTimeout(timer); this.waiter = undefined; reject(e); },
      };
    });
  }

  /**
   * Asks for listeners by name (all when `names` is undefined). The caller owns
   * every returned fd. On error, every fd received so far is closed.
   */
  async adopt(names: string[] | undefined, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ReceivedListener[]> {
    return (await this.receiveListeners({ type: 'adopt', id: this.nextId++, names: names ?? null }, timeoutMs)).listeners;
  }

  /**
   * Adopts like adopt() and makes this connection a new generation, which
   * stays one while the connection is open. Same fd ownership as adopt().
   */
  async join(names: string[] | undefined, label?: string, timeoutMs = DEFAULT_TIMEOUT_MS, standby?: number): Promise<{ generation: number; listeners: ReceivedListener[] }> {
    // heartbeat: this connection answers pings itself (see listen()), so the broker can tell a hung process.
    const r = await this.receiveListeners({
      type: 'join', id: this.nextId++, names: names ?? null, ...(label ? { label } : {}), ...(standby ? { standby } : {}), heartbeat: true,
    }, timeoutMs);
    if (r.generation === undefined) {
      closeAll(r.listeners.map((l) => l.fd));
      throw new FdbrokerError('ERR_FDBROKER_PROTOCOL', 'the broker did not assign a generation');
    }
    return { generation: r.generation, listeners: r.listeners };
  }

  /**
   * Tells the broker this generation serves; older generations are then told
   * to retire. Without a timeout it waits as long as the connection lives: the
   * answer says whether the broker committed it, and there is no other way
   * to learn that on this connection.
   */
  async ready(timeoutMs?: number): Promise<void> {
    await this.request({ type: 'ready', id: this.nextId++ }, 'ack', timeoutMs);
  }

  /**
   * Joins this broker as a generation that already has its listeners (it
   * outlived the broker it joined): no fds are sent. Returns the number and
   * state the broker gave it.
   */
  async rejoin(generation: number, state: 'starting' | 'ready' | 'retiring', names: string[], label?: string, standby?: number,
    timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ generation: number; state: string }> {
    const ack = await this.request({
      type: 'rejoin', id: this.nextId++, generation, state, names, ...(label ? { label } : {}), ...(standby ? { standby } : {}), heartbeat: true,
    }, 'ack', timeoutMs);
    return { generation: ack.generation ?? generation, state: ack.state ?? state };
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
    const r = await this.request({ type: 'reload', id: this.nextId++ }, 'reloaded', timeoutMs);
    return { added: r.added, removed: r.removed, changed: r.changed, ...(r.grants ? { grants: r.grants } : {}) };
  }

  /** Sends a request that carries no fds back, and returns its answer of type `expect`. */
  private async request<T extends BrokerMessage['type']>(req: ClientMessage & { id: number }, expect: T, timeoutMs: number | undefined): Promise<Extract<BrokerMessage, { type: T }>> {
    this.send(req);
    const { msg, fds } = await this.next(timeoutMs);
    closeAll(fds);
    if (msg.type === 'error') throw brokerError(msg);
    if (msg.type !== expect || (msg as { id?: number }).id !== req.id) {
      throw new FdbrokerError('ERR_FDBROKER_PROTOCOL', `expected "${expect}" for request ${req.id}, got "${msg.type}"`);
    }
    return msg as Extract<BrokerMessage, { type: T }>;
  }

  /**
   * Takeover (PROTOCOL.md §2.9): asks the broker for everything it holds,
   * offering this software's versions. Returns the handoff (its parts put
   * together) and every listener; the caller owns every fd, and on error
   * every fd received so far is closed. Then commit() once this process
   * answers on the path.
   */
  async takeover(protocol: number, software: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ id: number; handoff: HandoffMessage; listeners: ReceivedListener[] }> {
    const deadline = Date.now() + timeoutMs;
    const id = this.nextId++;
    this.send({ type: 'takeover', id, protocol, software });
    this.collecting = true;
    let handoff: HandoffMessage | undefined;
    try {
      for (let expectPart = 0; ; expectPart++) {
        const { msg, fds } = await this.next(Math.max(0, deadline - Date.now()));
        closeAll(fds);
        if (msg.type === 'error') throw brokerError(msg);
        if (msg.type !== 'handoff' || msg.id !== id || msg.part !== expectPart) {
          throw new FdbrokerError('ERR_FDBROKER_PROTOCOL', `expected part ${expectPart} of handoff ${id}, got "${msg.type}"`);
        }
        if (!handoff) handoff = { ...msg, generations: [...msg.generations] };
        else handoff.generations.push(...msg.generations);
        if (msg.last) break;
      }
    } catch (err) {
      this.collecting = false;
      throw err;
    }
    const { listeners } = await this.collectListeners(id, deadline);
    return { id, handoff, listeners };
  }

  /** Takeover: tells the old broker this process answers on the path now (`id`: the takeover's); resolves on its ack. */
  async commit(id: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    await this.request({ type: 'committed', id }, 'ack', timeoutMs);
  }

  private async receiveListeners(request: ClientMessage & { id: number }, timeoutMs: number): Promise<{ generation?: number; listeners: ReceivedListener[] }> {
    const deadline = Date.now() + timeoutMs;
    this.send(request);
    this.collecting = true;
    return this.collectListeners(request.id, deadline);
  }

  /** Collects the parts of the "listeners" answer to request `id` (already sent; `collecting` set). */
  private async collectListeners(id: number, deadline: number): Promise<{ generation?: number; listeners: ReceivedListener[] }> {
    const out: ReceivedListener[] = [];
    let generation: number | undefined;
    try {
      for (let expectPart = 0; ; expectPart++) {
        const { msg, fds } = await this.next(deadline - Date.now());
        if (msg.type === 'error') throw brokerError(msg);
        if (msg.type !== 'listeners' || msg.id !== id || msg.part !== expectPart) {
          closeAll(fds);
          throw new FdbrokerError('ERR_FDBROKER_PROTOCOL', `expected part ${expectPart} of listeners ${id}, got "${msg.type}"`);
        }
        msg.listeners.forEach((info, i) => out.push({ info, fd: fds[i]! }));
        if (msg.generation !== undefined) generation = msg.generation;
        if (msg.last) return { generation, listeners: out };
      }
    } catch (err) {
      closeAll(out.map((l) => l.fd));
      throw err;
    } finally {
      this.collecting = false;
      // Anything still buffered is not part of this answer: as before, an unexpected message fails the connection.
      const extra = this.inbox[0];
      if (extra) this.fail(new FdbrokerError('ERR_FDBROKER_PROTOCOL', `unexpected "${extra.msg.type}" message`));
    }
  }

  private dropInbox(): void {
    for (const q of this.inbox.splice(0)) closeAll(q.fds);
  }

  /**
   * The broker's listeners, clients and generations (a large answer arrives in
   * parts and is put together). `holders: false`: without each listener's
   * holders, which costs the broker a /proc scan.
   */
  async status(timeoutMs = DEFAULT_TIMEOUT_MS, options: { holders?: boolean } = {}): Promise<StatusMessage> {
    const deadline = Date.now() + timeoutMs;
    const id = this.nextId++;
    this.send({ type: 'status', id, ...(options.holders === false ? { holders: false } : {}) });
    this.collecting = true;
    try {
      let whole: StatusMessage | undefined;
      for (let expectPart = 0; ; expectPart++) {
        const { msg, fds } = await this.next(Math.max(0, deadline - Date.now()));
        closeAll(fds);
        if (msg.type === 'error') throw brokerError(msg);
        if (msg.type !== 'status' || msg.id !== id || (msg.part ?? 0) !== expectPart) {
          throw new FdbrokerError('ERR_FDBROKER_PROTOCOL', `expected part ${expectPart} of status ${id}, got "${msg.type}"`);
        }
        if (!whole) whole = { ...msg, listeners: [...msg.listeners], clients: [...msg.clients], generations: [...msg.generations] };
        else {
          whole.listeners.push(...msg.listeners);
          whole.clients.push(...msg.clients);
          whole.generations.push(...msg.generations);
        }
        if (msg.last !== false) {
          delete whole.part;
          delete whole.last;
          return whole;
        }
      }
    } finally {
      this.collecting = false;
      const extra = this.inbox[0];
      if (extra) this.fail(new FdbrokerError('ERR_FDBROKER_PROTOCOL', `unexpected "${extra.msg.type}" message`));
    }
  }
}

/** Collects the first message during the handshake, with the deadline. */
class PendingConnection {
  private onMsg: (payload: Buffer, fds: number[]) => void = () => {};
  private onErr: (e: Error) => void = () => {};
  private onClose: () => void = () => {};
  private first = true;
  /** Messages read in the same turn as the first one (a pipelined request's answer); their fds are owned here until taken. */
  readonly later: Array<{ msg: BrokerMessage; fds: number[] }> = [];
  constructor(private readonly channel: Channel, private readonly deadline: number, private readonly path: string) {}

  next(): Promise<{ msg: BrokerMessage }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.channel.close(); reject(timeoutError(this.path, 'handshake')); },
        Math.max(0, this.deadline - Date.now()));
      const done = (f: () => void) => { clearTimeout(timer); f(); };
      this.onMsg = (payload, fds) => done(() => {
        if (!this.first) {
          this.keepLater(payload, fds);
          return;
        }
        this.first = false;
        try {
          const msg = decodeBrokerMessage(payload, fds.length);
          closeAll(fds);
          resolve({ msg });
        } catch (err) {
          closeAll(fds);
          this.channel.close();
          reject(err);
        }
      });
      this.onErr = (e) => done(() => reject(e));
      this.onClose = () => done(() => reject(new FdbrokerError('ERR_FDBROKER_NOT_A_BROKER',
        `${this.path} closed the connection without a reply: is it an fdbroker control socket?`)));
      this.channel.on('message', this.onMsg);
      this.channel.on('error', this.onErr);
      this.channel.on('close', this.onClose);
      this.channel.resume();
    });
  }

  private keepLater(payload: Buffer, fds: number[]): void {
    let msg: BrokerMessage;
    try {
      msg = decodeBrokerMessage(payload, fds.length);
    } catch (err) {
      closeAll(fds);
      // Handed on as the answer: collecting it fails the connection with this error.
      msg = { type: 'error', code: (err as FdbrokerError).code ?? 'ERR_FDBROKER_PROTOCOL', message: (err as Error).message };
      fds = [];
      this.channel.close();
    }
    this.later.push({ msg, fds });
  }

  /** Closes the fds of messages nobody will take. */
  dropLater(): void {
    for (const m of this.later.splice(0)) closeAll(m.fds);
  }

  detach(): void {
    this.channel.off('message', this.onMsg);
    this.channel.off('error', this.onErr);
    this.channel.off('close', this.onClose);
  }
}

function closeAll(fds: number[]): void {
  for (const fd of fds) native().close(fd);
}

function timeoutError(path: string, what: string): FdbrokerError {
  return new FdbrokerError('ERR_FDBROKER_TIMEOUT', `the broker at ${path} did not answer in time (${what})`);
}

function brokerError(msg: Extract<BrokerMessage, { type: 'error' }>): FdbrokerError {
  // `cause`: the broker's system error code, as a Node-shaped cause.
  const cause = msg.cause ? Object.assign(new Error(msg.cause), { code: msg.cause }) : undefined;
  const err = new FdbrokerError(msg.code, msg.message, cause ? { cause } : undefined);
  if (msg.names) (err as FdbrokerError & { names?: string[] }).names = msg.names;
  return err;
}
