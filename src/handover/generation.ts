// A Generation is this process's turn at serving: it adopts listeners and
// stays connected to the broker. ready() says it serves; the broker then tells
// every older generation to retire. When told to retire, a Generation drains
// the servers its listeners are attached to (unless told not to) and leaves.
//
// With `listen`, the app is its own broker (like HAProxy's expose-fd
// listeners): the first process creates the listeners and serves them on the
// control path itself; each successor adopts them from its predecessor, serves
// them on the same path (renamed over it, so the path always answers), and
// retires the predecessor when ready. No `fdbroker serve` is needed.
//
// Fd ownership: as adoptListeners(): each Listener owns its fd until attached.
// In self-broker mode the embedded broker owns its own duplicates.
import { EventEmitter } from 'node:events';
import * as netModule from 'node:net';
import type * as net from 'node:net';
import { Broker } from '../broker/broker';
import { BrokerConnection } from '../client/connection';
import { toListeners } from '../client/adopt';
import { drain, holding, type DrainResult, type Holding } from './drain';
import { FdbrokerError } from '../protocol/errors';
import { isListening, type Listener } from '../client/listener';
import { DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_STANDBY_REQUEST_MS, REJOIN_RETRY_MAX_MS, REJOIN_RETRY_MS, STANDBY_GRACE_MS } from './defaults';
import { DEFAULT_FD_HEADROOM, DEFAULT_TIMEOUT_MS } from '../client/defaults';
import { exposeListeners, serveAsSuccessor, serveFirst } from './self-broker';
import { Upgrader, type UpgradeFailure, type UpgradeOptions } from './upgrade';
import { checkFdHeadroom } from '../client/fd-headroom';
import { HoldingReporter } from './holding-report';
import { pathFromRun } from './run-env';

export interface GenerationOptions {
  /** Only these listeners (default all; [] for none, e.g. a cluster primary whose workers adopt). */
  names?: string[];
  /** Free text shown in `fdbroker status`. */
  label?: string;
  /** Deadline for joining, in ms (default 10 s). */
  timeout?: number;
  /** On retire: 'drain' (default) drains every server attached to these listeners, then leaves; 'none' only emits 'retire'. */
  onRetire?: 'drain' | 'none';
  /** drain() deadline (default 30 s). */
  drainTimeout?: number;
  /** drain() spread: ms over which connections are told to close (default 1 s). */
  drainSpread?: number;
  /**
   * The app as its own broker: listener specs (as `fdbroker serve --listen`)
   * created by the first process when nothing answers on the path. A
   * successor adopts them from its predecessor instead. When the path is a
   * standalone `fdbroker serve`, this option is not used: the process is an
   * ordinary generation of that broker.
   */
  listen?: string[];
  /** Self-broker mode: mode of the control socket (default 0600). */
  mode?: number;
  /** fds that must stay free below RLIMIT_NOFILE after adopting (default 64; 0 to skip). */
  fdHeadroom?: number;
  /** uids trusted to run the broker (default: this process's uid, and root). */
  trustUids?: number[];
  /**
   * Warm standby: after a newer generation is ready, stop accepting but stay
   * able to resume for this many ms (capped by the broker's --standby), in
   * case the newer one dies or stops accepting. 'drained' comes after the
   * window. Default 5 s with onRetire 'drain'; 0 with 'none' (the app then
   * handles 'resume' itself). 0 turns it off.
   */
  standby?: number;
}

export interface GenerationEvents {
  /** A newer generation is ready; `by` is its number. With standby, accepting stops now and draining after the window. */
  retire: [by: number];
  /** Standby: the newer generation failed (it left or stopped accepting); this one accepts again. */
  resume: [info: { failed: number; reason: string }];
  /** The connection to the broker was restored (a restarted or replaced broker): this generation joined it again. */
  rejoin: [info: { generation: number; state: string }];
  /** After retire: every attached server is drained; the connection to the broker is closed. */
  drained: [result: DrainResult];
  /** The broker connection ended without a retire (broker stopped or crashed). Serving goes on, and the generation rejoins the path when a broker answers there again. */
  brokerLost: [err: Error];
  /** upgradeOnSignal(): a successor was started. */
  upgrade: [pid: number];
  /** upgradeOnSignal(): the successor exited, or was stopped, before it became ready. This process serves on. */
  upgradeFailed: [info: UpgradeFailure];
  /** upgradeOnSignal(): a signal arrived while an upgrade was in flight (or while retiring) and was ignored. */
  upgradeRefused: [reason: string];
}

