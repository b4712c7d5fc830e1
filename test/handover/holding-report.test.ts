// HoldingReporter, with fake timers: one report at start, then one per change
// at most every interval, none while nothing changes or nothing is counted,
// again after reset(), and a send that fails is tried again at the next tick.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HoldingReporter, type HoldingCounts } from '../../src/handover/holding-report';

const counts = (connections: number): HoldingCounts => ({ connections, sessions: 0, upgraded: 0, hooked: 0 });

beforeEach(() => { vi.useFakeTimers(); });
afterEach(() => { vi.useRealTimers(); });

describe('HoldingReporter', () => {
  it('reports at start, then each change at most once per interval, and stops', () => {
    let now: HoldingCounts | undefined = counts(5);
    const sent: number[] = [];
    const r = new HoldingReporter(() => now, (h) => { sent.push(h.connections); return true; }, 250);
    r.start();
    r.start(); // a second start does nothing
    expect(sent).toEqual([5]);
    vi.advanceTimersByTime(1000); // no change: no report
    expect(sent).toEqual([5]);
    now = counts(4); now = counts(3); // two changes within one interval: one report, of the latest
    vi.advanceTimersByTime(250);
    expect(sent).toEqual([5, 3]);
    r.reset(); // a new connection: report again even without a change
    vi.advanceTimersByTime(250);
    expect(sent).toEqual([5, 3, 3]);
    now = undefined; // nothing to count: nothing sent
    vi.advanceTimersByTime(1000);
    expect(sent).toEqual([5, 3, 3]);
    r.stop();
    expect(r.running).toBe(false);
    now = counts(1);
    vi.advanceTimersByTime(1000);
    expect(sent).toEqual([5, 3, 3]);
  });

  it('a report that could not be sent (or threw) is sent at the next tick', () => {
    let ok = false;
    const sent: number[] = [];
    const r = new HoldingReporter(() => counts(2), (h) => {
      if (!ok) throw new Error('closed');
      sent.push(h.connections);
      return true;
    }, 250);
    r.start();
    expect(sent).toEqual([]);
    ok = true;
    vi.advanceTimersByTime(250);
    expect(sent).toEqual([2]);
    vi.advanceTimersByTime(250);
    expect(sent).toEqual([2]);
    r.stop();
  });
});
