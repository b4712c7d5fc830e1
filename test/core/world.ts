// An in-memory world for the model-based test of the handover policy: broker
// cores (restarted, taken over) and generation processes (their client-side
// state machine), wired by per-connection FIFO queues. No sockets, no
// timers: a command delivers one message, advances the clock, kills a
// process or a broker, starts or ends a takeover. Message delays are the
// order in which commands pick connections (each connection keeps its order).
import { HandoverCore, type CoreOptions, type Effect, type Notice } from '../../src/core/handover-core';
import { GenerationMachine, type GenerationEffect, type GenerationInput } from '../../src/core/generation-machine';

const FEATURES = ['holding', 'takeover', 'leaving', 'standby-rejoin', 'epoch'] as const;

export const T = {
  readyTimeoutMs: 5_000, retireTimeoutMs: 3_000, standbyMs: 1_500, stallMs: 100, rejoinGraceMs: 150, detachedWindowMs: 3_000,
  /** The window a process asks for, and its grace after the window (the library's STANDBY_GRACE_MS, scaled). */
  standbyAsk: 1_500, standbyGrace: 100,
};

type Up =
  | { kind: 'join'; standby: number; spare?: boolean; slot?: number }
  | { kind: 'rejoin'; claim: { number: number; state: 'starting' | 'ready' | 'standby' | 'retiring'; epoch?: number; standbyLeft?: number } }
  | { kind: 'ready' } | { kind: 'pong'; id: number } | { kind: 'leaving' } | { kind: 'close' };
type Down =
  | { kind: 'joined'; number: number; epoch: number }
  | { kind: 'rejoined'; number: number; state: string; epoch: number }
  | { kind: 'readyAck' } | { kind: 'readyRefused' }
  | { kind: 'notice'; msg: Notice } | { kind: 'moved' } | { kind: 'close' };

interface Conn { id: number; pid: number; broker: Broker; up: Up[]; down: Down[]; upClosed: boolean; downClosed: boolean; generation?: number; leaving: boolean }
interface Broker { id: number; core: HandoverCore; conns: Set<Conn>; alive: boolean; deferred: Array<{ conn: Conn; msg: Up }> }

export interface Proc {
  pid: number;
  alive: boolean;
  /** Stopped answering (a hung event loop): no pongs, no accepts, no messages handled. */
  hung: boolean;
  machine: GenerationMachine;
  /** Its connection to a broker, and the one a rejoin opened (used once the rejoin is acked). */
  conn: Conn | undefined;
  newConn: Conn | undefined;
  rejoinAt: number | undefined;
  /** A re-adopt for a resume is in flight. */
  readopting: boolean;
  /** Draining after retire; it exits when the drain ends (a command). */
  draining: boolean;
  /** Its servers listen (accept connections). */
  accepting: boolean;
  standbyTimerAt: number | undefined;
  readySettled: 'ok' | 'refused' | 'closed' | undefined;
  readyAsked: boolean;
  leftOnPurpose: boolean;
  /** The order in which brokers first numbered it: what "newer" means. */
  joinSeq: number;
  /** A broker told it to retire or released its window (it may not have heard yet); a resume undoes it. */
  released: boolean;
  /** Its instance slot (run --instances): one process serves per slot. */
  slot: number;
  /**
   * What /proc shows the broker when it says ready: it holds no copy of its
   * listener (it bound one of its own). Only the fact the broker's ready sees;
   * `accepting` keeps meaning "its servers listen".
   */
  misbound?: boolean;
  /** It processed a retire that no processed resume undid since: it may not say "leaving" (PROTOCOL.md §2.6). */
  heardRetire?: boolean;
}

export class World {
  now = 0;
  brokers: Broker[] = [];
  current: Broker;
  successor: { broker: Broker; from: Broker; snapshot: number[] } | undefined;
  procs: Proc[] = [];
  /** Every connection with something left to deliver. */
  private readonly conns = new Set<Conn>();
  private nextPid = 100;
  private nextConn = 1;
  private nextBroker = 1;
  /** The epoch of the next broker: later brokers start later. */
  private epochClock = 1_000_000;
  readonly log: string[] = [];

