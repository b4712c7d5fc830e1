// The broker's handover policy as one pure state machine: which generation
// serves, who retires, who stands by, who resumes, what a rejoiner is worth,
// and what a takeover freezes. No sockets, no timers, no clock reads: every
// input carries the time, and every decision comes back as effects (notices
// to send to a generation, events to emit) that the broker executes.
// Checked by a model-based test (test/core/model.test.ts) against the
// invariants below, which docs/FAULTS.md states for users.
//
// States: starting -> ready -> (standby ->) retiring, ready -> failed.
//
// Rules:
// - Rank: every generation has a rank [epoch, seq]. A fresh join gets the
//   broker's epoch and its own number; a rejoiner (it outlived its broker)
//   keeps the rank it claims, clamped below this broker's epoch. So a
//   rejoiner never outranks a fresh join, whatever the numbers say, and
//   rejoiners keep their order among themselves. "Newer" means higher rank.
// - Numbers are unique and within 1..MAX_GENERATION: a fresh join takes the
//   next free one (wrapping), a rejoiner keeps its claim when free.
// - ready(N) comes with a fact the broker gathered (/proc): whether N's
//   process holds the listeners it adopted. One that holds none of them (it
//   bound a socket of its own, or closed the one it got) is refused and
//   fails (failedReason 'not-holding'): it is told to retire, and nothing
//   else changes (whoever served serves on). One that holds some (programs
//   close inherited listeners they do not use) and 'unverified' (the broker
//   could not look) are accepted, and what was found is recorded.
// - ready(N): N serves. If a generation of higher rank is ready, N is told to
//   retire at once. Otherwise every generation of lower rank retires; the
//   newest previously ready one stands by for min(its window, the broker's),
//   and one already standing by is released.
// - A ready generation that fails (it leaves, its accept queue stalls, it
//   stops answering pings) is rolled back: the newest one standing by below
//   it resumes. A planned stop (it said "leaving") resumes the same way but
//   is reported as a stop, not a rollback.
// - A standing-by generation whose window ends is released (it drains).
// - A generation not ready within the ready timeout is reported, and its
//   ready is refused; one retiring past the retire timeout is reported.
// - A warm spare (joined with `spare`) is starting, but waits to be promoted
//   for as long as it takes: it is never overdue, and it is not the one
//   generation starting (oneStartingAtATime). Its ready is a ready like any
//   other (it then is no spare); a newer generation's ready retires it.
// - Rejoin after a broker restart: the state it had comes back (a standby
//   keeps the window it has left). A standby with no ready generation above
//   it, once the rejoin grace after the broker's start is over, resumes:
//   whoever served before the restart did not come back.
// - Takeover: freeze() hands the table to a successor. While frozen, joins,
//   readies and rejoins wait (the broker holds them unread), and nothing the
//   old broker decides changes the table the successor got: a generation
//   that leaves is only journaled, checks and rollbacks wait. abort()
//   replays the journal here; commit() returns it, and the successor applies
//   it (applyForwarded) to the copy it holds.
//
// - Instance slots (`run --instances N`): a generation joins in a slot (0 by
//   default), and every rule above holds within its slot: a ready retires
//   the older generations of its slot only, a rollback resumes one standing
//   by in its slot, a lone standby resumes when its slot has none ready. A
//   stalled queue is blamed on a generation only when one alone is ready
//   (instances share the queue: no one of them can be blamed).
//
// Invariants (checked after every step of the model test):
// - At most one generation is ready per slot.
// - No rejoiner outranks a fresh join of the same broker.
// - Numbers are unique and within 1..MAX_GENERATION; ranks are unique.
// - A generation standing by has a window end; one ready, none.
// - Only a starting generation is a spare, and no spare is ever overdue.
// - No ready generation was found not holding its listeners (holdCheck 'missing').
import { MAX_GENERATION } from '../protocol/limits';
import { GENERATION_STATES, type GenerationInfo, type GenerationState } from './generation-info';

export type { GenerationInfo, GenerationState } from './generation-info';
export { MAX_GENERATION } from '../protocol/limits';

export interface CoreOptions {
  readyTimeoutMs: number;
  retireTimeoutMs: number;
  /** Longest standby window granted (0: no standby, no rollback after ready). */
  standbyMs: number;
  /** A newest ready generation with heartbeat that leaves a ping unanswered this long (while one stands by) hangs (0: no pings). */
  stallMs: number;
  /** This broker's epoch (its start time in ms, say): fresh joins rank [epoch, number]. */
  epoch: number;
  /** When this broker started: the rejoin grace counts from here. */
  startedMs: number;
  /** After a start, how long generations that outlived the old broker may take to rejoin before a lone standby resumes. */
  rejoinGraceMs: number;
  /** Imported at a takeover and not rejoined within this time: the process is gone. */
  detachedWindowMs: number;
  /** Embedded broker: at most one generation not yet ready (a second successor is refused). */
  oneStartingAtATime?: boolean;
}

