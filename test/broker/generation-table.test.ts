// Unit tests of the pure generation rules (src/generations.ts): no sockets.
import { describe, expect, it } from 'vitest';
import { Generations } from '../../src/broker/generation-table';

const T = { readyTimeoutMs: 1000, retireTimeoutMs: 500 };
const c = (id: number) => ({ clientId: id, pid: 100 + id, uid: 0 });

describe('Generations', () => {
  it('numbers generations in order and retires every older one when one becomes ready', () => {
    const g = new Generations(T);
    expect([g.join(c(1), ['http'], 0), g.join(c(2), ['http'], 0), g.join(c(3), ['http'], 0)]).toEqual([1, 2, 3]);
    expect(g.ready(1, 10)).toEqual({ ok: true, retire: [] });
    expect(g.ready(3, 20)).toEqual({ ok: true, retire: [1, 2] });
    expect(g.list().map((x) => x.state)).toEqual(['retiring', 'retiring', 'ready']);
    expect(g.get(1)!.retiringSince).toBe(new Date(20).toISOString());
  });

  it('the newest ready generation wins a race: an older one that becomes ready later retires at once', () => {
    const g = new Generations(T);
    g.join(c(1), [], 0); g.join(c(2), [], 0);
    expect(g.ready(2, 5)).toEqual({ ok: true, retire: [1] });
    expect(g.ready(1, 6)).toEqual({ ok: false, reason: 'retiring' });
    const h = new Generations(T);
    h.join(c(1), [], 0); h.join(c(2), [], 0); h.join(c(3), [], 0);
    h.ready(3, 1);
    expect(h.ready(2, 2)).toEqual({ ok: false, reason: 'retiring' });
  });

  it('leaving before ready changes nothing (rollback)', () => {
    const g = new Generations(T);
    g.join(c(1), [], 0); g.ready(1, 0);
    g.join(c(2), [], 0);
    expect(g.leave(2)!.state).toBe('starting');
    expect(g.list().map((x) => [x.number, x.state])).toEqual([[1, 'ready']]);
    expect(g.join(c(3), [], 0)).toBe(3);
  });

  it('a generation not ready in time is reported once and its ready is refused', () => {
    const g = new Generations(T);
    g.join(c(1), [], 0); g.ready(1, 0);
    g.join(c(2), [], 0);
    expect(g.check(999).readyOverdue).toEqual([]);
    expect(g.check(1000).readyOverdue.map((x) => x.number)).toEqual([2]);
    expect(g.check(2000).readyOverdue).toEqual([]);
    expect(g.ready(2, 2000)).toEqual({ ok: false, reason: 'overdue' });
    expect(g.get(1)!.state).toBe('ready');
  });

  it('a retiring generation still connected after the retire timeout is reported once', () => {
    const g = new Generations(T);
    g.join(c(1), [], 0); g.ready(1, 0);
    g.join(c(2), [], 0); g.ready(2, 100);
    expect(g.check(599).retireOverdue).toEqual([]);
    expect(g.check(600).retireOverdue.map((x) => x.number)).toEqual([1]);
    expect(g.check(700).retireOverdue).toEqual([]);
    expect(g.get(1)!.retireOverdue).toBe(true);
  });

  it('ready twice is harmless; unknown generations are refused; embedded brokers continue numbering', () => {
    const g = new Generations(T);
    g.join(c(1), [], 0);
    expect(g.ready(1, 0)).toEqual({ ok: true, retire: [] });
    expect(g.ready(1, 1)).toEqual({ ok: true, retire: [] });
    expect(g.ready(9, 1)).toEqual({ ok: false, reason: 'unknown' });
    const h = new Generations(T);
    expect(h.join(c(0), [], 0, 7)).toBe(7);
    expect(h.join(c(1), [], 0)).toBe(8);
  });
});