  constructor() {
    this.current = this.startBroker();
  }

  // ---- brokers ------------------------------------------------------------

  /** The wall clock steps back before the next broker starts (its epoch is below the last one's). */
  clockBack(): void {
    this.epochClock -= 5_000;
    this.clockSteppedBack = true;
  }

  clockSteppedBack = false;
  private joins = 0;

  private coreOptions(): CoreOptions {
    this.epochClock += 1_000;
    return {
      readyTimeoutMs: T.readyTimeoutMs, retireTimeoutMs: T.retireTimeoutMs, standbyMs: T.standbyMs, stallMs: T.stallMs,
      epoch: this.epochClock, startedMs: this.now, rejoinGraceMs: T.rejoinGraceMs, detachedWindowMs: T.detachedWindowMs,
    };
  }

  private startBroker(snapshot?: ReturnType<HandoverCore['freeze']>): Broker {
    const b: Broker = { id: this.nextBroker++, core: new HandoverCore(this.coreOptions(), snapshot, this.now), conns: new Set(), alive: true, deferred: [] };
    this.brokers.push(b);
    return b;
  }

  /** The broker's process dies (SIGKILL) and a new one starts on the path (systemd's Restart=). */
  restartBroker(): void {
    const t = this.successor;
    if (t) {
      // Killed while a successor holds the path: the successor serves without a commit (nothing forwarded).
      this.successor = undefined;
      t.from.alive = false;
      t.from.deferred = [];
      for (const c of t.from.conns) this.closeFromBroker(c);
      this.current = t.broker;
      this.log.push(`broker ${t.from.id} killed during the takeover: ${t.broker.id} serves`);
      return;
    }
    const old = this.current;
    old.alive = false;
    for (const c of old.conns) this.closeFromBroker(c);
    this.current = this.startBroker();
    this.log.push(`restart broker ${old.id} -> ${this.current.id}`);
  }

  startTakeover(): void {
    if (this.successor) return;
    const snap = this.current.core.freeze();
    const b = this.startBroker(JSON.parse(JSON.stringify(snap)));
    this.successor = { broker: b, from: this.current, snapshot: snap.generations.map((g) => g.number) };
    this.log.push(`takeover start ${this.current.id} -> ${b.id}`);
  }

  commitTakeover(): void {
    const t = this.successor;
    if (!t) return;
    this.successor = undefined;
    const { left } = t.from.core.commit();
    // Invariant: the successor acts on the snapshot it got, plus what the old broker forwards.
    const had = new Set(t.snapshot);
    for (const g of t.broker.core.list()) {
      if (!had.has(g.number) && !g.rejoined && g.clientId === 0) throw new Error(`successor holds generation ${g.number} it was never handed`);
    }
    this.apply(t.broker, t.broker.core.applyForwarded(left, this.now));
    // Held joins and rejoins are answered "taken over": they retry on the path.
    for (const d of t.from.deferred) if (d.msg.kind === 'join' || d.msg.kind === 'rejoin') this.closeFromBroker(d.conn);
    t.from.deferred = [];
    t.from.alive = false;
    for (const c of t.from.conns) {
      if (c.generation !== undefined) c.down.push({ kind: 'moved' });
      this.closeFromBroker(c);
    }
    this.current = t.broker;
    this.log.push(`takeover commit -> ${t.broker.id} (left ${left.join(',') || '-'})`);
  }

  abortTakeover(): void {
    const t = this.successor;
    if (!t) return;
    this.successor = undefined;
    // The successor died before it committed: its connections end, the old broker takes the path back.
    t.broker.alive = false;
    for (const c of t.broker.conns) this.closeFromBroker(c);
    const b = t.from;
    this.apply(b, b.core.abort(this.now));
    const held = b.deferred.splice(0);
    for (const d of held) if (d.conn.broker.alive && !d.conn.upClosed) this.handle(d.conn, d.msg);
    this.log.push(`takeover abort ${t.broker.id}`);
  }