export interface ClientRef { clientId: number; pid: number; uid: number; label?: string }

export type Notice =
  /** reason 'not-holding': its ready was refused (it holds none of its listeners); the notice says so, as it may be read before the error reply. */
  | { type: 'retire'; generation: number; by: number; reason: 'newer' | 'failed' | 'not-holding'; standby?: number }
  | { type: 'resume'; generation: number; failed: number; reason: string }
  | { type: 'release'; generation: number }
  | { type: 'ping'; id: number };

export type RollbackReason = 'left' | 'stalled' | 'hung';

export type CoreEvent =
  | { type: 'join'; generation: GenerationInfo }
  | { type: 'rejoin'; generation: GenerationInfo }
  | { type: 'ready'; generation: GenerationInfo; retire: number[] }
  | { type: 'leave'; generation: GenerationInfo }
  | { type: 'rollback'; failed: GenerationInfo; reason: RollbackReason; resumed: number | undefined }
  | { type: 'stopped'; generation: GenerationInfo; resumed: number | undefined }
  | { type: 'resumed'; generation: number; reason: 'orphaned' }
  | { type: 'release'; generation: number }
  | { type: 'overdue'; generation: GenerationInfo; what: 'ready' | 'retire' }
  /** Its ready was refused: it does not hold the listeners it adopted; it failed and was told to retire. */
  | { type: 'notHolding'; generation: GenerationInfo; missing: string[] }
  | { type: 'stall'; listener: string; generation: number | undefined };

export type Effect =
  | { type: 'send'; to: number; msg: Notice }
  /** The embedded broker's own generation must retire (there is no connection to send to). */
  | { type: 'retireSelf'; by: number }
  | { type: 'emit'; event: CoreEvent };

export type ReadyRefusal = 'unknown' | 'retiring' | 'overdue' | 'failed' | 'not-holding';

/**
 * What the broker found in /proc when a generation said ready: 'held' (its
 * process or a descendant has a copy of at least one listener it adopted;
 * `missing`: those it has none of), 'missing' (it holds none of them: their
 * names), 'unverified' (/proc could not tell: why).
 */
export type HoldFact = { result: 'held'; missing?: string[] } | { result: 'missing'; missing: string[] } | { result: 'unverified'; why: string };

/** What a broker hands its successor (takeover); `epoch`: the one the successor's fresh joins get. */
export interface TableSnapshot { next: number; generations: GenerationInfo[]; epoch?: number; floor?: number }

export interface RejoinClaim {
  number: number;
  state: 'starting' | 'ready' | 'standby' | 'retiring';
  /** The epoch the generation was given (absent from older clients: 0, older than everything). */
  epoch?: number;
  /** State standby: the window it has left, in ms. */
  standbyLeft?: number;
  /** The window it asks for when it is retired later. */
  standbyMs?: number;
  heartbeat?: boolean;
  /** Its instance slot (absent: 0). */
  slot?: number;
}

interface Gen extends GenerationInfo {
  rank: [number, number];
  joinedMs: number;
  retiringMs?: number;
  standbyUntilMs?: number;
  /** Imported at a takeover, its process not rejoined yet: since when. */
  detachedMs?: number;
  /** Left while a takeover was frozen: kept for the journal, no longer a generation. */
  gone?: boolean;
  heartbeat: boolean;
  ping?: { id: number; at: number };
  self?: boolean;
  /** The generation whose ready retired this one (told again if it reattaches after a takeover). */
  retiredBy?: number;
  /** Resumed in place of this failed generation (told again if it reattaches after a takeover). */
  resumedFor?: { failed: number; reason: string };
}

const iso = (ms: number): string => new Date(ms).toISOString();
const parseMs = (s: string | undefined): number | undefined => {
  if (s === undefined) return undefined;
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : undefined;
};
const above = (a: [number, number], b: [number, number]): boolean => a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);

export class HandoverCore {
  private readonly gens = new Map<number, Gen>();
  private next = 1;
  private nextPing = 1;
  /** This broker's first epoch (a successor: the one its predecessor handed it). */
  private readonly baseEpoch: number;
  /**
   * The first epoch of this line of brokers (a restart starts a line; a
   * takeover continues it): every fresh join of the line ranks at or above
   * it, and a rejoiner from before the line, below it.
   */
  private readonly floorEpoch: number;
  /** The epoch of fresh joins: baseEpoch, plus one each time numbering wraps (so fresh ranks keep growing). */
  private freshEpoch: number;
  /** The highest epoch this broker gave out, to its own joins or to a successor (freeze): a rejoin claiming more is clamped. */
  private handedEpoch: number;
  private frozen: { left: Array<{ number: number; planned: boolean }> } | undefined;

