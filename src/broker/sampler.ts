// A periodic job with two paces: `fastMs` while `fast()` says it matters
// (a generation stands by: a stall must roll back within the stall timeout),
// `slowMs` otherwise (a stall is only reported). Sampling 1,000 accept
// queues takes a few ms, so the slow pace is most of a big broker's idle CPU.
export class Sampler {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly job: () => void, private readonly fastMs: number, private readonly slowMs: number,
    private readonly fast: () => boolean) {
    // The first run at the fast pace: a status right after start has a sample, as before.
    this.schedule(fastMs);
  }

  /** Runs at the fast pace from now on (call when fast() has just become true). */
  hurry(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.schedule(this.fastMs);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(ms = this.fast() ? this.fastMs : this.slowMs): void {
    this.timer = setTimeout(() => {
      this.job();
      if (!this.stopped) this.schedule();
    }, ms);
    this.timer.unref();
  }
}
