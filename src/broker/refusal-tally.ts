// Connections refused at accept, counted per uid and reason, so a flood of
// them costs a few log lines, not one per connection: the first refusal of a
// uid (after a quiet interval) is reported at once, like any refusal; the
// ones after it are counted and reported as one summary per interval while
// they go on. The library never prints: both are callbacks (Broker events).
import type { PeerCred } from '../transport/acceptor';
import type { Refusal } from './admission';

export interface RefusalSummary {
  uid: number;
  gid: number;
  code: string;
  /** Refusals counted since the last report (the first one is not among them). */
  count: number;
  /** The interval they were counted over (ms). */
  intervalMs: number;
  /** The pid of the last one. */
  lastPid: number;
  /** The request refused ('adopt', 'status', ...); absent for refusals at connect. */
  what?: string;
}

interface Open { uid: number; gid: number; code: string; count: number; lastPid: number; what: string }

export class RefusalTally {
  private readonly open = new Map<string, Open>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  /**
   * `first`: a refusal reported on its own (the first of its uid and reason in
   * an interval). `summary`: the ones counted after it, once per interval.
   */
  constructor(
    private readonly intervalMs: number,
    private readonly first: (cred: PeerCred, refusal: Refusal, what: string) => void,
    private readonly summary: (s: RefusalSummary) => void,
  ) {}

  /** `what`: the request refused, counted apart from other requests of the uid ('' for a connection). */
  record(cred: PeerCred, refusal: Refusal, what = ''): void {
    const uid = typeof cred === 'number' ? -1 : cred.uid;
    const key = `${uid}:${refusal.code}:${what}`;
    const o = this.open.get(key);
    if (o) {
      o.count++;
      o.lastPid = typeof cred === 'number' ? 0 : cred.pid;
      return;
    }
    this.open.set(key, { uid, gid: typeof cred === 'number' ? -1 : cred.gid, code: refusal.code, count: 0, lastPid: 0, what });
    this.first(cred, refusal, what);
    this.arm();
  }

  /** Reports what was counted; a uid and reason with nothing counted in this interval is forgotten (its next refusal is a first again). */
  flush(): void {
    for (const [key, o] of this.open) {
      if (o.count === 0) {
        this.open.delete(key);
        continue;
      }
      this.summary({ uid: o.uid, gid: o.gid, code: o.code, count: o.count, intervalMs: this.intervalMs, lastPid: o.lastPid, ...(o.what ? { what: o.what } : {}) });
      o.count = 0;
    }
  }

  /** Reports what was counted and stops. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.flush();
  }

  private arm(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
      if (this.open.size > 0) this.arm();
    }, this.intervalMs);
    this.timer.unref();
  }
}
