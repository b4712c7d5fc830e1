// Accept progress: is anyone accepting on a listener? Pure state fed with
// samples of each listener's accept-queue length. A queue that is non-empty
// and has not shrunk between any two samples for `stallMs` is a stall:
// nobody accepts (the serving generation hangs, or closed its listener).
// A healthy server empties or shrinks its queue between samples; one that is
// saturated with a full backlog can look the same, which is why a stall only
// rolls back within a standby window and is otherwise only reported.
export interface StallEvent { name: string; since: number; queued: number }

interface Track { prev: number; since: number | undefined; reported: boolean }

export class AcceptWatch {
  private readonly tracks = new Map<string, Track>();

  constructor(private readonly stallMs: number) {}

  /** Records a sample; returns the stall once when it has lasted `stallMs`. */
  sample(name: string, queued: number, nowMs: number): StallEvent | undefined {
    let t = this.tracks.get(name);
    if (!t) {
      t = { prev: 0, since: undefined, reported: false };
      this.tracks.set(name, t);
    }
    if (queued === 0 || queued < t.prev) {
      t.since = undefined;
      t.reported = false;
    } else if (t.since === undefined) {
      t.since = nowMs;
    }
    t.prev = queued;
    if (this.stallMs > 0 && t.since !== undefined && !t.reported && nowMs - t.since >= this.stallMs) {
      t.reported = true;
      return { name, since: t.since, queued };
    }
    return undefined;
  }

  /** Since when `name` has not drained (undefined: it drains). */
  stalledSince(name: string): number | undefined {
    const t = this.tracks.get(name);
    return t?.reported ? t.since : undefined;
  }

  /** Forget the current episode of every listener (after a rollback: the resumed generation gets a fresh start). */
  reset(): void {
    for (const t of this.tracks.values()) {
      t.since = undefined;
      t.reported = false;
    }
  }

  forget(name: string): void { this.tracks.delete(name); }
}
