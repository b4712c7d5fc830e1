// The generation table: which connected client processes serve, who must
// retire, who stands by, and who failed. Pure state, no I/O, no timers: the
// broker feeds it events and the current time, and carries out what it
// returns. Unit-tested without sockets.
//
// States: starting -> ready -> (standby ->) retiring, and ready -> failed.
//
// Rules:
// - Every client that joins gets the next number (1, 2, 3, ...).
// - ready(N): N serves now. The winner is the newest (highest-numbered) ready
//   generation: when N becomes ready, every connected generation older than N
//   that is not yet retiring is told to retire; if a newer generation is
//   already ready, N itself is told to retire at once.
// - Warm standby: a ready generation told to retire that joined with a
//   standby window (and the table allows one) goes to `standby`: it stops
//   accepting but can resume until the window ends, then it is `retiring`.
//   Only the newest previous ready generation stands by; an older standby is
//   released (told its window is over) when a newer one takes its place.
// - rollback(N) / N leaving while it is the newest ready generation: N failed.
//   The newest generation standing by becomes ready again (it resumes).
// - A generation that leaves before ready changes nothing: the older ones
//   keep serving (rollback by construction).
// - A generation not ready within readyTimeoutMs is reported as overdue and
//   its later ready() is refused: it never retires anyone.
// - A generation told to retire that is still connected after retireTimeoutMs
//   is reported as overdue. The broker signals nobody (see README).
// - rejoin: a generation that outlived its broker joins a new one with the
//   state it had (and its number when free), so the next ready retires it.
// - holding(N): a generation told to retire (standby, retiring, failed)
//   reports what it still holds; kept until it leaves or resumes. A report
//   from a generation that serves (a race with resume) is ignored.
// - takeover: a new broker imports the whole table (numbers, states, windows,
//   deadlines) and the next number. Imported generations are detached until
//   their process rejoins (reattach: same number and pid), which changes
//   nothing else; one that has not rejoined within the broker's window leaves.

export type GenerationState = 'starting' | 'ready' | 'standby' | 'retiring' | 'failed';

export interface GenerationInfo {
  number: number;
  clientId: number;
  pid: number;
  uid: number;
  label?: string;
  state: GenerationState;
  adopted: string[];
  joinedAt: string;
  readyAt?: string;
  retiringSince?: string;
  /** Standby: the moment its window ends (it can resume until then). */
  standbyUntil?: string;
  /** The window this generation asked for when it joined, in ms (0: none). */
  standbyMs: number;
  /** Failed: why (e.g. 'left', 'stalled'). */
  failedReason?: string;
  /** Joined again after its broker was replaced. */
  rejoined?: boolean;
  /** Not ready within the ready timeout: its ready() will be refused. */
  readyOverdue: boolean;
  /** Told to retire and still connected after the retire timeout. */
  retireOverdue: boolean;
  /** Retiring: what it last reported it still holds (connections, HTTP/2 sessions, upgraded sockets, open hooked responses). */
  holding?: { connections: number; sessions: number; upgraded: number; hooked: number; at: string };
}

export interface GenerationTimeouts {
  readyTimeoutMs: number;
  retireTimeoutMs: number;
  /** Longest standby window the broker grants (0: no standby). */
  standbyMs?: number;
}

export type ReadyResult =
  | { ok: true; retire: number[]; release: number[] }
  | { ok: false; reason: 'unknown' | 'retiring' | 'overdue' | 'failed' };

export interface RollbackResult {
  /** The generation that stood by and serves again, if any. */
  resumed: number | undefined;
}

export interface CheckResult {
  readyOverdue: GenerationInfo[];
  retireOverdue: GenerationInfo[];
  /** Standby windows that ended: these now drain and leave. */
  release: number[];
}

interface Gen extends GenerationInfo { joinedMs: number; retiringMs?: number; standbyUntilMs?: number; detachedMs?: number }

/** What a broker hands its successor: every generation and the next number (see takeover). */
export interface TableSnapshot { next: number; generations: GenerationInfo[] }