export class Generation {
  private readonly events = new EventEmitter<GenerationEvents>();
  private _number: number;
  /** This generation's listeners by name. After a resume, the entries are the listeners adopted anew. */
  readonly listeners: Record<string, Listener>;
  /** The path this generation joined (and, in self-broker mode, serves). */
  readonly path: string;
  /** Connection to the broker this generation joined, if any (none for the first self-broker process). */
  private conn: BrokerConnection | undefined;
  /** Self-broker mode: the broker this process embeds. */
  private readonly broker: Broker | undefined;
  private readonly opts: GenerationOptions;
  private _retiring = false;
  private _ready = false;
  /** ready() was called: a rejoin says "ready", and a ready() in flight completes through it. */
  private readyWanted = false;
  private readyWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private standbyTimer: NodeJS.Timeout | undefined;
  private standing = false;
  private rejoinTimer: NodeJS.Timeout | undefined;
  private closedByUs = false;
  /** The broker said a successor took over the path ("moved"): its connection's end is a move, not a loss. */
  private moving = false;
  private retirePromise: Promise<DrainResult> | undefined;
  private stopUpgrades: (() => void) | undefined;
  private upgradeSetup: (() => void) | undefined;
  /** While retiring: tells the broker what this process's servers still hold (shown by `fdbroker status`); none without servers (a cluster primary). */
  private readonly reporter = new HoldingReporter(() => (this.servers().length > 0 ? this.holding() : undefined),
    (h) => this.conn?.reportHolding(h) ?? false);

  private constructor(path: string, conn: BrokerConnection | undefined, broker: Broker | undefined, number: number,
    listeners: Record<string, Listener>, opts: GenerationOptions) {
    this.path = path;
    this.broker = broker;
    this._number = number;
    this.listeners = listeners;
    this.opts = opts;
    if (conn) this.use(conn);
    broker?.on('retireSelf', (by) => this.onRetire({ by }));
  }

  /** This generation's number (a rejoin may give a new one when the old one is taken). */
  get number(): number { return this._number; }

  private use(conn: BrokerConnection): void {
    this.conn = conn;
    this.reporter.reset();
    conn.onNotice = (msg) => {
      if (msg.type === 'retire') this.onRetire(msg);
      else if (msg.type === 'resume') this.onResume(msg.failed, msg.reason).catch(() => this.endStandby());
      else if (msg.type === 'release') this.endStandby();
      else if (msg.type === 'moved') this.moving = true;
    };
    conn.onClose = (err) => {
      if (this.conn !== conn) return;
      // A takeover: rejoin the new broker at once, in whatever state this
      // generation is (serving, standing by, retiring): nothing else changes.
      if (this.moving && !this.closedByUs) {
        this.moving = false;
        this.scheduleRejoin(0);
        return;
      }
      // In self-broker mode the predecessor's broker goes away once it has
      // retired: expected, not a loss. So is our own close, and a retiring
      // generation's (it leaves anyway).
      const expected = this.closedByUs || (this._retiring && !this.standing) || (this.broker !== undefined && this._ready);
      if (expected) return;
      if (this.standing) {
        // Nobody can tell us to resume any more: finish retiring.
        this.endStandby();
        return;
      }
      this.events.emit('brokerLost', err);
      if (this.broker === undefined) this.scheduleRejoin();
    };
    // The connection must not keep the process alive: the servers do.
    conn.unref();
  }

  /** Retries joining the path again until a broker answers (a restarted broker, or a new one that took the listeners over). */
  private scheduleRejoin(delay = REJOIN_RETRY_MS): void {
    if (this.closedByUs || this.rejoinTimer) return;
    this.rejoinTimer = setTimeout(() => {
      this.rejoinTimer = undefined;
      void this.rejoin().catch(() => this.scheduleRejoin(Math.min(Math.max(delay * 2, REJOIN_RETRY_MS), REJOIN_RETRY_MAX_MS)));
    }, delay);
    this.rejoinTimer.unref();
  }

