// Sampler: the accept-queue sampling pace, fast while a generation stands by, slow otherwise.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Sampler } from '../../src/broker/sampler';

afterEach(() => { vi.useRealTimers(); });

describe('Sampler', () => {
  it('runs at the slow pace, at the fast one while fast() holds, and hurry() switches at once', () => {
    vi.useFakeTimers();
    let fast = false;
    let runs = 0;
    const s = new Sampler(() => { runs++; }, 100, 500, () => fast);
    vi.advanceTimersByTime(1000); // the first run at the fast pace (100), then slow (600)
    expect(runs).toBe(2);
    fast = true;
    s.hurry();
    vi.advanceTimersByTime(1000);
    expect(runs).toBe(12);
    fast = false;
    vi.advanceTimersByTime(1000); // one fast run already scheduled, then slow
    expect(runs).toBe(14);
    s.stop();
    vi.advanceTimersByTime(5000);
    expect(runs).toBe(14);
  });

  it('a job that stops its sampler is not run again', () => {
    vi.useFakeTimers();
    let runs = 0;
    const s: Sampler = new Sampler(() => { runs++; s.stop(); }, 10, 10, () => true);
    vi.advanceTimersByTime(100);
    expect(runs).toBe(1);
  });
});
