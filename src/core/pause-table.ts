// Which listeners are paused (`fdbroker pause`): while a listener is paused,
// no generation accepts on it and new connections wait in its accept queue
// (the broker's socket keeps the queue, up to its backlog) until it resumes.
// Pure: no sockets, no timers; every input carries the time. The broker
// arms one timer for nextDeadline() and calls due() when it fires.
//
// Rules:
// - Every pause has a deadline: `forMs` if given, else DEFAULT_PAUSE_MS,
//   never more than MAX_PAUSE_MS after now. So a forgotten pause ends on its
//   own and cannot become an outage.
// - Pausing a paused listener again sets its new deadline (it may shorten
//   or extend it); `since` stays when it was first paused.
// - resume() ends the pause of the listeners named (all when none are).
// - The paused time of each listener is added up over its pauses (metrics).
//
// Invariants: a paused listener has since <= now < until; until - now <=
// MAX_PAUSE_MS at the time it was set.

/** A pause without `--for` lasts this long. */
export const DEFAULT_PAUSE_MS = 30_000;
/** No pause lasts longer than this, whatever `--for` asks: clients wait at most this long in the queue. */
export const MAX_PAUSE_MS = 5 * 60_000;

export interface PauseInfo {
  name: string;
  /** When it was paused (ms). */
  since: number;
  /** When it resumes on its own (ms). */
  until: number;
}

export class PauseTable {
  private readonly paused = new Map<string, { since: number; until: number }>();
  /** name -> ms paused in pauses that ended. */
  private readonly totals = new Map<string, number>();

  constructor(private readonly limits: { defaultMs: number; maxMs: number } = { defaultMs: DEFAULT_PAUSE_MS, maxMs: MAX_PAUSE_MS }) {}

  /** Pauses `names` until now + forMs (capped); returns the deadline given. */
  pause(names: readonly string[], nowMs: number, forMs?: number): number {
    const ms = Math.min(Math.max(0, forMs ?? this.limits.defaultMs), this.limits.maxMs);
    const until = nowMs + ms;
    for (const n of names) {
      const p = this.paused.get(n);
      this.paused.set(n, { since: p?.since ?? nowMs, until });
    }
    return until;
  }

  /** Ends the pause of `names` (null: every paused listener); returns those that were paused. */
  resume(names: readonly string[] | null, nowMs: number): string[] {
    const out: string[] = [];
    for (const n of names ?? [...this.paused.keys()]) {
      const p = this.paused.get(n);
      if (!p) continue;
      this.paused.delete(n);
      this.totals.set(n, (this.totals.get(n) ?? 0) + Math.max(0, nowMs - p.since));
      out.push(n);
    }
    return out;
  }

  /** Ends every pause whose deadline has come; returns the listeners resumed. */
  due(nowMs: number): string[] {
    return this.resume([...this.paused].filter(([, p]) => p.until <= nowMs).map(([n]) => n), nowMs);
  }

  /** The earliest deadline, if any listener is paused. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const p of this.paused.values()) if (next === undefined || p.until < next) next = p.until;
    return next;
  }

  isPaused(name: string): boolean { return this.paused.has(name); }

  get size(): number { return this.paused.size; }

  /** The paused ones among `names`. */
  pausedOf(names: readonly string[]): string[] { return names.filter((n) => this.paused.has(n)); }

  list(): PauseInfo[] {
    return [...this.paused].map(([name, p]) => ({ name, since: p.since, until: p.until })).sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): PauseInfo | undefined {
    const p = this.paused.get(name);
    return p ? { name, ...p } : undefined;
  }

  /** Total ms `name` has been paused, the current pause included. */
  pausedMs(name: string, nowMs: number): number {
    const p = this.paused.get(name);
    return (this.totals.get(name) ?? 0) + (p ? Math.max(0, nowMs - p.since) : 0);
  }

  /** A listener removed (reload): its pause and total go with it. */
  forget(name: string): void {
    this.paused.delete(name);
    this.totals.delete(name);
  }
}
