// A Generation is this process's turn at serving: it adopts listeners and
// stays connected to the broker. ready() says it serves; the broker then tells
// every older generation to retire. When told to retire, a Generation drains
// the servers its listeners are attached to (unless told not to) and leaves.
//
// Fd ownership: as adoptListeners(): each Listener owns its fd until attached.
import { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import { BrokerConnection } from './client';
import { toListeners } from './adopt';
import { drain, type DrainResult } from './drain';
import type { Listener } from './listener';
import { DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_TIMEOUT_MS } from './constants';

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
}

export interface GenerationEvents {
  /** A newer generation is ready; `by` is its number. */
  retire: [by: number];
  /** After retire: every attached server is drained; the connection to the broker is closed. */
  drained: [result: DrainResult];
  /** The broker connection ended without a retire (broker stopped or crashed). Serving goes on. */
  brokerLost: [err: Error];
}

export class Generation {
  private readonly events = new EventEmitter<GenerationEvents>();
  readonly number: number;
  readonly listeners: Record<string, Listener>;
  private readonly conn: BrokerConnection;
  private readonly opts: GenerationOptions;
  private _retiring = false;
  private _ready = false;
  private closedByUs = false;

  private constructor(conn: BrokerConnection, number: number, listeners: Record<string, Listener>, opts: GenerationOptions) {
    this.conn = conn;
    this.number = number;
    this.listeners = listeners;
    this.opts = opts;
    conn.onRetire = (msg) => this.onRetire(msg.by);
    conn.onClose = (err) => {
      if (!this._retiring && !this.closedByUs) this.events.emit('brokerLost', err);
    };
    // The connection must not keep the process alive: the servers do.
    conn.unref();
  }

  /** Joins the broker at `path` as a new generation and adopts its listeners. */
  static async start(path: string, options: GenerationOptions = {}): Promise<Generation> {
    const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    const deadline = Date.now() + timeout;
    const conn = await BrokerConnection.connect(path, { timeout });
    try {
      const { generation, listeners } = await conn.join(options.names, options.label, Math.max(0, deadline - Date.now()));
      return new Generation(conn, generation, toListeners(listeners, options.names), options);
    } catch (err) {
      conn.close();
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

  /**
   * Tells the broker this generation serves: older generations are told to
   * retire. Call it once every server is listening. Rejects with
   * ERR_FDBROKER_READY_REFUSED when a newer generation already serves or the
   * broker's ready timeout has passed.
   */
  async ready(): Promise<void> {
    if (this._ready) return;
    this.conn.ref();
    try {
      await this.conn.ready();
      this._ready = true;
    } finally {
      this.conn.unref();
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

  /** Drains every attached server (see drain()), then leaves the broker. */
  async retire(timeout = this.opts.drainTimeout ?? DEFAULT_DRAIN_TIMEOUT_MS): Promise<DrainResult> {
    this._retiring = true;
    const started = Date.now();
    const results = await Promise.all(this.servers().map((s) => drain(s, { timeout })));
    for (const l of Object.values(this.listeners)) {
      const s = l.server as { close?: () => void; listen?: unknown } | undefined;
      if (s && typeof s.listen !== 'function' && typeof s.close === 'function') s.close(); // dgram
      l.close();
    }
    this.closedByUs = true;
    this.conn.close();
    return { forced: results.reduce((a, r) => a + r.forced, 0), ms: Date.now() - started };
  }

  /** Leaves the broker without draining. Listeners and servers are untouched. */
  close(): void {
    this.closedByUs = true;
    this.conn.close();
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

/** Joins the broker at `path` as a new generation. See Generation. */
export function startGeneration(path: string, options?: GenerationOptions): Promise<Generation> {
  return Generation.start(path, options);
}