  // ---- processes ----------------------------------------------------------

  /** A new version starts and joins the path; `spare`: a warm spare (its ready, askReady, is its promotion). */
  deploy(spare = false, slot = 0): void {
    const machine = new GenerationMachine({
      standbyMs: T.standbyAsk, heartbeat: true, retireMode: 'drain', embedded: false, standbyGraceMs: T.standbyGrace, rejoinRetryMs: 20, rejoinRetryMaxMs: 100,
    });
    const p: Proc = {
      pid: this.nextPid++, alive: true, hung: false, machine, conn: undefined, newConn: undefined, rejoinAt: undefined, readopting: false,
      draining: false, accepting: true, standbyTimerAt: undefined, readySettled: undefined, readyAsked: false, leftOnPurpose: false, joinSeq: Infinity, released: false, slot,
    };
    this.procs.push(p);
    p.conn = this.connect(p);
    p.conn.up.push({ kind: 'join', standby: T.standbyAsk, ...(spare ? { spare: true } : {}), ...(slot ? { slot } : {}) });
    this.log.push(`${spare ? 'spare' : 'deploy'} ${p.pid}${slot ? ` slot ${slot}` : ''}`);
  }

  askReady(p: Proc): void {
    if (!p.alive || p.hung || p.readyAsked || p.machine.state.number === 0) return;
    p.readyAsked = true;
    this.step(p, { type: 'ready-requested' });
  }

  crash(p: Proc): void {
    if (!p.alive) return;
    p.alive = false;
    p.accepting = false;
    for (const c of [p.conn, p.newConn]) if (c) this.closeFromClient(c);
    this.log.push(`crash ${p.pid}`);
  }

  /** A stop on purpose (SIGTERM to the app, or close()): "leaving", then the process exits. */
  stop(p: Proc): void {
    if (!p.alive || p.hung) return;
    p.leftOnPurpose = true;
    this.step(p, { type: 'close', planned: true });
    p.alive = false;
    p.accepting = false;
    for (const c of [p.conn, p.newConn]) if (c) this.closeFromClient(c);
    this.log.push(`stop ${p.pid}`);
  }

  hang(p: Proc): void {
    if (!p.alive) return;
    p.hung = true;
    this.log.push(`hang ${p.pid}`);
  }

  /** The app retires on its own (Generation.retire() from its own SIGTERM handler): it stops accepting and drains. */
  selfRetire(p: Proc): void {
    if (!p.alive || p.hung || p.draining) return;
    this.step(p, { type: 'drain-started' });
    p.accepting = false;
    p.draining = true;
    this.log.push(`selfRetire ${p.pid}`);
  }

  /** A drain finishes: the process closes its connection (the library's shutdown) and exits. */
  finishDrain(p: Proc): void {
    if (!p.alive || !p.draining || p.hung) return;
    this.step(p, { type: 'close', planned: false });
    p.alive = false;
    for (const c of [p.conn, p.newConn]) if (c) this.closeFromClient(c);
    this.log.push(`drained ${p.pid}`);
  }

  /** A re-adopt for a resume completes (or fails). */
  finishReadopt(p: Proc, ok: boolean): void {
    if (!p.alive || !p.readopting || p.hung) return;
    p.readopting = false;
    if (ok) p.accepting = true;
    this.step(p, ok ? { type: 'readopt-done' } : { type: 'readopt-failed' });
  }

  // ---- time and messages --------------------------------------------------