const GENERATION_STATES: readonly GenerationState[] = ['starting', 'ready', 'standby', 'retiring', 'failed'];
const ms = (iso: string | undefined): number | undefined => {
  if (iso === undefined) return undefined;
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t : undefined;
};

export class GenerationTable {
  private readonly gens = new Map<number, Gen>();
  private next = 1;

  constructor(private readonly timeouts: GenerationTimeouts) {}

  /** A client joins as a new generation; returns its number. */
  join(client: { clientId: number; pid: number; uid: number; label?: string }, adopted: string[], nowMs: number,
    asNumber?: number, standbyMs = 0): number {
    // asNumber: a broker embedded in an app continues its predecessor's numbering.
    const number = asNumber !== undefined && asNumber >= this.next ? asNumber : this.next;
    this.next = number + 1;
    this.gens.set(number, {
      number, clientId: client.clientId, pid: client.pid, uid: client.uid, label: client.label,
      state: 'starting', adopted: [...adopted], joinedAt: new Date(nowMs).toISOString(), joinedMs: nowMs,
      standbyMs: Math.max(0, standbyMs), readyOverdue: false, retireOverdue: false,
    });
    return number;
  }

  /**
   * A generation that outlived its broker joins this one in the state it had.
   * It keeps its number unless that is taken; a ready one is made ready again
   * here (so the newest ready one wins, as always).
   */
  rejoin(client: { clientId: number; pid: number; uid: number; label?: string }, asNumber: number,
    state: 'starting' | 'ready' | 'retiring', adopted: string[], nowMs: number, standbyMs = 0):
    { number: number; retire: number[]; release: number[] } {
    const number = this.gens.has(asNumber) ? this.next : asNumber;
    this.next = Math.max(this.next, number + 1);
    const g: Gen = {
      number, clientId: client.clientId, pid: client.pid, uid: client.uid, label: client.label,
      state: 'starting', adopted: [...adopted], joinedAt: new Date(nowMs).toISOString(), joinedMs: nowMs,
      standbyMs: Math.max(0, standbyMs), readyOverdue: false, retireOverdue: false, rejoined: true,
    };
    this.gens.set(number, g);
    if (state === 'retiring') {
      this.markRetiring(g, nowMs);
      return { number, retire: [], release: [] };
    }
    if (state === 'ready') {
      // A generation that outlived its broker is older than any that joined
      // this broker fresh, whatever its number: if one of those is ready, the
      // rejoiner retires at once.
      const freshReady = [...this.gens.values()].some((o) => o !== g && !o.rejoined && o.state === 'ready');
      if (freshReady) {
        g.state = 'ready';
        g.readyAt = new Date(nowMs).toISOString();
        this.markRetiring(g, nowMs);
        return { number, retire: [number], release: [] };
      }
      const r = this.ready(number, nowMs);
      if (r.ok) return { number, retire: r.retire, release: r.release };
    }
    return { number, retire: [], release: [] };
  }

  /** The whole table, for a successor broker (takeover). */
  snapshot(): TableSnapshot {
    return { next: this.next, generations: this.list() };
  }

  /**
   * Takes a predecessor's table (takeover): every generation keeps its
   * number, state, windows and deadlines, detached (clientId 0) until its
   * process rejoins. Numbering continues after the snapshot's. Entries with
   * an unknown state or a number already taken are skipped.
   */
  importSnapshot(s: TableSnapshot, nowMs: number): number[] {
    const imported: number[] = [];
    for (const i of s.generations) {
      if (this.gens.has(i.number) || !GENERATION_STATES.includes(i.state)) continue;
      const g: Gen = {
        ...i, clientId: 0, adopted: [...i.adopted], standbyMs: i.standbyMs ?? 0,
        readyOverdue: i.readyOverdue === true, retireOverdue: i.retireOverdue === true,
        joinedMs: ms(i.joinedAt) ?? nowMs, retiringMs: ms(i.retiringSince), standbyUntilMs: ms(i.standbyUntil), detachedMs: nowMs,
      };
      this.gens.set(i.number, g);
      this.next = Math.max(this.next, i.number + 1);
      imported.push(i.number);
    }
    this.next = Math.max(this.next, s.next);
    return imported;
  }

