// Unit tests of the pure generation rules (src/generations.ts): no sockets.
import { describe, expect, it } from 'vitest';
import { GenerationTable, type GenerationInfo } from '../../src/broker/generation-table';

const T = { readyTimeoutMs: 1000, retireTimeoutMs: 500 };
const c = (id: number) => ({ clientId: id, pid: 100 + id, uid: 0 });

describe('GenerationTable', () => {
  it('numbers generations in order and retires every older one when one becomes ready', () => {
    const g = new GenerationTable(T);
    expect([g.join(c(1), ['http'], 0), g.join(c(2), ['http'], 0), g.join(c(3), ['http'], 0)]).toEqual([1, 2, 3]);
    expect(g.ready(1, 10)).toEqual({ ok: true, retire: [], release: [] });
    expect(g.ready(3, 20)).toEqual({ ok: true, retire: [1, 2], release: [] });
    expect(g.list().map((x) => x.state)).toEqual(['retiring', 'retiring', 'ready']);
    expect(g.get(1)!.retiringSince).toBe(new Date(20).toISOString());
  });

  it('the newest ready generation wins a race: an older one that becomes ready later retires at once', () => {
    const g = new GenerationTable(T);
    g.join(c(1), [], 0); g.join(c(2), [], 0);
    expect(g.ready(2, 5)).toEqual({ ok: true, retire: [1], release: [] });
    expect(g.ready(1, 6)).toEqual({ ok: false, reason: 'retiring' });
    const h = new GenerationTable(T);
    h.join(c(1), [], 0); h.join(c(2), [], 0); h.join(c(3), [], 0);
    h.ready(3, 1);
    expect(h.ready(2, 2)).toEqual({ ok: false, reason: 'retiring' });
  });

  it('leaving before ready changes nothing (rollback)', () => {
    const g = new GenerationTable(T);
    g.join(c(1), [], 0); g.ready(1, 0);
    g.join(c(2), [], 0);
    expect(g.leave(2)!.gone.state).toBe('starting');
    expect(g.list().map((x) => [x.number, x.state])).toEqual([[1, 'ready']]);
    expect(g.join(c(3), [], 0)).toBe(3);
  });

  it('a generation not ready in time is reported once and its ready is refused', () => {
    const g = new GenerationTable(T);
    g.join(c(1), [], 0); g.ready(1, 0);
    g.join(c(2), [], 0);
    expect(g.check(999).readyOverdue).toEqual([]);
    expect(g.check(1000).readyOverdue.map((x) => x.number)).toEqual([2]);
    expect(g.check(2000).readyOverdue).toEqual([]);
    expect(g.ready(2, 2000)).toEqual({ ok: false, reason: 'overdue' });
    expect(g.get(1)!.state).toBe('ready');
  });

  it('a retiring generation still connected after the retire timeout is reported once', () => {
    const g = new GenerationTable(T);
    g.join(c(1), [], 0); g.ready(1, 0);
    g.join(c(2), [], 0); g.ready(2, 100);
    expect(g.check(599).retireOverdue).toEqual([]);
    expect(g.check(600).retireOverdue.map((x) => x.number)).toEqual([1]);
    expect(g.check(700).retireOverdue).toEqual([]);
    expect(g.get(1)!.retireOverdue).toBe(true);
  });

  it('ready twice is harmless; unknown generations are refused; embedded brokers continue numbering', () => {
    const g = new GenerationTable(T);
    g.join(c(1), [], 0);
    expect(g.ready(1, 0)).toEqual({ ok: true, retire: [], release: [] });
    expect(g.ready(1, 1)).toEqual({ ok: true, retire: [], release: [] });
    expect(g.ready(9, 1)).toEqual({ ok: false, reason: 'unknown' });
    const h = new GenerationTable(T);
    expect(h.join(c(0), [], 0, 7)).toBe(7);
    expect(h.join(c(1), [], 0)).toBe(8);
  });

  describe('warm standby', () => {
    const S = { ...T, standbyMs: 300 };

    it('the newest previous ready generation stands by for min(its window, the broker\'s); older ones retire', () => {
      const g = new GenerationTable(S);
      g.join(c(1), [], 0, undefined, 1000); g.ready(1, 0);
      g.join(c(2), [], 0, undefined, 1000); g.ready(2, 10);
      expect(g.get(1)).toMatchObject({ state: 'standby', standbyUntil: new Date(310).toISOString() });
      g.join(c(3), [], 0, undefined, 1000);
      // 3 ready: 2 stands by now, and 1's window ends at once (it is released).
      expect(g.ready(3, 20)).toEqual({ ok: true, retire: [2], release: [1] });
      expect(g.list().map((x) => x.state)).toEqual(['retiring', 'standby', 'ready']);
      expect(g.check(319).release).toEqual([]);
      expect(g.check(320).release).toEqual([2]);
      expect(g.get(2)!.state).toBe('retiring');
      expect(g.hasStandby()).toBe(false);
    });

    it('no standby when the generation asked for none or the broker allows none', () => {
      const g = new GenerationTable(S);
      g.join(c(1), [], 0, undefined, 0); g.ready(1, 0);
      g.join(c(2), [], 0); g.ready(2, 1);
      expect(g.get(1)!.state).toBe('retiring');
      const h = new GenerationTable(T);
      h.join(c(1), [], 0, undefined, 5000); h.ready(1, 0);
      h.join(c(2), [], 0); h.ready(2, 1);
      expect(h.get(1)!.state).toBe('retiring');
    });

    it('the newest ready generation leaving (a crash) within the window resumes the standby one', () => {
      const g = new GenerationTable(S);
      g.join(c(1), [], 0, undefined, 1000); g.ready(1, 0);
      g.join(c(2), [], 0); g.ready(2, 10);
      expect(g.leave(2)).toMatchObject({ gone: { number: 2, state: 'ready' }, resumed: 1, lostReady: true });
      expect(g.get(1)).toMatchObject({ state: 'ready' });
      expect(g.get(1)!.retiringSince).toBeUndefined();
      expect(g.newestReady()).toBe(1);
    });

    it('after the window a crash resumes nobody, but is still reported as a lost ready generation', () => {
      const g = new GenerationTable(S);
      g.join(c(1), [], 0, undefined, 1000); g.ready(1, 0);
      g.join(c(2), [], 0); g.ready(2, 10);
      g.check(400);
      expect(g.leave(2)).toMatchObject({ resumed: undefined, lostReady: true });
      expect(g.get(1)!.state).toBe('retiring');
    });

    it('rollback marks the newest ready generation failed and resumes the standby; a failed one cannot become ready', () => {
      const g = new GenerationTable(S);
      g.join(c(1), [], 0, undefined, 1000); g.ready(1, 0);
      g.join(c(2), [], 0); g.ready(2, 10);
      expect(g.rollback(2, 50, 'stalled')).toEqual({ resumed: 1 });
      expect(g.get(2)).toMatchObject({ state: 'failed', failedReason: 'stalled' });
      expect(g.ready(2, 60)).toEqual({ ok: false, reason: 'failed' });
      expect(g.rollback(1, 70, 'x').resumed).toBeUndefined();
      expect(g.leave(2)!.lostReady).toBe(false);
    });

    it('a retiring or starting generation leaving resumes nobody', () => {
      const g = new GenerationTable(S);
      g.join(c(1), [], 0, undefined, 1000); g.ready(1, 0);
      g.join(c(2), [], 0); g.ready(2, 10);
      g.join(c(3), [], 0);
      expect(g.leave(3)).toMatchObject({ resumed: undefined, lostReady: false });
      expect(g.get(1)!.state).toBe('standby');
    });
  });

  describe('rejoin', () => {
    it('keeps its number when free, continues numbering after it, and a ready one retires older ready ones', () => {
      const g = new GenerationTable(T);
      expect(g.rejoin(c(1), 4, 'ready', ['http'], 0)).toEqual({ number: 4, retire: [], release: [] });
      expect(g.rejoin(c(2), 7, 'ready', ['http'], 1)).toEqual({ number: 7, retire: [4], release: [] });
      expect(g.join(c(3), [], 2)).toBe(8);
      expect(g.rejoin(c(4), 7, 'retiring', [], 3).number).toBe(9);
      expect(g.get(9)).toMatchObject({ state: 'retiring', rejoined: true });
      expect(g.get(4)!.state).toBe('retiring');
    });

    it('an older ready generation rejoining after a newer one is retired at once', () => {
      const g = new GenerationTable(T);
      g.rejoin(c(1), 7, 'ready', [], 0);
      expect(g.rejoin(c(2), 4, 'ready', [], 1)).toEqual({ number: 4, retire: [4], release: [] });
    });

    it('a generation that rejoins as ready retires at once when one that joined this broker fresh is ready, whatever the numbers', () => {
      const g = new GenerationTable(T);
      g.join(c(1), [], 0); g.ready(1, 0); // a new deploy on the restarted broker: number 1
      expect(g.rejoin(c(2), 5, 'ready', [], 1)).toEqual({ number: 5, retire: [5], release: [] });
      expect(g.get(1)!.state).toBe('ready');
      expect(g.get(5)!.state).toBe('retiring');
    });

    it('a released standby counts its retire timeout from the release', () => {
      const g = new GenerationTable({ readyTimeoutMs: 1000, retireTimeoutMs: 500, standbyMs: 300 });
      g.join(c(1), [], 0, undefined, 1000); g.ready(1, 0);
      g.join(c(2), [], 0); g.ready(2, 0);
      expect(g.check(300).release).toEqual([1]);
      expect(g.get(1)!.retiringSince).toBe(new Date(300).toISOString());
      expect(g.check(799).retireOverdue).toEqual([]);
      expect(g.check(800).retireOverdue.map((x) => x.number)).toEqual([1]);
    });

    it('startingCount counts generations not ready yet', () => {
      const g = new GenerationTable(T);
      g.join(c(1), [], 0); g.join(c(2), [], 0);
      expect(g.startingCount()).toBe(2);
      g.ready(2, 1);
      expect(g.startingCount()).toBe(0);
    });
  });
  describe('holding reports', () => {
    const H = { connections: 5, sessions: 1, upgraded: 2, hooked: 3 };
    it('are kept only for a generation told to retire (standby, retiring, failed), with the time of the report', () => {
      const g = new GenerationTable({ ...T, standbyMs: 300 });
      g.join(c(1), [], 0); g.ready(1, 0);
      expect(g.holding(1, H, 5)).toBe(false); // ready: it serves, nothing to report
      expect(g.holding(9, H, 5)).toBe(false); // unknown
      g.join(c(2), [], 0);
      expect(g.holding(2, H, 5)).toBe(false); // starting
      g.ready(2, 10);
      expect(g.holding(1, H, 20)).toBe(true);
      expect(g.get(1)!.holding).toEqual({ ...H, at: new Date(20).toISOString() });
      expect(g.holding(1, { ...H, connections: 1 }, 30)).toBe(true);
      expect(g.list()[0]!.holding).toEqual({ ...H, connections: 1, at: new Date(30).toISOString() });
      expect(g.get(2)!.holding).toBeUndefined();
    });

    it('are dropped when a standby generation resumes', () => {
      const g = new GenerationTable({ ...T, standbyMs: 300 });
      g.join(c(1), [], 0, undefined, 1000); g.ready(1, 0);
      g.join(c(2), [], 0); g.ready(2, 10);
      expect(g.get(1)!.state).toBe('standby');
      expect(g.holding(1, H, 20)).toBe(true);
      expect(g.leave(2)).toMatchObject({ resumed: 1 });
      expect(g.get(1)).toMatchObject({ state: 'ready' });
      expect(g.get(1)!.holding).toBeUndefined();
    });
  });
});