  constructor(private readonly o: CoreOptions, snapshot?: TableSnapshot, nowMs = o.startedMs) {
    // A successor takes the epoch its predecessor handed it, so that predecessor can rank its joins if the takeover aborts.
    let epoch = snapshot?.epoch !== undefined && Number.isSafeInteger(snapshot.epoch) && snapshot.epoch > 0 ? snapshot.epoch : o.epoch;
    if (snapshot) {
      for (const i of snapshot.generations) {
        if (!GENERATION_STATES.includes(i.state) || !validNumber(i.number) || this.gens.has(i.number)) continue;
        const rank: [number, number] = validRank(i.rank) ? [i.rank[0], i.rank[1]] : [0, i.number];
        epoch = Math.max(epoch, rank[0] + 1);
        this.gens.set(i.number, {
          ...i, clientId: 0, adopted: [...i.adopted], standbyMs: i.standbyMs ?? 0, rank,
          readyOverdue: i.readyOverdue === true, retireOverdue: i.retireOverdue === true,
          joinedMs: parseMs(i.joinedAt) ?? nowMs, retiringMs: parseMs(i.retiringSince), standbyUntilMs: parseMs(i.standbyUntil),
          detachedMs: nowMs, heartbeat: false,
        });
        if (i.number < MAX_GENERATION) this.next = Math.max(this.next, i.number + 1);
      }
      if (validNumber(snapshot.next)) this.next = Math.max(this.next, snapshot.next);
    }
    this.baseEpoch = Math.max(1, epoch);
    const floor = snapshot?.floor;
    this.floorEpoch = floor !== undefined && Number.isSafeInteger(floor) && floor >= 1 && floor <= this.baseEpoch ? floor : this.baseEpoch;
    this.freshEpoch = this.baseEpoch;
    this.handedEpoch = this.baseEpoch;
  }

  /** The epoch a fresh join gets now. */
  get epoch(): number { return this.freshEpoch; }

  /** Rejoiners rank below this epoch unless they claim one this line of brokers gave out. */
  get firstEpoch(): number { return this.floorEpoch; }

  /** The highest epoch this broker gave out (to its joins, or to a successor). */
  get lastEpochGiven(): number { return this.handedEpoch; }

  // ---- inputs -------------------------------------------------------------

  /** A client joins as a new generation (fresh: this broker's epoch). `asNumber`: an embedded broker continues its predecessor's numbering. */
  join(client: ClientRef, adopted: string[], nowMs: number, opts: { standbyMs?: number; heartbeat?: boolean; asNumber?: number; self?: boolean; spare?: boolean; slot?: number } = {}):
    { ok: true; number: number; effects: Effect[] } | { ok: false; reason: 'one-at-a-time' } {
    this.notFrozen('join');
    if (this.o.oneStartingAtATime && !opts.self && this.startingCount() > 0) return { ok: false, reason: 'one-at-a-time' };
    const asked = opts.asNumber !== undefined && validNumber(opts.asNumber) && opts.asNumber >= this.next && !this.gens.has(opts.asNumber);
    const number = asked ? opts.asNumber! : this.allocate();
    if (asked) this.next = number >= MAX_GENERATION ? 1 : number + 1;
    const g = this.make(client, number, [this.freshEpoch, number], adopted, nowMs, opts.standbyMs ?? 0, opts.heartbeat === true);
    if (opts.self) g.self = true;
    else if (opts.spare) g.spare = true;
    if (!opts.self && opts.slot !== undefined && Number.isSafeInteger(opts.slot) && opts.slot > 0) g.slot = opts.slot;
    this.gens.set(number, g);
    return { ok: true, number, effects: [emit({ type: 'join', generation: this.info(g) })] };
  }