  private async rejoin(): Promise<void> {
    if (this.closedByUs) return;
    const conn = await BrokerConnection.connect(this.path, { timeout: this.opts.timeout ?? DEFAULT_TIMEOUT_MS, trustUids: this.opts.trustUids });
    try {
      const state = this._retiring ? 'retiring' : this._ready || this.readyWanted ? 'ready' : 'starting';
      const r = await conn.rejoin(this._number, state, Object.keys(this.listeners), this.opts.label, this.standbyMs());
      if (this.closedByUs) {
        conn.close();
        return;
      }
      this._number = r.generation;
      this.use(conn); // notices that came before this are handed over now
      if (this.standing) conn.ref(); // standing by keeps the process alive (see standBy())
      this.events.emit('rejoin', r);
      if (state === 'ready') this.settleReady(r.state === 'ready' ? undefined
        : new FdbrokerError('ERR_FDBROKER_READY_REFUSED', `generation ${r.generation} rejoined as ${r.state}: a newer generation serves`));
    } catch (err) {
      conn.close();
      throw err;
    }
  }

  private standbyMs(): number {
    return this.broker !== undefined ? 0 : standbyRequest(this.opts);
  }

  /** Joins the broker at `path` as a new generation and adopts its listeners. */
  static async start(path: string, options: GenerationOptions = {}): Promise<Generation> {
    checkFdHeadroom(options.fdHeadroom ?? DEFAULT_FD_HEADROOM, options.names?.length ?? 1);
    const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    const deadline = Date.now() + timeout;
    let conn: BrokerConnection | undefined;
    try {
      conn = await BrokerConnection.connect(path, { timeout, trustUids: options.trustUids });
    } catch (err) {
      if (!options.listen || (err as FdbrokerError).code !== 'ERR_FDBROKER_NO_BROKER') throw err;
      return Generation.first(path, options);
    }
    try {
      if (options.listen && conn.embedded) return await Generation.successor(path, conn, options, deadline);
      const { generation, listeners } = await conn.join(options.names, options.label, Math.max(0, deadline - Date.now()), standbyRequest(options));
      return new Generation(path, conn, undefined, generation, toListeners(listeners, options.names), options);
    } catch (err) {
      conn.close();
      // The broker was taken over while the join waited: join its successor, on the same path, within the same deadline.
      if ((err as FdbrokerError).code === 'ERR_FDBROKER_TAKEN_OVER' && deadline > Date.now()) {
        return Generation.start(path, { ...options, timeout: deadline - Date.now() });
      }
      throw err;
    }
  }

  /** Self-broker mode, nobody at the path: create the listeners and serve them. */
  private static first(path: string, options: GenerationOptions): Generation {
    const { broker, listeners } = serveFirst(path, options);
    return new Generation(path, undefined, broker, broker.selfGeneration!, toListeners(listeners, options.names), options);
  }

  /** Self-broker mode, a predecessor serves the path: adopt everything from it and serve the same path. */
  private static async successor(path: string, conn: BrokerConnection, options: GenerationOptions, deadline: number): Promise<Generation> {
    const { broker, listeners, generation } = await serveAsSuccessor(path, conn, options, deadline);
    return new Generation(path, conn, broker, generation, toListeners(listeners, options.names), options);
  }

  on<K extends keyof GenerationEvents>(event: K, fn: (...args: GenerationEvents[K]) => void): this {
    this.events.on(event, fn as never);
    return this;
  }
  once<K extends keyof GenerationEvents>(event: K, fn: (...args: GenerationEvents[K]) => void): this {
    this.events.once(event, fn as never);
    return this;
  }
  off<K extends keyof GenerationEvents>(event: K, fn: (...args: GenerationEvents[K]) => void): this {
    this.events.off(event, fn as never);
    return this;
  }

  get isReady(): boolean { return this._ready; }
  get isRetiring(): boolean { return this._retiring; }
  /** Self-broker mode: whether this process serves the control path itself. */
  get isBroker(): boolean { return this.broker !== undefined; }