  advance(ms: number): void {
    // Heartbeats are not delayed past the stall timeout (pings at the head of a connection go through first):
    // a ping that is never delivered would make every ready generation look hung.
    for (let moved = true, i = 0; moved && i < 100; i++) {
      moved = false;
      for (const c of this.conns) {
        const d = c.down[0];
        if (d?.kind === 'notice' && d.msg.type === 'ping') { this.receive(c, c.down.shift()!); moved = true; }
        const u = c.up[0];
        if (u?.kind === 'pong' && c.broker.alive && !this.isDeferredConn(c)) { this.handle(c, c.up.shift()!); moved = true; }
      }
    }
    this.now += ms;
    for (const p of this.procs) {
      if (!p.alive || p.hung) continue;
      if (p.standbyTimerAt !== undefined && this.now >= p.standbyTimerAt) {
        p.standbyTimerAt = undefined;
        this.step(p, { type: 'standby-timer' });
      }
      if (p.rejoinAt !== undefined && this.now >= p.rejoinAt) {
        p.rejoinAt = undefined;
        this.step(p, { type: 'rejoin-timer' });
      }
    }
    for (const b of [this.current, this.successor?.broker]) {
      if (!b?.alive) continue;
      this.pruneDetached(b);
      this.apply(b, b.core.tick(this.now));
    }
  }

  /** The accept queue of the ready generation's listener does not drain (its process hangs). */
  sampleStall(): void {
    const b = this.current;
    const n = b.core.newestReady();
    const p = this.procOf(b, n);
    if (n && p && p.hung) this.apply(b, b.core.stalled('http', this.now));
  }

  /** Connections with something to deliver, in either direction. */
  pending(): Array<{ conn: Conn; dir: 'up' | 'down' }> {
    const out: Array<{ conn: Conn; dir: 'up' | 'down' }> = [];
    for (const c of this.conns) {
      if (c.up.length > 0 && c.broker.alive && !this.isDeferredConn(c)) out.push({ conn: c, dir: 'up' });
      if (c.down.length > 0) out.push({ conn: c, dir: 'down' });
      if (c.down.length === 0 && (c.up.length === 0 || !c.broker.alive) && c.downClosed) this.conns.delete(c);
    }
    return out;
  }

  deliverAll(): void {
    for (let i = 0; i < 1_000 && this.deliver(0); i++) { /* everything in flight */ }
  }

  deliver(i: number): boolean {
    const all = this.pending();
    if (all.length === 0) return false;
    const { conn, dir } = all[i % all.length]!;
    if (dir === 'up') this.handle(conn, conn.up.shift()!);
    else this.receive(conn, conn.down.shift()!);
    return true;
  }

  // ---- the broker's shell -------------------------------------------------

  private isDeferredConn(c: Conn): boolean {
    return c.broker.deferred.some((d) => d.conn === c);
  }

  private handle(c: Conn, msg: Up): void {
    const b = c.broker;
    if (!b.alive) return;
    const core = b.core;
    if (core.isFrozen && (msg.kind === 'join' || msg.kind === 'rejoin' || msg.kind === 'ready')) {
      b.deferred.push({ conn: c, msg });
      return;
    }
    const p = this.procs.find((x) => x.pid === c.pid)!;
    this.pruneDetached(b);
    switch (msg.kind) {
      case 'join': {
        const r = core.join({ clientId: c.id, pid: c.pid, uid: 0 }, ['http'], this.now, { standbyMs: msg.standby, heartbeat: true, spare: msg.spare, slot: msg.slot });
        if (!r.ok) { this.closeFromBroker(c); return; }
        c.generation = r.number;
        p.joinSeq = ++this.joins;
        c.down.push({ kind: 'joined', number: r.number, epoch: core.epoch });
        this.apply(b, r.effects);
        return;
      }
      case 'rejoin': {
        const r = core.rejoin({ clientId: c.id, pid: c.pid, uid: 0 }, { ...msg.claim, standbyMs: T.standbyAsk, heartbeat: true, slot: p.slot }, ['http'], this.now);
        c.generation = r.number;
        c.down.push({ kind: 'rejoined', number: r.number, state: r.state, epoch: r.epoch });
        this.apply(b, r.effects);
        return;
      }
      case 'ready': {
        if (c.generation === undefined) return;
        const r = core.ready(c.generation, this.now, p.misbound ? { result: 'missing', missing: ['http'] } : { result: 'held' });
        c.down.push(r.ok ? { kind: 'readyAck' } : { kind: 'readyRefused' });
        if (r.ok) this.apply(b, r.effects);
        else if (r.effects) this.apply(b, r.effects);
        return;
      }
      case 'pong':
        if (c.generation !== undefined) core.pong(c.generation, msg.id);
        return;
      case 'leaving':
        c.leaving = true;
        return;
      case 'close':
        b.conns.delete(c);
        if (c.generation !== undefined) this.apply(b, core.leave(c.generation, this.now, c.leaving));
        void p;
        return;
    }
  }