  /**
   * A generation that outlived its broker (restart), or moved with it
   * (takeover: same number and pid as an imported one), joins this broker
   * in the state it has. Returns the number, state and epoch it now has.
   */
  rejoin(client: ClientRef, claim: RejoinClaim, adopted: string[], nowMs: number):
    { number: number; state: GenerationState; epoch: number; effects: Effect[] } {
    this.notFrozen('rejoin');
    const imported = this.gens.get(claim.number);
    if (imported && imported.detachedMs !== undefined && !imported.gone && imported.pid === client.pid) {
      return this.reattach(imported, client, claim, adopted, nowMs);
    }
    const kept = validNumber(claim.number) && !this.gens.has(claim.number);
    const number = kept ? claim.number : this.allocate();
    // Numbers go on after a kept claim (they look ordered to a reader); ranks, not numbers, decide.
    if (kept && number >= this.next) this.next = number >= MAX_GENERATION ? MAX_GENERATION : number + 1;
    const claimedEpoch = Number.isSafeInteger(claim.epoch) && claim.epoch! >= 0 ? claim.epoch! : 0;
    // An epoch this broker never gave out (an older broker's, or a clock that stepped back) ranks below every
    // fresh join of this broker; one it gave (its own, a successor's that died before it committed) keeps its place.
    const epochOf = claimedEpoch <= this.handedEpoch && claimedEpoch >= this.floorEpoch ? claimedEpoch : Math.min(claimedEpoch, this.floorEpoch - 1);
    const rank: [number, number] = [epochOf, Number.isSafeInteger(claim.number) ? claim.number : 0];
    while (this.rankTaken(rank)) rank[1]--;
    const g = this.make(client, number, rank, adopted, nowMs, claim.standbyMs ?? 0, claim.heartbeat === true);
    g.rejoined = true;
    if (claim.slot !== undefined && Number.isSafeInteger(claim.slot) && claim.slot > 0) g.slot = claim.slot;
    this.gens.set(number, g);
    const effects: Effect[] = [];
    if (claim.state === 'retiring') {
      this.markRetiring(g, nowMs);
    } else if (claim.state === 'standby') {
      const window = Math.min(Math.max(0, claim.standbyLeft ?? 0), this.o.standbyMs);
      if (window > 0) this.markStandby(g, nowMs, window);
      else {
        this.markRetiring(g, nowMs);
        effects.push(send(number, { type: 'release', generation: number }));
      }
    }
    const after: Effect[] = [];
    if (claim.state === 'ready') {
      // Ready before the restart: whoever stands by below it stood by for it, and keeps its window.
      const r = this.readyOf(g, nowMs, true);
      if (r.ok) after.push(...r.effects);
    }
    return { number, state: g.state, epoch: g.rank[0], effects: [emit({ type: 'rejoin', generation: this.info(g) }), ...effects, ...after] };
  }

  /**
   * Generation `n` says it serves. `holds`: whether its process holds the
   * listeners it adopted (absent: not checked, as for a rejoin or the
   * embedded broker's own generation). 'missing' refuses it, fails it and
   * tells it to retire (the effects come with the refusal).
   */
  ready(n: number, nowMs: number, holds?: HoldFact):
    { ok: true; effects: Effect[] } | { ok: false; reason: ReadyRefusal; effects?: Effect[] } {
    this.notFrozen('ready');
    const g = this.live(n);
    if (!g) return { ok: false, reason: 'unknown' };
    if (holds?.result === 'missing' && g.state === 'starting') {
      g.holdCheck = { result: 'missing', missing: [...holds.missing] };
      this.markRetiring(g, nowMs); // for the retire timeout; the state is failed
      g.state = 'failed';
      g.failedReason = 'not-holding';
      return { ok: false, reason: 'not-holding', effects: [
        this.retireNotice(g, this.newestReady(), 'not-holding'),
        emit({ type: 'notHolding', generation: this.info(g), missing: [...holds.missing] }),
      ] };
    }
    const r = this.readyOf(g, nowMs);
    if (r.ok && holds && g.holdCheck === undefined) {
      g.holdCheck = holds.result === 'unverified' ? { result: 'unverified', why: holds.why }
        : { result: 'held', ...(holds.result === 'held' && holds.missing?.length ? { missing: [...holds.missing] } : {}) };
    }
    return r;
  }

  /** Generation `n`'s connection ended. `planned`: it said "leaving" first (a stop, not a crash). */
  leave(n: number, nowMs: number, planned = false): Effect[] {
    const g = this.gens.get(n);
    if (!g || g.gone) return [];
    if (this.frozen) {
      // The successor holds this generation in its snapshot: only journal it (see commit/abort).
      g.gone = true;
      this.frozen.left.push({ number: n, planned });
      return [emit({ type: 'leave', generation: this.info(g) })];
    }
    return this.remove(g, nowMs, planned);
  }

  /** Listener `name` has a queue that does not drain: blame the ready generation holding it, roll it back if one stands by. */
  stalled(name: string, nowMs: number): Effect[] {
    if (this.frozen) return [];
    const holders = this.readyGens().filter((r) => r.adopted.includes(name));
    const blamed = holders.length === 1 ? holders[0] : undefined;
    const effects: Effect[] = [emit({ type: 'stall', listener: name, generation: blamed?.number })];
    if (blamed && !blamed.self && this.hasStandby(slotOf(blamed))) effects.push(...this.rollback(blamed, nowMs, 'stalled'));
    return effects;
  }

  /** A "pong" from generation `n`. */
  pong(n: number, id: number): void {
    const g = this.live(n);
    if (g?.ping?.id === id) g.ping = undefined;
  }