  /** An imported generation's process rejoined (same number and pid): attach it to `clientId`. False if there is no such detached one. */
  reattach(n: number, pid: number, clientId: number): boolean {
    const g = this.gens.get(n);
    if (!g || g.detachedMs === undefined || g.pid !== pid) return false;
    g.detachedMs = undefined;
    g.clientId = clientId;
    return true;
  }

  /** Imported generations still detached `windowMs` after the import: their process did not rejoin. */
  detachedOverdue(nowMs: number, windowMs: number): number[] {
    const out: number[] = [];
    for (const g of this.gens.values()) if (g.detachedMs !== undefined && nowMs - g.detachedMs >= windowMs) out.push(g.number);
    return out;
  }

  /** Generation `n` says it serves. Returns who must retire (or stand by) now, and whose standby ends. */
  ready(n: number, nowMs: number): ReadyResult {
    const g = this.gens.get(n);
    if (!g) return { ok: false, reason: 'unknown' };
    if (g.state === 'failed') return { ok: false, reason: 'failed' };
    if (g.state === 'retiring' || g.state === 'standby') return { ok: false, reason: 'retiring' };
    // Overdue by now even if check() has not run yet (check() reports it, once).
    if (g.readyOverdue || (g.state === 'starting' && nowMs - g.joinedMs >= this.timeouts.readyTimeoutMs)) return { ok: false, reason: 'overdue' };
    if (g.state === 'ready') return { ok: true, retire: [], release: [] };
    g.state = 'ready';
    g.readyAt = new Date(nowMs).toISOString();
    const newerReady = [...this.gens.values()].some((o) => o.number > n && o.state === 'ready');
    if (newerReady) {
      this.markRetiring(g, nowMs);
      return { ok: true, retire: [n], release: [] };
    }
    const retire: number[] = [];
    const release: number[] = [];
    // The newest previous ready generation may stand by; every other one retires.
    const olderReady = [...this.gens.values()].filter((o) => o.number < n && o.state === 'ready');
    const standIn = olderReady.length > 0 ? olderReady.reduce((a, b) => (a.number > b.number ? a : b)) : undefined;
    const window = standIn ? Math.min(standIn.standbyMs, this.timeouts.standbyMs ?? 0) : 0;
    for (const o of this.gens.values()) {
      if (o.number >= n) continue;
      if (o.state === 'standby') {
        this.markRetiring(o, nowMs);
        release.push(o.number);
      } else if (o.state === 'starting' || o.state === 'ready') {
        if (o === standIn && window > 0) this.markStandby(o, nowMs, window);
        else this.markRetiring(o, nowMs);
        retire.push(o.number);
      }
    }
    return { ok: true, retire, release };
  }

  /**
   * The newest ready generation `n` failed (it stopped accepting, or hangs).
   * It is marked failed, and the newest generation standing by serves again.
   */
  rollback(n: number, nowMs: number, reason: string): RollbackResult {
    const g = this.gens.get(n);
    if (!g || g.state !== 'ready') return { resumed: undefined };
    this.markRetiring(g, nowMs); // for the retire timeout; the state is failed
    g.state = 'failed';
    g.failedReason = reason;
    return { resumed: this.resumeStandby(n) };
  }

  /**
   * Generation `n` disconnected. If it was the newest ready generation (it
   * left without being retired: it exited or crashed), the newest one
   * standing by serves again.
   */
  leave(n: number): { gone: GenerationInfo; resumed: number | undefined; lostReady: boolean } | undefined {
    const g = this.gens.get(n);
    if (!g) return undefined;
    const lostReady = g.state === 'ready' && this.newestReady() === n;
    this.gens.delete(n);
    return { gone: this.info(g), resumed: lostReady ? this.resumeStandby(n) : undefined, lostReady };
  }

