import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Deadlines } from '../../src/broker/deadlines';

describe('Deadlines', () => {
  beforeEach(() => { vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] }); });
  afterEach(() => { vi.useRealTimers(); });

  it('expires each key ms after its last set, in order, with one timer', () => {
    const expired: string[] = [];
    const d = new Deadlines<string>(100, (k) => expired.push(k));
    d.set('a');
    vi.advanceTimersByTime(40);
    d.set('b');
    vi.advanceTimersByTime(40);
    d.set('a'); // re-armed at 80: due at 180, after b (140)
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(59);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual(['b']);
    vi.advanceTimersByTime(39);
    expect(expired).toEqual(['b']);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual(['b', 'a']);
    expect(d.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a deleted key never expires, and the timer stops with the last key', () => {
    const expired: string[] = [];
    const d = new Deadlines<string>(50, (k) => expired.push(k));
    d.set('a');
    d.set('b');
    d.delete('a');
    vi.advanceTimersByTime(50);
    expect(expired).toEqual(['b']);
    d.set('c');
    d.delete('c');
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(100);
    expect(expired).toEqual(['b']);
  });

  it('keys due together expire in one turn, and an expiry may delete others', () => {
    const expired: string[] = [];
    const d: Deadlines<string> = new Deadlines<string>(10, (k) => { expired.push(k); if (k === 'x') d.delete('z'); });
    d.set('x'); d.set('y'); d.set('z');
    vi.advanceTimersByTime(10);
    expect(expired).toEqual(['x', 'y']);
  });
});