  /** Stores what a retired generation still holds; false unless it stands by, retires or failed. */
  holding(n: number, h: { connections: number; sessions: number; upgraded: number; hooked: number }, nowMs: number): boolean {
    const g = this.live(n);
    if (!g || (g.state !== 'standby' && g.state !== 'retiring' && g.state !== 'failed')) return false;
    g.holding = { connections: h.connections, sessions: h.sessions, upgraded: h.upgraded, hooked: h.hooked, at: iso(nowMs) };
    return true;
  }

  /** Deadlines, windows, heartbeats and lone standbys, as of `nowMs`. Nothing while frozen. */
  tick(nowMs: number): Effect[] {
    if (this.frozen) return [];
    const effects: Effect[] = [];
    for (const g of [...this.gens.values()]) {
      if (g.detachedMs !== undefined && nowMs - g.detachedMs >= this.o.detachedWindowMs) effects.push(...this.remove(g, nowMs, false));
    }
    for (const g of this.gens.values()) {
      if (g.state === 'starting' && !g.spare && !g.readyOverdue && nowMs - g.joinedMs >= this.o.readyTimeoutMs) {
        g.readyOverdue = true;
        effects.push(emit({ type: 'overdue', generation: this.info(g), what: 'ready' }));
      }
      if (g.state === 'standby' && g.standbyUntilMs !== undefined && nowMs >= g.standbyUntilMs) {
        // Retiring from now on: the retire timeout counts from the release.
        this.markRetiring(g, nowMs);
        effects.push(send(g.number, { type: 'release', generation: g.number }), emit({ type: 'release', generation: g.number }));
      }
      if ((g.state === 'retiring' || g.state === 'failed') && !g.retireOverdue && g.retiringMs !== undefined
        && nowMs - g.retiringMs >= this.o.retireTimeoutMs) {
        g.retireOverdue = true;
        effects.push(emit({ type: 'overdue', generation: this.info(g), what: 'retire' }));
      }
    }
    for (const s of nowMs - this.o.startedMs >= this.o.rejoinGraceMs ? this.loneStandbys() : []) {
      this.unstandby(s, { failed: 0, reason: 'orphaned' });
      effects.push(send(s.number, { type: 'resume', generation: s.number, failed: 0, reason: 'orphaned' }),
        emit({ type: 'resumed', generation: s.number, reason: 'orphaned' }));
    }
    effects.push(...this.heartbeat(nowMs));
    return effects;
  }

  // ---- takeover -----------------------------------------------------------

  /** A successor takes the table: from now on nothing changes it here until abort() or commit(). */
  freeze(): TableSnapshot {
    if (this.frozen) throw new Error('the handover core is frozen already');
    this.frozen = { left: [] };
    const epoch = Math.max(this.freshEpoch, this.handedEpoch) + 1;
    this.handedEpoch = epoch;
    return { next: this.next, generations: this.list(), epoch, floor: this.floorEpoch };
  }

  get isFrozen(): boolean { return this.frozen !== undefined; }

  /** The successor failed before it committed: what happened meanwhile is applied now. */
  abort(nowMs: number): Effect[] {
    const f = this.frozen;
    if (!f) return [];
    this.frozen = undefined;
    // Generations that joined the successor meanwhile rejoin here in its epoch: joins from now on rank above them.
    this.freshEpoch = this.handedEpoch + 1;
    this.handedEpoch = this.freshEpoch;
    const effects: Effect[] = [];
    for (const { number, planned } of f.left) {
      const g = this.gens.get(number);
      if (g) effects.push(...this.remove(g, nowMs, planned, false));
    }
    return effects;
  }

  /** The successor serves: returns the generations that left meanwhile, for it to apply. */
  commit(): { left: number[] } {
    const left = this.frozen?.left.map((l) => l.number) ?? [];
    this.frozen = undefined;
    return { left };
  }

  /** The successor: generations its predecessor saw leave during the takeover. Only those still detached (not rejoined) are removed. */
  applyForwarded(left: number[], nowMs: number): Effect[] {
    const effects: Effect[] = [];
    for (const n of left) {
      const g = this.gens.get(n);
      if (g && g.detachedMs !== undefined) effects.push(...this.remove(g, nowMs, false));
    }
    return effects;
  }

  // ---- queries ------------------------------------------------------------

  get(n: number): GenerationInfo | undefined {
    const g = this.live(n);
    return g ? this.info(g) : undefined;
  }

  list(): GenerationInfo[] {
    return [...this.gens.values()].filter((g) => !g.gone).sort((a, b) => a.number - b.number).map((g) => this.info(g));
  }

