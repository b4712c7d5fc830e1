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
import type { Listener } from '../client/listener';
import { relisten } from './relisten';
import { AcceptPause } from './pause-accept';
import { DEFAULT_DRAIN_TIMEOUT_MS } from './defaults';
import { standbyRequest, type GenerationEvents, type GenerationOptions } from './generation-options';
import { GenerationMachine, type GenerationEffect, type GenerationInput } from '../core/generation-machine';
import { DEFAULT_FD_HEADROOM, DEFAULT_TIMEOUT_MS } from '../client/defaults';
import { exposeListeners, serveAsSuccessor, serveFirst } from './self-broker';
import { Upgrader, type UpgradeOptions } from './upgrade';

export type { GenerationEvents, GenerationOptions } from './generation-options';
import { checkFdHeadroom } from '../client/fd-headroom';
import { HoldingReporter } from './holding-report';
import { fromRun, promoted, startedByRunAt } from './run-env';
import { assertSupportedRuntime } from '../native/runtime';

/** How a process `fdbroker run` started joins: as a warm spare, in an instance slot. */
interface RunJoin { spare?: boolean; slot?: number }

export class Generation {
  private readonly events = new EventEmitter<GenerationEvents>();
  /** The rules (ready, retire, standby, resume, rejoin, close); this class carries out its effects. */
  private readonly machine: GenerationMachine;
  /** This generation's listeners by name. After a resume, the entries are the listeners adopted anew. */
  readonly listeners: Record<string, Listener>;
  /** Its instance slot (`run --instances`; 0 otherwise): claimed again when it rejoins a broker. */
  private slot = 0;
  /** The path this generation joined (and, in self-broker mode, serves). */
  readonly path: string;
  /** Connection to the broker this generation joined, if any (none for the first self-broker process). */
  private conn: BrokerConnection | undefined;
  /** A rejoin's connection until the broker's ack makes it this generation's. */
  private candidate: BrokerConnection | undefined;
  /** Self-broker mode: the broker this process embeds. */
  private readonly broker: Broker | undefined;
  private readonly opts: GenerationOptions;
  /** Told to retire (standing by, resuming or draining) and not resumed since. */
  private _retiring = false;
  private readyWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private standbyTimer: NodeJS.Timeout | undefined;
  private rejoinTimer: NodeJS.Timeout | undefined;
  /** What ended the last connection (for 'brokerLost'). */
  private lastLoss: Error = new FdbrokerError('ERR_FDBROKER_CLOSED', 'the broker connection ended');
  /** Inputs fed while effects run wait here: one input's effects all run before the next input. */
  private readonly inbox: GenerationInput[] = [];
  private stepping = false;
  private retirePromise: Promise<DrainResult> | undefined;
  private stopUpgrades: (() => void) | undefined;
  private upgradeSetup: (() => void) | undefined;
  /** `fdbroker pause`: the listeners this process stopped accepting on, and how it starts again (pause-accept.ts). */
  private readonly pauser: AcceptPause;
  /** While retiring: tells the broker what this process's servers still hold (shown by `fdbroker status`); none without servers (a cluster primary). */
  private readonly reporter = new HoldingReporter(() => (this.servers().length > 0 ? this.holding() : undefined),
    (h) => this.conn?.reportHolding(h) ?? false);

  private constructor(path: string, conn: BrokerConnection | undefined, broker: Broker | undefined, joined: { number: number; epoch: number },
    listeners: Record<string, Listener>, opts: GenerationOptions) {
    this.path = path;
    this.broker = broker;
    this.listeners = listeners;
    this.opts = opts;
    this.pauser = new AcceptPause(listeners, () => {
      const phase = this.machine.state.phase;
      return phase === 'starting' || phase === 'ready';
    });
    this.machine = new GenerationMachine({
      standbyMs: broker !== undefined ? 0 : standbyRequest(opts),
      // This process serves: it answers the broker's pings itself.
      heartbeat: true,
      retireMode: (opts.onRetire ?? 'drain') === 'drain' ? 'drain' : 'app',
      embedded: broker !== undefined,
    });
    this.feed({ type: 'joined', number: joined.number, epoch: joined.epoch, features: conn?.features ?? [], connected: conn !== undefined });
    if (conn) this.use(conn);
    broker?.on('retireSelf', (by) => this.feed({ type: 'retire', by }));
  }

  /** This generation's number (a rejoin may give a new one when the old one is taken). */
  get number(): number { return this.machine.state.number; }

