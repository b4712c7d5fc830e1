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
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import { native } from './_binding';
import { Broker } from './broker';
import { BrokerConnection, type ReceivedListener } from './client';
import { toListeners } from './adopt';
import { drain, holding, type DrainResult, type Holding } from './drain';
import { check, FdbrokerError } from './errors';
import type { Listener } from './listener';
import { parseListenerSpec } from './spec';
import { DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_FD_HEADROOM, DEFAULT_TIMEOUT_MS, DEFAULT_UPGRADE_TIMEOUT_MS } from './constants';
import { checkFdHeadroom } from './limits';

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
}

export interface UpgradeOptions {
  /** Arguments for the successor (default: this process's execArgv and argv). */
  args?: string[];
  /** Environment for the successor (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** A successor not ready within this many ms is stopped (SIGTERM) and the upgrade fails (default 60 s). */
  timeout?: number;
}

export interface GenerationEvents {
  /** A newer generation is ready; `by` is its number. */
  retire: [by: number];
  /** After retire: every attached server is drained; the connection to the broker is closed. */
  drained: [result: DrainResult];
  /** The broker connection ended without a retire (broker stopped or crashed). Serving goes on. */
  brokerLost: [err: Error];
  /** upgradeOnSignal(): a successor was started. */
  upgrade: [pid: number];
  /** upgradeOnSignal(): the successor exited, or was stopped, before it became ready. This process serves on. */
  upgradeFailed: [info: { pid: number; code: number | null; signal: NodeJS.Signals | null; reason: string }];
  /** upgradeOnSignal(): a signal arrived while an upgrade was in flight (or while retiring) and was ignored. */
  upgradeRefused: [reason: string];
}

export class Generation {
  private readonly events = new EventEmitter<GenerationEvents>();
  readonly number: number;
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
  private closedByUs = false;
  private upgrading: ChildProcess | undefined;
  private retirePromise: Promise<DrainResult> | undefined;
  private stopUpgrades: (() => void) | undefined;