  /** The ready generation's number, or 0. */
  newestReady(): number {
    let best: Gen | undefined;
    for (const g of this.readyGens()) if (!best || above(g.rank, best.rank)) best = g;
    return best?.number ?? 0;
  }

  /** Whether a generation stands by (in `slot`, if given). */
  hasStandby(slot?: number): boolean {
    for (const g of this.gens.values()) if (g.state === 'standby' && !g.gone && (slot === undefined || slotOf(g) === slot)) return true;
    return false;
  }

  startingCount(): number {
    let n = 0;
    for (const g of this.gens.values()) if (g.state === 'starting' && !g.spare && !g.gone) n++;
    return n;
  }

  /** Whether `n` is imported from a predecessor and its process has not rejoined. */
  isDetached(n: number): boolean { return this.live(n)?.detachedMs !== undefined; }

  /** Imported generations whose process has not rejoined: the broker checks whether each pid still lives (a dead one leaves). */
  detached(): Array<{ number: number; pid: number }> {
    const out: Array<{ number: number; pid: number }> = [];
    for (const g of this.gens.values()) if (g.detachedMs !== undefined && !g.gone) out.push({ number: g.number, pid: g.pid });
    return out;
  }

  get size(): number { return this.list().length; }

  // ---- rules --------------------------------------------------------------

  private readyOf(g: Gen, nowMs: number, rejoining = false): { ok: true; effects: Effect[] } | { ok: false; reason: ReadyRefusal } {
    if (g.state === 'failed') return { ok: false, reason: 'failed' };
    if (g.state === 'retiring' || g.state === 'standby') return { ok: false, reason: 'retiring' };
    if (g.state === 'ready') return { ok: true, effects: [] };
    if (!g.spare && (g.readyOverdue || nowMs - g.joinedMs >= this.o.readyTimeoutMs)) return { ok: false, reason: 'overdue' };
    g.state = 'ready';
    delete g.spare;
    g.readyAt = iso(nowMs);
    g.ping = undefined;
    const effects: Effect[] = [];
    const slot = slotOf(g);
    const other = this.readyGen(slot, g);
    if (other && above(other.rank, g.rank)) {
      // A rejoiner that served before the restart stands by for the newer one, as it would have had it been
      // connected when that one became ready, unless another already does.
      const window = rejoining && !this.hasStandby(slot) ? Math.min(g.standbyMs, this.o.standbyMs) : 0;
      if (window > 0) this.markStandby(g, nowMs, window);
      else this.markRetiring(g, nowMs);
      g.retiredBy = other.number;
      effects.push(this.retireNotice(g, other.number, 'newer', nowMs), emit({ type: 'ready', generation: this.info(g), retire: [g.number] }));
      return { ok: true, effects };
    }
    // Every generation below retires; the one that served until now may stand by.
    const standIn = other;
    const window = standIn ? Math.min(standIn.standbyMs, this.o.standbyMs) : 0;
    const retire: number[] = [];
    for (const o of this.ordered()) {
      if (o === g || slotOf(o) !== slot || !above(g.rank, o.rank)) continue;
      if (o.state === 'standby') {
        if (rejoining) continue;
        this.markRetiring(o, nowMs);
        effects.push(send(o.number, { type: 'release', generation: o.number }), emit({ type: 'release', generation: o.number }));
      } else if (o.state === 'starting' || o.state === 'ready') {
        if (o === standIn && window > 0) this.markStandby(o, nowMs, window);
        else this.markRetiring(o, nowMs);
        o.retiredBy = g.number;
        retire.push(o.number);
        effects.push(this.retireNotice(o, g.number, 'newer', nowMs));
      }
    }
    effects.push(emit({ type: 'ready', generation: this.info(g), retire }));
    return { ok: true, effects };
  }

  private rollback(g: Gen, nowMs: number, reason: RollbackReason): Effect[] {
    this.markRetiring(g, nowMs); // for the retire timeout; the state is failed
    g.state = 'failed';
    g.failedReason = reason;
    const resumed = this.bestStandby(g.rank, slotOf(g));
    if (resumed) this.unstandby(resumed, { failed: g.number, reason });
    const effects: Effect[] = [];
    if (resumed) effects.push(send(resumed.number, { type: 'resume', generation: resumed.number, failed: g.number, reason }));
    effects.push(this.retireNotice(g, resumed?.number ?? 0, 'failed'));
    effects.push(emit({ type: 'rollback', failed: this.info(g), reason, resumed: resumed?.number }));
    return effects;
  }