  /** Runs `input` through the machine and carries out its effects, in order. */
  private feed(input: GenerationInput): void {
    this.inbox.push(input);
    if (this.stepping) return;
    this.stepping = true;
    try {
      for (let next = this.inbox.shift(); next; next = this.inbox.shift()) {
        for (const effect of this.machine.step(next, Date.now())) this.run(effect);
      }
    } finally {
      this.stepping = false;
    }
  }

  private run(e: GenerationEffect): void {
    switch (e.type) {
      case 'send-ready': return this.sendReady();
      case 'send-pong':
        try { this.conn?.pong(e.id); } catch { /* closed meanwhile: its onClose reports it */ }
        return;
      case 'send-leaving':
        this.conn?.leave();
        return;
      case 'close-connection':
        this.conn?.close();
        return;
      case 'stop-accepting':
        this.pauser.discard();
        return this.stopAccepting();
      case 'readopt':
        void this.readopt();
        return;
      case 'start-retiring':
        this.pauser.discard();
        this._retiring = true;
        this.stopUpgrades?.();
        if (e.drain) void this.drainAll().then((r) => this.events.emit('drained', r));
        else this.reporter.start(); // the app retires itself: report what its attached servers hold meanwhile
        return;
      case 'schedule-rejoin':
        clearTimeout(this.rejoinTimer);
        this.rejoinTimer = setTimeout(() => { this.rejoinTimer = undefined; this.feed({ type: 'rejoin-timer' }); }, e.delayMs);
        this.rejoinTimer.unref();
        return;
      case 'cancel-rejoin':
        clearTimeout(this.rejoinTimer);
        this.rejoinTimer = undefined;
        return;
      case 'connect':
        BrokerConnection.connect(this.path, { timeout: this.opts.timeout ?? DEFAULT_TIMEOUT_MS, trustUids: this.opts.trustUids }).then(
          (c) => { this.candidate = c; this.feed({ type: 'rejoin-connected', features: c.features }); },
          () => this.feed({ type: 'rejoin-failed' }),
        );
        return;
      case 'send-rejoin': {
        const c = this.candidate!;
        c.rejoin({ ...e.claim, names: Object.keys(this.listeners), label: this.opts.label, ...(this.slot ? { slot: this.slot } : {}) }).then(
          (r) => { if (this.candidate === c) this.feed({ type: 'rejoined', number: r.generation, state: r.state, epoch: r.epoch }); else c.close(); },
          () => { c.close(); if (this.candidate === c) { this.candidate = undefined; this.feed({ type: 'rejoin-failed' }); } },
        );
        return;
      }
      case 'use-new-connection': {
        const c = this.candidate!;
        this.candidate = undefined;
        this.use(c); // notices that came before this are handed over now
        if (this.machine.state.phase === 'standby') c.ref(); // standing by keeps the process alive (see stopAccepting())
        return;
      }
      case 'drop-new-connection':
        this.candidate?.close();
        this.candidate = undefined;
        return;
      case 'arm-standby-timer':
        clearTimeout(this.standbyTimer);
        this.standbyTimer = setTimeout(() => this.feed({ type: 'standby-timer' }), e.delayMs);
        return;
      case 'clear-standby-timer':
        clearTimeout(this.standbyTimer);
        this.standbyTimer = undefined;
        this.conn?.unref();
        return;
      case 'settle-ready': {
        const err = e.ok ? undefined : new FdbrokerError(e.code as FdbrokerError['code'], e.message);
        for (const w of this.readyWaiters.splice(0)) {
          if (err) w.reject(err);
          else w.resolve();
        }
        return;
      }
      case 'emit':
        if (e.event === 'retire') {
          this._retiring = true;
          this.stopUpgrades?.();
          this.events.emit('retire', e.by);
        } else if (e.event === 'resume') {
          this._retiring = false;
          this.reporter.stop();
          this.upgradeSetup?.();
          this.events.emit('resume', { failed: e.failed, reason: e.reason });
        } else if (e.event === 'rejoin') {
          this.events.emit('rejoin', { generation: e.generation, state: e.state });
        } else {
          this.events.emit('brokerLost', this.lastLoss);
        }
        return;
    }
  }

