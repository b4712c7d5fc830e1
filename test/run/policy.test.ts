// The pure parts of `fdbroker run`'s supervision: restart backoff, the
// crash-loop window, and the output tail kept for failure reports.
import { describe, expect, it } from 'vitest';
import { restartDelay } from '../../src/run/backoff';
import { CrashWindow } from '../../src/run/crash-loop';
import { OutputTail } from '../../src/run/output-tail';
import { CRASH_LOOP_COUNT, CRASH_LOOP_WINDOW_MS, RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_MIN_MS } from '../../src/run/defaults';

describe('restartDelay', () => {
  it('restarts the first crash of a window at once, then doubles from the minimum up to the cap', () => {
    expect([1, 2, 3, 4, 5].map((n) => restartDelay(n))).toEqual([0, RESTART_BACKOFF_MIN_MS, 2 * RESTART_BACKOFF_MIN_MS, 4 * RESTART_BACKOFF_MIN_MS, 8 * RESTART_BACKOFF_MIN_MS]);
    expect(restartDelay(50)).toBe(RESTART_BACKOFF_MAX_MS);
    expect(restartDelay(1e9)).toBe(RESTART_BACKOFF_MAX_MS);
    expect(restartDelay(3, { minMs: 10, maxMs: 15 })).toBe(15);
  });
});

describe('CrashWindow', () => {
  it(`is a loop at ${CRASH_LOOP_COUNT} crashes within ${CRASH_LOOP_WINDOW_MS} ms, not when they are spread wider`, () => {
    const w = new CrashWindow();
    for (let i = 0; i < CRASH_LOOP_COUNT - 1; i++) expect(w.record(i * 100)).toBe(i + 1);
    expect(w.looping).toBe(false);
    expect(w.record(CRASH_LOOP_WINDOW_MS - 1)).toBe(CRASH_LOOP_COUNT);
    expect(w.looping).toBe(true);
    const spread = new CrashWindow();
    for (let i = 0; i < 3 * CRASH_LOOP_COUNT; i++) spread.record(i * (CRASH_LOOP_WINDOW_MS / (CRASH_LOOP_COUNT - 1)));
    expect(spread.looping).toBe(false);
  });
});

describe('OutputTail', () => {
  it('keeps the last lines across chunk boundaries, an unfinished last line included, each cut to its limit', () => {
    const t = new OutputTail(3, 5);
    t.push('one\ntw');
    t.push('o\nthree\nfour is long\nfiv');
    expect(t.text()).toEqual(['three', 'four ', 'fiv']);
    t.push('e\n');
    expect(t.text()).toEqual(['three', 'four ', 'five']);
  });
});