  /**
   * Tells the broker this generation serves: older generations are told to
   * retire. Call it once every server is listening. Settles only with the
   * broker's answer, so its outcome is never ambiguous: it resolves once a
   * broker has committed it, and rejects with ERR_FDBROKER_READY_REFUSED when
   * a broker refused it (a newer generation serves, the ready timeout passed,
   * or this one was rolled back). If the broker is lost before it answers,
   * ready() waits: the generation rejoins the path when a broker answers
   * there again, says it is ready, and ready() settles with that answer.
   * Meanwhile the generation serves, like every other holder of the socket.
   */
  ready(): Promise<void> {
    if (this._ready) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
    if (this.readyWanted) return p;
    this.readyWanted = true;
    const conn = this.conn;
    if (conn && !conn.isClosed) {
      conn.ref();
      conn.ready().then(
        () => this.settleReady(),
        (err: FdbrokerError) => {
          // Refused: final. Connection lost: the rejoin says "ready" and settles it.
          if (err.code === 'ERR_FDBROKER_READY_REFUSED') this.settleReady(err);
          else if (this.broker !== undefined) this.settleReady(); // the predecessor left: this process is the broker now
        },
      ).finally(() => conn.unref());
    } else if (this.broker !== undefined || !conn) {
      this.settleReady();
    }
    return p;
  }