  /** `g` is gone: removed, and if it served, the newest one standing by below it resumes. */
  private remove(g: Gen, nowMs: number, planned: boolean, announce = true): Effect[] {
    const lostReady = g.state === 'ready';
    this.gens.delete(g.number);
    const info = this.info(g);
    const effects: Effect[] = announce ? [emit({ type: 'leave', generation: info })] : [];
    void nowMs;
    if (!lostReady) return effects;
    const resumed = this.bestStandby(g.rank, slotOf(g));
    if (resumed) {
      this.unstandby(resumed, { failed: g.number, reason: planned ? 'stopped' : 'left' });
      effects.push(send(resumed.number, { type: 'resume', generation: resumed.number, failed: g.number, reason: planned ? 'stopped' : 'left' }));
    }
    effects.push(emit(planned ? { type: 'stopped', generation: info, resumed: resumed?.number }
      : { type: 'rollback', failed: info, reason: 'left', resumed: resumed?.number }));
    return effects;
  }

  /**
   * An imported generation's process rejoined the successor: it keeps its
   * number, rank and the table's state; what it missed while it moved is
   * told now (a ready the old broker never saw is applied, a retire or a
   * resume it never got is sent).
   */
  private reattach(g: Gen, client: ClientRef, claim: RejoinClaim, adopted: string[], nowMs: number):
    { number: number; state: GenerationState; epoch: number; effects: Effect[] } {
    g.detachedMs = undefined;
    g.clientId = client.clientId;
    g.heartbeat = claim.heartbeat === true;
    for (const n of adopted) if (!g.adopted.includes(n)) g.adopted.push(n);
    const effects: Effect[] = [];
    const n = g.number;
    if (claim.state === 'ready' && g.state === 'starting') {
      const r = this.readyOf(g, nowMs);
      if (r.ok) effects.push(...r.effects);
    } else if (g.state === 'ready' && (claim.state === 'standby' || claim.state === 'retiring')) {
      // It was resumed here while it moved (its successor failed): tell it. An older client says "retiring" while it
      // stands by and resumes; one that really drains ignores this and leaves, and its leave rolls back as any other.
      effects.push(send(n, { type: 'resume', generation: n, failed: g.resumedFor?.failed ?? 0, reason: g.resumedFor?.reason ?? 'moved' }));
    } else if (claim.state !== 'retiring' && (g.state === 'retiring' || g.state === 'failed'
      || (g.state === 'standby' && claim.state !== 'standby'))) {
      effects.push(this.retireNotice(g, g.state === 'failed' ? this.newestReady() : g.retiredBy ?? this.newestReady(), g.state === 'failed' ? 'failed' : 'newer', nowMs));
    }
    return { number: n, state: g.state, epoch: g.rank[0], effects: [emit({ type: 'rejoin', generation: this.info(g) }), ...effects] };
  }

  /** Pings the ready generation of each slot where one stands by; one that leaves a ping unanswered for stallMs is rolled back. */
  private heartbeat(nowMs: number): Effect[] {
    if (this.o.stallMs <= 0) return [];
    const effects: Effect[] = [];
    for (const g of this.readyGens()) {
      if (g.self || !g.heartbeat || g.detachedMs !== undefined || g.state !== 'ready' || !this.hasStandby(slotOf(g))) continue;
      if (!g.ping) {
        g.ping = { id: this.nextPing++, at: nowMs };
        effects.push(send(g.number, { type: 'ping', id: g.ping.id }));
      } else if (nowMs - g.ping.at >= this.o.stallMs) {
        g.ping = undefined;
        effects.push(...this.rollback(g, nowMs, 'hung'));
      }
    }
    return effects;
  }

  private retireNotice(g: Gen, by: number, reason: 'newer' | 'failed' | 'not-holding', nowMs?: number): Effect {
    if (g.self) return { type: 'retireSelf', by };
    const left = g.state === 'standby' && g.standbyUntilMs !== undefined && nowMs !== undefined ? Math.max(0, g.standbyUntilMs - nowMs) : 0;
    return send(g.number, { type: 'retire', generation: g.number, by, reason, ...(left > 0 ? { standby: left } : {}) });
  }

  /** The newest generation standing by in `slot`, below `rank` if given. */
  private bestStandby(rank: [number, number] | undefined, slot: number): Gen | undefined {
    let best: Gen | undefined;
    for (const g of this.gens.values()) {
      if (g.state !== 'standby' || g.gone || slotOf(g) !== slot || (rank && !above(rank, g.rank))) continue;
      if (!best || above(g.rank, best.rank)) best = g;
    }
    return best;
  }

  private unstandby(g: Gen, why: { failed: number; reason: string }): void {
    g.resumedFor = why;
    g.state = 'ready';
    g.retiringMs = undefined;
    g.retiringSince = undefined;
    g.standbyUntilMs = undefined;
    g.standbyUntil = undefined;
    g.retireOverdue = false;
    g.ping = undefined;
    delete g.holding;
  }