  private constructor(path: string, conn: BrokerConnection | undefined, broker: Broker | undefined, number: number,
    listeners: Record<string, Listener>, opts: GenerationOptions) {
    this.path = path;
    this.conn = conn;
    this.broker = broker;
    this.number = number;
    this.listeners = listeners;
    this.opts = opts;
    if (conn) {
      conn.onRetire = (msg) => this.onRetire(msg.by);
      conn.onClose = (err) => {
        // In self-broker mode the predecessor's broker goes away once it has
        // retired: expected, not a loss.
        const expected = this.closedByUs || this._retiring || (this.broker !== undefined && this._ready);
        if (!expected) this.events.emit('brokerLost', err);
      };
      // The connection must not keep the process alive: the servers do.
      conn.unref();
    }
    broker?.on('retireSelf', (by) => this.onRetire(by));
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
      const { generation, listeners } = await conn.join(options.names, options.label, Math.max(0, deadline - Date.now()));
      return new Generation(path, conn, undefined, generation, toListeners(listeners, options.names), options);
    } catch (err) {
      conn.close();
      throw err;
    }
  }

  /** Self-broker mode, nobody at the path: create the listeners and serve them. */
  private static first(path: string, options: GenerationOptions): Generation {
    const specs = options.listen!.map((s) => parseListenerSpec(s));
    const broker = Broker.start({ controlPath: path, listeners: specs, self: { label: options.label }, mode: options.mode, inherit: false });
    try {
      const mine = dupForSelf(broker.listenerFdsForSelf(), options.names);
      return new Generation(path, undefined, broker, broker.selfGeneration!, toListeners(mine, options.names), options);
    } catch (err) {
      broker.close();
      throw err;
    }
  }

  /** Self-broker mode, a predecessor serves the path: adopt everything from it and serve the same path. */
  private static async successor(path: string, conn: BrokerConnection, options: GenerationOptions, deadline: number): Promise<Generation> {
    const { generation, listeners: received } = await conn.join(undefined, options.label, Math.max(0, deadline - Date.now()));
    // The embedded broker owns everything received, also if it fails to start.
    const broker = Broker.start({
      controlPath: path, listenerFds: received, self: { number: generation, label: options.label },
      mode: options.mode, inherit: false, takeover: true,
    });
    try {
      const mine = dupForSelf(broker.listenerFdsForSelf(), options.names);
      return new Generation(path, conn, broker, generation, toListeners(mine, options.names), options);
    } catch (err) {
      broker.close();
      throw err;
    }
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
   * retire. Call it once every server is listening. Rejects with
   * ERR_FDBROKER_READY_REFUSED when a newer generation already serves or the
   * broker's ready timeout has passed.
   */
  async ready(): Promise<void> {
    if (this._ready) return;
    if (this.conn && !this.conn.isClosed) {
      this.conn.ref();
      try {
        await this.conn.ready();
      } finally {
        this.conn.unref();
      }
    }
    this.broker?.markSelfReady();
    this._ready = true;
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

  /** Drains every attached server (see drain()), then leaves the broker (and, self-broker, closes its own). */
  retire(timeout = this.opts.drainTimeout ?? DEFAULT_DRAIN_TIMEOUT_MS): Promise<DrainResult> {
    if (this.retirePromise) return this.retirePromise;
    this._retiring = true;
    const started = Date.now();
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
    // Only listeners this process still holds: an attached server that was
    // closed has closed its fd, and the number may be reused by now.
    const held = Object.values(this.listeners).filter((l) => l.fd >= 0 && (!l.server || isListening(l.server)));
    const mine = dupForSelf(held.map((l) => ({ info: infoOf(l), fd: l.fd })));
    // Broker.start owns (and on failure closes) the duplicates.
    return Broker.start({ controlPath: path, listenerFds: mine, mode: options.mode, inherit: false });
  }

  /** Leaves the broker without draining (self-broker: closes the embedded broker). Servers are untouched. */
  close(): void {
    this.closedByUs = true;
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
    const handler = () => this.startUpgrade(options);
    process.on(signal, handler);
    this.stopUpgrades = () => process.off(signal, handler);
    this.once('retire', this.stopUpgrades);
    return this;
  }

  private startUpgrade(options: UpgradeOptions): void {
    if (this._retiring) {
      this.events.emit('upgradeRefused', 'this generation is retiring');
      return;
    }
    if (this.upgrading) {
      this.events.emit('upgradeRefused', `an upgrade is in flight (pid ${this.upgrading.pid})`);
      return;
    }
    const args = options.args ?? [...process.execArgv, ...process.argv.slice(1)];
    const child = spawn(process.execPath, args, {
      detached: true,
      stdio: 'inherit',
      env: { ...(options.env ?? process.env), FDBROKER_UPGRADED_FROM: String(process.pid) },
    });
    this.upgrading = child;
    child.unref();
    const fail = (reason: string, code: number | null, sig: NodeJS.Signals | null) => {
      clearTimeout(timer);
      if (this.upgrading !== child) return;
      if (this._retiring) return; // the successor (or another) took over: not a failure
      this.upgrading = undefined;
      this.events.emit('upgradeFailed', { pid: child.pid ?? -1, code, signal: sig, reason });
    };
    const timer = setTimeout(() => {
      if (this.upgrading === child && !this._retiring) {
        child.kill('SIGTERM');
        fail('not ready in time', null, null);
      }
    }, options.timeout ?? DEFAULT_UPGRADE_TIMEOUT_MS);
    timer.unref();
    child.once('error', (err) => fail(err.message, null, null));
    child.once('exit', (code, sig) => fail(code === 0 ? 'exited before ready' : 'failed before ready', code, sig));
    if (child.pid !== undefined) this.events.emit('upgrade', child.pid);
  }

  private onRetire(by: number): void {
    if (this._retiring) return;
    this._retiring = true;
    this.events.emit('retire', by);
    if ((this.opts.onRetire ?? 'drain') === 'drain') {
      void this.retire().then((r) => this.events.emit('drained', r));
    }
  }
}

function isListening(s: NonNullable<Listener['server']>): boolean {
  const srv = s as { listening?: boolean; address?: () => unknown };
  if (typeof srv.listening === 'boolean') return srv.listening;
  try {
    return srv.address?.() !== undefined; // dgram: address() throws once closed
  } catch {
    return false;
  }
}

function infoOf(l: Listener): ReceivedListener['info'] {
  const j = l.toJSON();
  const { fd: _fd, ...info } = j;
  void _fd;
  return info;
}

/** Duplicates the embedded broker's listeners the app asked for (the broker keeps its own). */
function dupForSelf(all: Array<{ info: ReceivedListener['info']; fd: number }>, names?: string[]): ReceivedListener[] {
  const wanted = names ? all.filter((l) => names.includes(l.info.name)) : all;
  const out: ReceivedListener[] = [];
  try {
    for (const l of wanted) out.push({ info: l.info, fd: check(native().dup(l.fd), 'fcntl') });
    return out;
  } catch (err) {
    for (const o of out) native().close(o.fd);
    throw err;
  }
}

/** Joins the broker at `path` as a new generation. See Generation. */
export function startGeneration(path: string, options?: GenerationOptions): Promise<Generation> {
  return Generation.start(path, options);
}