  private settleReady(err?: Error): void {
    if (!err && this.broker) {
      try {
        this.broker.markSelfReady();
      } catch (e) {
        err = e as Error;
      }
    }
    if (!err) this._ready = true;
    else this.readyWanted = false;
    for (const w of this.readyWaiters.splice(0)) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  /** Servers attached to this generation's listeners. */
  servers(): net.Server[] {
    const out: net.Server[] = [];
    for (const l of Object.values(this.listeners)) {
      const s = l.server;
      if (s && typeof (s as net.Server).listen === 'function') out.push(s as net.Server);
    }
    return out;
  }

  /** What the attached servers still hold (see holding()), summed: what a retiring generation has left. */
  holding(): Holding {
    const all = this.servers().map((s) => holding(s));
    const sum = (k: 'connections' | 'sessions' | 'upgraded' | 'hooked') => all.reduce((a, h) => a + h[k], 0);
    return { connections: sum('connections'), sessions: sum('sessions'), upgraded: sum('upgraded'), hooked: sum('hooked'), draining: all.some((h) => h.draining) };
  }

  /**
   * Drains every attached server (see drain()), then leaves the broker (and,
   * self-broker, closes its own). Servers started with the plain
   * `server.listen({ fd: listener.fd })` are found and drained too.
   */
  retire(timeout = this.opts.drainTimeout ?? DEFAULT_DRAIN_TIMEOUT_MS): Promise<DrainResult> {
    if (this.retirePromise) return this.retirePromise;
    this._retiring = true;
    this.standing = false;
    clearTimeout(this.standbyTimer);
    const started = Date.now();
    for (const l of Object.values(this.listeners)) l.findServer();
    this.reporter.start();
    const spread = this.opts.drainSpread;
    this.retirePromise = Promise.all(this.servers().map((s) => drain(s, { timeout, spread }))).then((results) => {
      for (const l of Object.values(this.listeners)) {
        const s = l.server as { close?: () => void; listen?: unknown } | undefined;
        if (s && typeof s.listen !== 'function' && typeof s.close === 'function') s.close(); // dgram
        l.close();
      }
      this.close();
      const sum = (k: 'forced' | 'sessions' | 'hooked') => results.reduce((a, r) => a + r[k], 0);
      return { forced: sum('forced'), ms: Date.now() - started, sessions: sum('sessions'), hooked: sum('hooked') };
    });
    return this.retirePromise;
  }

  /**
   * Serves duplicates of this generation's listeners on `path` as a broker of
   * their own (holding no generations), so that if the broker is lost a new
   * one can take them back: `fdbroker serve <control> --adopt-from <path>`.
   * Returns the embedded Broker; close it when no longer needed.
   */
  expose(path: string, options: { mode?: number } = {}): Broker {
    return exposeListeners(Object.values(this.listeners), path, options);
  }

  /** Leaves the broker without draining (self-broker: closes the embedded broker). Servers are untouched. */
  close(): void {
    this.closedByUs = true;
    clearTimeout(this.rejoinTimer);
    clearTimeout(this.standbyTimer);
    this.reporter.stop();
    this.conn?.close();
    this.broker?.close();
    this.stopUpgrades?.();
  }

  /**
   * The nginx way: on `signal` (default SIGUSR2), start a successor (the same
   * program with the same arguments, detached), which adopts, becomes ready,
   * and so retires this process. A second signal while one upgrade is in
   * flight is refused ('upgradeRefused'). A successor that exits, or is not
   * ready within `timeout` (then it is sent SIGTERM), fails the upgrade
   * ('upgradeFailed') and this process serves on.
   */
  upgradeOnSignal(signal: NodeJS.Signals = 'SIGUSR2', options: UpgradeOptions = {}): this {
    const upgrader = new Upgrader(options, () => this._retiring, {
      started: (pid) => this.events.emit('upgrade', pid),
      failed: (info) => this.events.emit('upgradeFailed', info),
      refused: (reason) => this.events.emit('upgradeRefused', reason),
    });
    const handler = () => upgrader.start();
    this.upgradeSetup = () => {
      process.on(signal, handler);
      this.stopUpgrades = () => process.off(signal, handler);
    };
    this.upgradeSetup();
    return this;
  }

  private onRetire(msg: { by: number; standby?: number; reason?: string }): void {
    if (this._retiring) return;
    this._retiring = true;
    this.stopUpgrades?.();
    this.events.emit('retire', msg.by);
    if ((this.opts.onRetire ?? 'drain') !== 'drain') {
      // The app retires itself: report what its attached servers hold meanwhile.
      this.reporter.start();
      return;
    }
    if (msg.standby && msg.standby > 0 && msg.reason !== 'failed' && this.conn && !this.conn.isClosed) {
      this.standBy(msg.standby);
      return;
    }
    void this.retire().then((r) => this.events.emit('drained', r));
  }

  /**
   * Warm standby: stop accepting (close this process's listening handles;
   * the accept queue stays with the other holders) and keep serving the
   * connections already open, as before, until the broker says resume or
   * release. A lost broker, or a window that passes without a word, ends
   * the standby too.
   */
  private standBy(windowMs: number): void {
    this.standing = true;
    for (const l of Object.values(this.listeners)) l.findServer();
    for (const srv of this.servers()) if (srv.listening) netModule.Server.prototype.close.call(srv);
    this.reporter.start();
    // Standing by keeps the process alive (its listening handles are closed,
    // and there may be no connection left to do it).
    this.conn?.ref();
    this.standbyTimer = setTimeout(() => this.endStandby(), windowMs + STANDBY_GRACE_MS);
  }

  private endStandby(): void {
    if (!this.standing) return;
    this.standing = false;
    clearTimeout(this.standbyTimer);
    this.conn?.unref();
    void this.retire().then((r) => this.events.emit('drained', r));
  }

  /** The generation that replaced this one failed: adopt the listeners anew and listen again on every server. */
  private async onResume(failed: number, reason: string): Promise<void> {
    if (!this.conn || !this._retiring) return;
    if ((this.opts.onRetire ?? 'drain') !== 'drain') {
      // The app handles retire itself, so it handles resume too.
      this._retiring = false;
      this._ready = true;
      this.reporter.stop();
      this.upgradeSetup?.();
      this.events.emit('resume', { failed, reason });
      return;
    }
    if (!this.standing) return;
    this.standing = false;
    clearTimeout(this.standbyTimer);
    this.conn.unref();
    const names = Object.keys(this.listeners);
    let fresh: Record<string, Listener>;
    try {
      fresh = toListeners(await this.conn.adopt(names), names);
    } catch {
      // Cannot adopt again: this generation cannot serve; finish retiring.
      this.standing = true;
      this.endStandby();
      return;
    }
    const pending = new Set(names);
    try {
      for (const name of names) {
        const old = this.listeners[name]!;
        const next = fresh[name]!;
        const server = old.server;
        pending.delete(name);
        // A dgram socket (or a server that kept listening) still has its copy: keep the old listener.
        if (server && isListening(server)) {
          next.close();
          continue;
        }
        old.close();
        this.listeners[name] = next;
        if (server) next.attach(server as net.Server);
      }
    } catch {
      for (const name of pending) fresh[name]?.close();
      this.standing = true;
      this.endStandby();
      return;
    }
    this._retiring = false;
    this._ready = true;
    this.reporter.stop();
    this.upgradeSetup?.();
    this.events.emit('resume', { failed, reason });
  }
}

/** The standby window a generation asks for: its option, else the default when the library drains it (an app that retires itself asks for none). */
function standbyRequest(o: GenerationOptions): number {
  return o.standby ?? ((o.onRetire ?? 'drain') === 'drain' ? DEFAULT_STANDBY_REQUEST_MS : 0);
}

/** Joins the broker at `path` as a new generation. See Generation. Without `path`: the `fdbroker run` that started this process (run-env.ts). */
export async function startGeneration(path?: string, options?: GenerationOptions): Promise<Generation> {
  return Generation.start(path ?? await pathFromRun(), options);
}