  /** The ready generation of `slot` (other than `except`). */
  private readyGen(slot: number, except?: Gen): Gen | undefined {
    for (const g of this.gens.values()) if (g.state === 'ready' && !g.gone && g !== except && slotOf(g) === slot) return g;
    return undefined;
  }

  private readyGens(): Gen[] {
    return [...this.gens.values()].filter((g) => g.state === 'ready' && !g.gone);
  }

  /** The newest generation standing by in each slot that has none ready. */
  private loneStandbys(): Gen[] {
    const slots = new Set<number>();
    for (const g of this.gens.values()) if (g.state === 'standby' && !g.gone) slots.add(slotOf(g));
    const out: Gen[] = [];
    for (const slot of slots) {
      if (this.readyGen(slot)) continue;
      const s = this.bestStandby(undefined, slot);
      if (s) out.push(s);
    }
    return out;
  }

  private ordered(): Gen[] {
    return [...this.gens.values()].filter((g) => !g.gone).sort((a, b) => (above(a.rank, b.rank) ? 1 : above(b.rank, a.rank) ? -1 : 0));
  }

  private live(n: number): Gen | undefined {
    const g = this.gens.get(n);
    return g && !g.gone ? g : undefined;
  }

  /**
   * The next free number from `next`. Numbering wraps at MAX_GENERATION;
   * fresh joins after a wrap get the next epoch, so their ranks still grow.
   */
  private allocate(): number {
    let n = this.next;
    for (let tries = 0; tries <= this.gens.size + 1; tries++) {
      if (n > MAX_GENERATION || n < 1) {
        n = 1;
        this.freshEpoch++;
      }
      if (!this.gens.has(n)) {
        this.next = n + 1;
        this.handedEpoch = Math.max(this.handedEpoch, this.freshEpoch);
        return n;
      }
      n++;
    }
    throw new Error('no free generation number'); // cannot happen: the table is far smaller than the number space
  }

  private rankTaken(rank: [number, number]): boolean {
    for (const g of this.gens.values()) if (g.rank[0] === rank[0] && g.rank[1] === rank[1]) return true;
    return false;
  }

  private make(client: ClientRef, number: number, rank: [number, number], adopted: string[], nowMs: number, standbyMs: number, heartbeat: boolean): Gen {
    return {
      number, clientId: client.clientId, pid: client.pid, uid: client.uid, ...(client.label ? { label: client.label } : {}),
      state: 'starting', adopted: [...adopted], joinedAt: iso(nowMs), joinedMs: nowMs, rank,
      standbyMs: Math.max(0, standbyMs), readyOverdue: false, retireOverdue: false, heartbeat,
    };
  }

  private markStandby(g: Gen, nowMs: number, windowMs: number): void {
    delete g.spare;
    g.state = 'standby';
    g.retiringMs = nowMs;
    g.retiringSince = iso(nowMs);
    g.standbyUntilMs = nowMs + windowMs;
    g.standbyUntil = iso(nowMs + windowMs);
  }

  private markRetiring(g: Gen, nowMs: number): void {
    delete g.spare;
    g.state = 'retiring';
    g.retiringMs = nowMs;
    g.retiringSince = iso(nowMs);
    g.standbyUntilMs = undefined;
    g.standbyUntil = undefined;
  }

  private notFrozen(what: string): void {
    // The broker holds these unread during a takeover; reaching here is a bug in the caller.
    if (this.frozen) throw new Error(`${what} while a takeover holds the table (the broker must hold it until abort or commit)`);
  }

  private info(g: Gen): GenerationInfo {
    const { joinedMs: _j, retiringMs: _r, standbyUntilMs: _s, detachedMs: _d, gone: _g, heartbeat: _h, ping: _p, self: _self, retiredBy: _b, resumedFor: _f, ...rest } = g;
    void _j; void _r; void _s; void _d; void _g; void _h; void _p; void _self; void _b; void _f;
    return {
      ...rest, adopted: [...g.adopted], rank: [g.rank[0], g.rank[1]], ...(g.holding ? { holding: { ...g.holding } } : {}),
      ...(g.holdCheck ? { holdCheck: { ...g.holdCheck, ...(g.holdCheck.missing ? { missing: [...g.holdCheck.missing] } : {}) } } : {}),
    };
  }
}

function validNumber(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 1 && (n as number) <= MAX_GENERATION;
}

function validRank(r: unknown): r is [number, number] {
  return Array.isArray(r) && r.length === 2 && Number.isSafeInteger(r[0]) && r[0] >= 0 && Number.isSafeInteger(r[1]);
}

const emit = (event: CoreEvent): Effect => ({ type: 'emit', event });
/** A generation's instance slot (0: the only one, without --instances). */
const slotOf = (g: GenerationInfo): number => g.slot ?? 0;
const send = (to: number, msg: Notice): Effect => ({ type: 'send', to, msg });
