// Crash-loop detection of `fdbroker run`: the unrequested exits within a
// sliding window. Pure state; the caller passes the time.
import { CRASH_LOOP_COUNT, CRASH_LOOP_WINDOW_MS } from './defaults';

export class CrashWindow {
  private readonly times: number[] = [];
  readonly count: number;
  readonly windowMs: number;

  constructor(count = CRASH_LOOP_COUNT, windowMs = CRASH_LOOP_WINDOW_MS) {
    this.count = count;
    this.windowMs = windowMs;
  }

  /** Records a crash at `now`; returns how many crashes the window holds, this one included. */
  record(now: number): number {
    this.times.push(now);
    while (this.times.length > 0 && now - this.times[0]! >= this.windowMs) this.times.shift();
    return this.times.length;
  }

  /** Whether the crashes in the window make a crash loop. */
  get looping(): boolean {
    return this.times.length >= this.count;
  }
}