  /** Updates overdue flags and standby windows; returns what just changed. */
  check(nowMs: number): CheckResult {
    const out: CheckResult = { readyOverdue: [], retireOverdue: [], release: [] };
    for (const g of this.gens.values()) {
      if (g.state === 'starting' && !g.readyOverdue && nowMs - g.joinedMs >= this.timeouts.readyTimeoutMs) {
        g.readyOverdue = true;
        out.readyOverdue.push(this.info(g));
      }
      if (g.state === 'standby' && g.standbyUntilMs !== undefined && nowMs >= g.standbyUntilMs) {
        // Retiring from now on: the retire timeout counts from the release, not from the standby.
        this.markRetiring(g, nowMs);
        out.release.push(g.number);
      }
      if ((g.state === 'retiring' || g.state === 'failed') && !g.retireOverdue && g.retiringMs !== undefined
        && nowMs - g.retiringMs >= this.timeouts.retireTimeoutMs) {
        g.retireOverdue = true;
        out.retireOverdue.push(this.info(g));
      }
    }
    return out;
  }

  /** Stores what a retiring generation still holds; false (nothing stored) unless it stands by, retires or failed. */
  holding(n: number, h: { connections: number; sessions: number; upgraded: number; hooked: number }, nowMs: number): boolean {
    const g = this.gens.get(n);
    if (!g || (g.state !== 'standby' && g.state !== 'retiring' && g.state !== 'failed')) return false;
    g.holding = { connections: h.connections, sessions: h.sessions, upgraded: h.upgraded, hooked: h.hooked, at: new Date(nowMs).toISOString() };
    return true;
  }

  /** The newest ready generation's number, or 0. */
  newestReady(): number {
    let best = 0;
    for (const g of this.gens.values()) if (g.state === 'ready' && g.number > best) best = g.number;
    return best;
  }

  /** Whether some generation stands by (a rollback could resume it). */
  hasStandby(): boolean {
    for (const g of this.gens.values()) if (g.state === 'standby') return true;
    return false;
  }

  /** Generations that joined and are not ready yet. */
  startingCount(): number {
    let n = 0;
    for (const g of this.gens.values()) if (g.state === 'starting') n++;
    return n;
  }

  get(n: number): GenerationInfo | undefined {
    const g = this.gens.get(n);
    return g ? this.info(g) : undefined;
  }

  list(): GenerationInfo[] {
    return [...this.gens.values()].sort((a, b) => a.number - b.number).map((g) => this.info(g));
  }

  get size(): number { return this.gens.size; }

  private resumeStandby(failed: number): number | undefined {
    let best: Gen | undefined;
    for (const g of this.gens.values()) {
      if (g.state === 'standby' && g.number < failed && (!best || g.number > best.number)) best = g;
    }
    if (!best) return undefined;
    best.state = 'ready';
    best.retiringMs = undefined;
    best.retiringSince = undefined;
    best.standbyUntilMs = undefined;
    best.standbyUntil = undefined;
    best.retireOverdue = false;
    delete best.holding;
    return best.number;
  }

  private markStandby(g: Gen, nowMs: number, windowMs: number): void {
    g.state = 'standby';
    g.retiringMs = nowMs;
    g.retiringSince = new Date(nowMs).toISOString();
    g.standbyUntilMs = nowMs + windowMs;
    g.standbyUntil = new Date(nowMs + windowMs).toISOString();
  }

  private markRetiring(g: Gen, nowMs: number): void {
    g.state = 'retiring';
    g.retiringMs = nowMs;
    g.retiringSince = new Date(nowMs).toISOString();
    g.standbyUntilMs = undefined;
    g.standbyUntil = undefined;
  }

  private info(g: Gen): GenerationInfo {
    const { joinedMs: _j, retiringMs: _r, standbyUntilMs: _s, detachedMs: _d, ...rest } = g;
    void _j; void _r; void _s; void _d;
    return { ...rest, adopted: [...g.adopted], ...(g.holding ? { holding: { ...g.holding } } : {}) };
  }
}
