// The pause table (src/core/pause-table.ts), pure: deadlines, caps, totals.
import { describe, expect, it } from 'vitest';
import { DEFAULT_PAUSE_MS, MAX_PAUSE_MS, PauseTable } from '../../src/core/pause-table';

describe('PauseTable', () => {
  it('a pause without a duration lasts DEFAULT_PAUSE_MS; none lasts more than MAX_PAUSE_MS', () => {
    const t = new PauseTable();
    expect(t.pause(['a'], 1000)).toBe(1000 + DEFAULT_PAUSE_MS);
    expect(t.pause(['b'], 1000, 10 * MAX_PAUSE_MS)).toBe(1000 + MAX_PAUSE_MS);
    expect(t.nextDeadline()).toBe(1000 + DEFAULT_PAUSE_MS);
    expect(t.list().map((p) => p.name)).toEqual(['a', 'b']);
  });

  it('resumes on its own at the deadline, not before; pausing again moves the deadline and keeps since', () => {
    const t = new PauseTable();
    t.pause(['a', 'b'], 0, 5000);
    t.pause(['a'], 1000, 1000);
    expect(t.get('a')).toEqual({ name: 'a', since: 0, until: 2000 });
    expect(t.due(1999)).toEqual([]);
    expect(t.due(2000)).toEqual(['a']);
    expect(t.isPaused('a')).toBe(false);
    expect(t.nextDeadline()).toBe(5000);
    expect(t.due(6000)).toEqual(['b']);
    expect(t.nextDeadline()).toBeUndefined();
    expect(t.size).toBe(0);
  });

  it('resume() ends the named pauses, or all; the paused time adds up over pauses', () => {
    const t = new PauseTable();
    t.pause(['a', 'b'], 0, 10_000);
    expect(t.resume(['a', 'zzz'], 300)).toEqual(['a']);
    expect(t.pausedMs('a', 1000)).toBe(300);
    expect(t.pausedMs('b', 1000)).toBe(1000);
    t.pause(['a'], 2000, 10_000);
    expect(t.pausedMs('a', 2500)).toBe(800);
    expect(t.resume(null, 3000).sort()).toEqual(['a', 'b']);
    expect(t.pausedMs('a', 9000)).toBe(1300);
    expect(t.pausedMs('b', 9000)).toBe(3000);
    expect(t.pausedOf(['a', 'b'])).toEqual([]);
  });

  it('a zero or negative duration is a pause that is due at once', () => {
    const t = new PauseTable();
    t.pause(['a'], 100, -5);
    expect(t.due(100)).toEqual(['a']);
  });
});