  /** The broker's shell, before each input and tick: an imported generation whose process is dead has left (no rejoin will come). */
  private pruneDetached(b: Broker): void {
    if (b.core.isFrozen) return;
    for (const d of b.core.detached()) if (!this.procs.some((p) => p.pid === d.pid && p.alive)) this.apply(b, b.core.leave(d.number, this.now));
  }

  private apply(b: Broker, effects: Effect[]): void {
    for (const e of effects) {
      if (e.type !== 'send') continue;
      // What the broker decided, whether or not the message reaches the process (a detached one gets it at its rejoin).
      if (e.msg.type === 'release' || e.msg.type === 'retire' || e.msg.type === 'resume') {
        const pid = b.core.get(e.to)?.pid;
        const p = this.procs.find((x) => x.pid === pid);
        if (p) p.released = e.msg.type === 'release' || (e.msg.type === 'retire' && !(e.msg.standby && e.msg.standby > 0));
      }
      for (const c of b.conns) if (c.generation === e.to && !c.downClosed) c.down.push({ kind: 'notice', msg: e.msg });
    }
  }

  // ---- the process side ---------------------------------------------------

  private receive(c: Conn, msg: Down): void {
    const p = this.procs.find((x) => x.pid === c.pid)!;
    if (!p.alive || (p.conn !== c && p.newConn !== c)) return;
    if (p.hung) { c.down.unshift(msg); return; }
    switch (msg.kind) {
      case 'joined': this.step(p, { type: 'joined', number: msg.number, epoch: msg.epoch, features: FEATURES }); return;
      case 'rejoined': this.step(p, { type: 'rejoined', number: msg.number, state: msg.state, epoch: msg.epoch }); return;
      case 'readyAck': this.step(p, { type: 'ready-acked' }); return;
      case 'readyRefused': this.step(p, { type: 'ready-refused', code: 'ERR_FDBROKER_READY_REFUSED', message: 'refused' }); return;
      case 'notice': {
        const n = msg.msg;
        // Newer means deployed later: a generation is never told to retire for an older one (a rollback's "failed" aside).
        // (After the wall clock stepped back between broker starts, rejoiners may be misordered among themselves,
        // never above a fresh join: docs/FAULTS.md.)
        if (n.type === 'retire' && n.reason === 'newer' && n.by !== 0) {
          const by = this.procOf(c.broker, n.by);
          const misorderable = this.clockSteppedBack && c.broker.core.get(n.generation)?.rejoined === true;
          if (by && by.joinSeq < p.joinSeq && !misorderable) {
            throw new Error(`pid ${p.pid} (join ${p.joinSeq}) was told to retire for generation ${n.by}, pid ${by.pid}, which joined before it (join ${by.joinSeq})`);
          }
        }
        if (n.type === 'retire') this.step(p, { type: 'retire', by: n.by, ...(n.standby !== undefined ? { standby: n.standby } : {}), reason: n.reason });
        else if (n.type === 'resume') this.step(p, { type: 'resume', failed: n.failed, reason: n.reason });
        else if (n.type === 'release') this.step(p, { type: 'release' });
        else this.step(p, { type: 'ping', id: n.id });
        return;
      }
      case 'moved': this.step(p, { type: 'moved' }); return;
      case 'close':
        if (c === p.newConn) {
          p.newConn = undefined;
          this.step(p, { type: 'rejoin-failed' });
          return;
        }
        p.conn = undefined;
        this.step(p, { type: 'connection-lost' });
        return;
    }
  }

  step(p: Proc, input: GenerationInput): void {
    const effects = p.machine.step(input, this.now);
    if (input.type === 'retire') p.heardRetire = true;
    // A resume undoes it only if the machine took it (standing by: it resumes; retiring: it ignores it).
    if (input.type === 'resume' && (p.machine.state.phase === 'resuming' || p.machine.state.phase === 'ready')) p.heardRetire = false;
    for (const e of effects) this.effect(p, e);
  }

