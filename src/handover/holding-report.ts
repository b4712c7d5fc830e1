// While a generation retires it tells the broker what it still holds
// (connections by kind), so `fdbroker status` shows what lingers and for how
// long: once when retiring starts, then on each change, at most every
// HOLDING_REPORT_MS (a change is seen at the next tick: counts are read,
// not pushed, so a burst of closes costs one message).
import type { Holding } from './drain';
import { HOLDING_REPORT_MS } from './defaults';

export type HoldingCounts = Omit<Holding, 'draining'>;

export class HoldingReporter {
  private timer: NodeJS.Timeout | undefined;
  private last: string | undefined;

  /**
   * `read` gives the current counts (undefined: nothing to count, no report); `send` delivers them and returns false
   * when it could not (no connection, or a broker without the feature).
   */
  constructor(private readonly read: () => HoldingCounts | undefined, private readonly send: (h: HoldingCounts) => boolean,
    private readonly intervalMs = HOLDING_REPORT_MS) {}

  get running(): boolean { return this.timer !== undefined; }

  /** Reports now, then on each change until stop(). A second start() does nothing. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    // The report must not keep a process alive that has nothing else to do.
    this.timer.unref();
    this.tick();
  }

  /** The broker connection was replaced (a rejoin): report again at the next tick even if nothing changed. */
  reset(): void { this.last = undefined; }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    const h = this.read();
    if (!h) return;
    const key = `${h.connections},${h.sessions},${h.upgraded},${h.hooked}`;
    if (key === this.last) return;
    let sent = false;
    try {
      sent = this.send(h);
    } catch {
      // The connection failed meanwhile: its onClose handles that; nothing to report to.
    }
    if (sent) this.last = key;
  }
}