  private use(conn: BrokerConnection): void {
    this.conn = conn;
    this.reporter.reset();
    // "accepting" (feature "pause") is no handover input: it is carried out here, whatever the machine's phase.
    conn.onNotice = (msg) => (msg.type === 'accepting' ? this.pauser.set(msg.paused) : this.feed(msg));
    conn.onClose = (err) => {
      if (this.conn !== conn) return;
      // Nobody is left to end a pause: accept again at once.
      this.pauser.set([]);
      this.lastLoss = err;
      this.feed({ type: 'connection-lost' });
    };
    // The connection must not keep the process alive: the servers do.
    conn.unref();
  }

  /** Asks the broker to commit ready; in self-broker mode without a live predecessor connection, this process's own broker does. */
  private sendReady(): void {
    const conn = this.conn;
    if (conn && !conn.isClosed) {
      conn.ref();
      conn.ready().then(
        () => this.readyAcked(),
        (err: FdbrokerError) => {
          // A lost connection is no refusal: the machine hears of it from onClose (and the rejoin claims "ready").
          if (conn.isClosed && err.code !== 'ERR_FDBROKER_READY_REFUSED') return;
          this.feed({ type: 'ready-refused', code: err.code ?? 'ERR_FDBROKER_INTERNAL', message: err.message });
        },
      ).finally(() => conn.unref());
    } else if (this.broker !== undefined) {
      this.readyAcked();
    }
  }

  /** The broker acked ready; in self-broker mode this process's own broker then marks it ready too. */
  private readyAcked(): void {
    if (this.broker) {
      try {
        this.broker.markSelfReady();
      } catch (err) {
        this.feed({ type: 'ready-refused', code: (err as FdbrokerError).code ?? 'ERR_FDBROKER_INTERNAL', message: (err as Error).message });
        return;
      }
    }
    this.feed({ type: 'ready-acked' });
  }