  private effect(p: Proc, e: GenerationEffect): void {
    switch (e.type) {
      case 'send-ready': if (p.conn && !p.conn.upClosed) p.conn.up.push({ kind: 'ready' }); return;
      case 'send-pong': if (p.conn && !p.conn.upClosed && !p.hung) p.conn.up.push({ kind: 'pong', id: e.id }); return;
      case 'send-leaving':
        if (p.heardRetire) throw new Error(`pid ${p.pid} says "leaving" after it was told to retire`);
        if (p.conn && !p.conn.upClosed) p.conn.up.push({ kind: 'leaving' });
        if (p.conn) this.closeFromClient(p.conn);
        return;
      case 'close-connection': if (p.conn) this.closeFromClient(p.conn); return;
      case 'stop-accepting': p.accepting = false; return;
      case 'readopt': p.readopting = true; return;
      case 'start-retiring': p.accepting = false; p.draining = true; return;
      case 'schedule-rejoin': p.rejoinAt = this.now + e.delayMs; return;
      case 'cancel-rejoin': p.rejoinAt = undefined; return;
      case 'connect':
        // The path answers when some broker serves it (a restarted one, or a successor that renamed over it).
        if (this.pathBroker().alive) {
          p.newConn = this.connect(p, this.pathBroker());
          this.step(p, { type: 'rejoin-connected', features: FEATURES });
        } else {
          this.step(p, { type: 'rejoin-failed' });
        }
        return;
      case 'send-rejoin':
        if (p.newConn && !p.newConn.upClosed) {
          p.newConn.up.push({ kind: 'rejoin', claim: { number: e.claim.generation, state: e.claim.state, epoch: e.claim.epoch, ...(e.claim.standbyLeft !== undefined ? { standbyLeft: e.claim.standbyLeft } : {}) } });
        }
        return;
      case 'use-new-connection':
        p.conn = p.newConn;
        p.newConn = undefined;
        return;
      case 'drop-new-connection':
        if (p.newConn) this.closeFromClient(p.newConn);
        p.newConn = undefined;
        return;
      case 'arm-standby-timer': p.standbyTimerAt = this.now + e.delayMs; return;
      case 'clear-standby-timer': p.standbyTimerAt = undefined; return;
      case 'settle-ready':
        if (p.readySettled !== undefined) throw new Error(`pid ${p.pid}: ready settled twice`);
        p.readySettled = e.ok ? 'ok' : e.code === 'ERR_FDBROKER_CLOSED' ? 'closed' : 'refused';
        return;
      case 'emit': return;
    }
  }

  /** The broker a connect to the path reaches: a successor once it renamed over the path (here: from the start of the takeover). */
  private pathBroker(): Broker {
    return this.successor?.broker ?? this.current;
  }

  private connect(p: Proc, broker = this.pathBroker()): Conn {
    const c: Conn = { id: this.nextConn++, pid: p.pid, broker, up: [], down: [], upClosed: false, downClosed: false, leaving: false };
    broker.conns.add(c);
    this.conns.add(c);
    return c;
  }

  private closeFromClient(c: Conn): void {
    if (c.upClosed) return;
    c.upClosed = true;
    c.up.push({ kind: 'close' });
  }

  private closeFromBroker(c: Conn): void {
    if (c.downClosed) return;
    c.downClosed = true;
    c.down.push({ kind: 'close' });
    c.broker.conns.delete(c);
    // The broker no longer reads this connection: what the client sends is lost.
    c.up = [];
    c.upClosed = true;
  }

  // ---- what the invariants look at ----------------------------------------

  procOf(b: Broker, n: number): Proc | undefined {
    for (const c of b.conns) if (c.generation === n) return this.procs.find((p) => p.pid === c.pid);
    return undefined;
  }

  accepting(): Proc[] {
    return this.procs.filter((p) => p.alive && p.accepting);
  }
}