describe('GenerationTable: takeover (snapshot, import, reattach)', () => {
  const S = { ...T, standbyMs: 5000 };
  it('a successor imports the table as it was: numbers, states, standby window, deadlines; numbering continues', () => {
    const old = new GenerationTable(S);
    old.join(c(1), ['http'], 0, undefined, 5000);
    old.join(c(2), ['http'], 0, undefined, 5000);
    old.ready(1, 10);
    old.ready(2, 20); // 1 stands by until 5020
    old.join(c(3), ['http'], 30); // starting
    const snap = old.snapshot();
    expect(snap.next).toBe(4);
    const t = new GenerationTable(S);
    expect(t.importSnapshot(JSON.parse(JSON.stringify(snap)), 100)).toEqual([1, 2, 3]);
    expect(t.list().map((g) => [g.number, g.state, g.clientId])).toEqual([[1, 'standby', 0], [2, 'ready', 0], [3, 'starting', 0]]);
    expect(t.get(1)!.standbyUntil).toBe(new Date(5020).toISOString());
    // The standby window ends when it would have in the old broker; the ready deadline of 3 too (joined at 30, timeout 1000).
    expect(t.check(1029)).toMatchObject({ readyOverdue: [], release: [] });
    expect(t.check(1030).readyOverdue.map((g) => g.number)).toEqual([3]);
    expect(t.check(5020).release).toEqual([1]);
    // The next join continues the numbering; its ready retires the imported ready one (2) and the starting one (3).
    expect(t.join(c(9), ['http'], 6000)).toBe(4);
    expect(t.ready(4, 6001)).toMatchObject({ ok: true, retire: [2, 3] });
  });

  it('reattach needs the same number and pid and a detached entry; imported ones not reattached in time are reported', () => {
    const old = new GenerationTable(S);
    old.join(c(1), [], 0);
    old.ready(1, 1);
    old.join(c(2), [], 2);
    const t = new GenerationTable(S);
    t.importSnapshot(old.snapshot(), 1000);
    expect(t.reattach(1, 999, 50)).toBe(false); // another pid
    expect(t.reattach(7, 101, 50)).toBe(false); // no such number
    expect(t.reattach(1, 101, 50)).toBe(true);
    expect(t.get(1)).toMatchObject({ clientId: 50, state: 'ready' });
    expect(t.reattach(1, 101, 51)).toBe(false); // attached already
    expect(t.detachedOverdue(1999, 1000)).toEqual([]);
    expect(t.detachedOverdue(2000, 1000)).toEqual([2]);
  });

  it('an import skips numbers already taken and states it does not know', () => {
    const t = new GenerationTable(S);
    t.join(c(1), [], 0);
    const g: GenerationInfo = { number: 1, clientId: 1, pid: 5, uid: 0, state: 'ready', adopted: [], joinedAt: new Date(0).toISOString(), standbyMs: 0, readyOverdue: false, retireOverdue: false };
    expect(t.importSnapshot({ next: 3, generations: [g, { ...g, number: 2, state: 'weird' as never }] }, 0)).toEqual([]);
    expect(t.join(c(2), [], 0)).toBe(3);
  });
});