  /** Joins the broker at `path` as a new generation and adopts its listeners. */
  /**
   * `run` (run-env.ts): join as a warm spare (exempt from the ready timeout
   * until it says ready), and in an instance slot (`run --instances`).
   */
  static async start(path: string, options: GenerationOptions = {}, run: RunJoin = {}): Promise<Generation> {
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
      // heartbeat: this process serves, so it answers the broker's pings (a hung one is seen as hung).
      const { generation, epoch, listeners } = await conn.join(options.names, {
        label: options.label, timeout: Math.max(0, deadline - Date.now()), standby: standbyRequest(options), heartbeat: true, spare: run.spare, slot: run.slot, pause: true,
      });
      const g = new Generation(path, conn, undefined, { number: generation, epoch }, toListeners(listeners, options.names), options);
      g.slot = run.slot ?? 0;
      return g;
    } catch (err) {
      conn.close();
      // The broker was taken over while the join waited: join its successor, on the same path, within the same deadline.
      if ((err as FdbrokerError).code === 'ERR_FDBROKER_TAKEN_OVER' && deadline > Date.now()) {
        return Generation.start(path, { ...options, timeout: deadline - Date.now() }, run);
      }
      throw err;
    }
  }

  /** Self-broker mode, nobody at the path: create the listeners and serve them. */
  private static first(path: string, options: GenerationOptions): Generation {
    const { broker, listeners } = serveFirst(path, options);
    return new Generation(path, undefined, broker, { number: broker.selfGeneration!, epoch: 0 }, toListeners(listeners, options.names), options);
  }

  /** Self-broker mode, a predecessor serves the path: adopt everything from it and serve the same path. */
  private static async successor(path: string, conn: BrokerConnection, options: GenerationOptions, deadline: number): Promise<Generation> {
    const { broker, listeners, generation } = await serveAsSuccessor(path, conn, options, deadline);
    return new Generation(path, conn, broker, { number: generation, epoch: 0 }, toListeners(listeners, options.names), options);
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

  /** A broker acked this generation's ready (it stays true after a retire). */
  get isReady(): boolean { return this.machine.state.readyAcked; }
  get isRetiring(): boolean { return this._retiring; }
  /** Self-broker mode: whether this process serves the control path itself. */
  get isBroker(): boolean { return this.broker !== undefined; }

  /**
   * Tells the broker this generation serves: older generations are told to
   * retire. Call it once every server is listening. Settles only with the
   * broker's answer, so its outcome is never ambiguous: it resolves once a
   * broker has committed it, and rejects with ERR_FDBROKER_READY_REFUSED when
   * a broker refused it (a newer generation serves, the ready timeout passed,
   * or this one was rolled back) or told this generation to retire before
   * answering, and with ERR_FDBROKER_CLOSED when the generation is closed
   * first. If the broker is lost before it answers, ready() waits: the
   * generation rejoins the path when a broker answers there again, says it
   * is ready, and ready() settles with that answer. Meanwhile the generation
   * serves, like every other holder of the socket.
   */
  ready(): Promise<void> {
    const p = new Promise<void>((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
    this.feed({ type: 'ready-requested' });
    return p;
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
    this.feed({ type: 'drain-started' });
    return this.drainAll(timeout);
  }

  private drainAll(timeout = this.opts.drainTimeout ?? DEFAULT_DRAIN_TIMEOUT_MS): Promise<DrainResult> {
    if (this.retirePromise) return this.retirePromise;
    this._retiring = true;
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
      // Retired: leaving now is no rollback, so no "leaving" is sent.
      this.shutdown(false);
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

  /**
   * Leaves the broker without draining (self-broker: closes the embedded
   * broker). Servers are untouched. A planned stop: a broker that knows the
   * "leaving" message is told so first (not reported as a rollback). A
   * ready() still waiting rejects with ERR_FDBROKER_CLOSED.
   */
  close(): void {
    this.shutdown(true);
  }

  private shutdown(planned: boolean): void {
    this.feed({ type: 'close', planned });
    clearTimeout(this.rejoinTimer);
    clearTimeout(this.standbyTimer);
    this.reporter.stop();
    // The machine closed the connection (after "leaving", if it sent one): closing again here could cut that short.
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

  /**
   * Warm standby: stop accepting (close this process's listening handles;
   * the accept queue stays with the other holders) and keep serving the
   * connections already open, as before, until the broker says resume or
   * release, or the window passes without a word.
   */
  private stopAccepting(): void {
    for (const l of Object.values(this.listeners)) l.findServer();
    for (const srv of this.servers()) if (srv.listening) netModule.Server.prototype.close.call(srv);
    this.reporter.start();
    // Standing by keeps the process alive (its listening handles are closed,
    // and there may be no connection left to do it; the window's timer does too).
    this.conn?.ref();
  }

  /** Resume: adopt the listeners anew and listen again on every server; the machine hears how it went. */
  private async readopt(): Promise<void> {
    const conn = this.conn;
    let ok: boolean;
    try {
      if (!conn || conn.isClosed) throw new FdbrokerError('ERR_FDBROKER_CLOSED', 'the broker connection ended before the resume');
      // Closed meanwhile: the fresh copies are nobody's (relisten closes them).
      ok = await relisten(conn, this.listeners, () => this.machine.state.phase === 'resuming');
    } catch {
      ok = false;
    }
    // Cannot adopt again: this generation cannot serve; it finishes retiring.
    this.feed({ type: ok ? 'readopt-done' : 'readopt-failed' });
    // Resumed during a pause: its servers listen again; the paused ones stop at once.
    if (ok) this.pauser.reapply();
  }
}

/**
 * Joins the broker at `path` as a new generation. See Generation. Without
 * `path` (`startGeneration()`, `startGeneration(options)`), or with the path
 * of the `fdbroker run` that started this process: that run (run-env.ts, its
 * instance slot included); a warm
 * spare joins at once (it holds its listeners, not accepting) and resolves
 * only when run promotes it, so the app attaches and says ready then.
 */
export async function startGeneration(path?: string, options?: GenerationOptions): Promise<Generation>;
export async function startGeneration(options: GenerationOptions): Promise<Generation>;
export async function startGeneration(pathOrOptions?: string | GenerationOptions, options?: GenerationOptions): Promise<Generation> {
  assertSupportedRuntime();
  if (typeof pathOrOptions === 'object' && pathOrOptions !== null) options = pathOrOptions;
  const path = typeof pathOrOptions === 'string' ? pathOrOptions : undefined;
  // A path that is not the one of the `run` that started this process: a plain join there.
  if (path !== undefined && !startedByRunAt(path)) return Generation.start(path, options);
  const run = fromRun();
  if (run.spareFd === undefined) return Generation.start(run.path, options, { slot: run.slot });
  const promotion = promoted(run.spareFd);
  // Read from now on: a run that dies while this joins rejects the promotion, not an unhandled rejection.
  promotion.catch(() => { /* handled below */ });
  const gen = await Generation.start(run.path, options, { spare: true, slot: run.slot });
  try {
    await promotion;
  } catch (err) {
    gen.close();
    throw err;
  }
  return gen;
}
