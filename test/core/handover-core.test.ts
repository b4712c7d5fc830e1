// Unit tests of the pure handover core (src/core/handover-core.ts): no sockets, no timers.
import { describe, expect, it } from 'vitest';
import { HandoverCore, MAX_GENERATION, type CoreOptions, type Effect } from '../../src/core/handover-core';

const E = 1_000;
const opts = (o: Partial<CoreOptions> = {}): CoreOptions => ({
  readyTimeoutMs: 1000, retireTimeoutMs: 500, standbyMs: 0, stallMs: 0, epoch: E, startedMs: 0,
  rejoinGraceMs: 100, detachedWindowMs: 1000, ...o,
});
const S = (o: Partial<CoreOptions> = {}) => opts({ standbyMs: 300, ...o });
const c = (id: number) => ({ clientId: id, pid: 100 + id, uid: 0 });

/** Joins and returns the number. */
function join(core: HandoverCore, id: number, now = 0, standbyMs = 1000): number {
  const r = core.join(c(id), ['http'], now, { standbyMs });
  if (!r.ok) throw new Error('join refused');
  return r.number;
}
const sends = (effects: Effect[]) => effects.flatMap((e) => (e.type === 'send' ? [`${e.msg.type}:${e.to}`] : []));
const events = (effects: Effect[]) => effects.flatMap((e) => (e.type === 'emit' ? [e.event.type] : []));
const states = (core: HandoverCore) => core.list().map((g) => `${g.number}:${g.state}`);
function ready(core: HandoverCore, n: number, now = 0): Effect[] {
  const r = core.ready(n, now);
  if (!r.ok) throw new Error(`ready refused: ${r.reason}`);
  return r.effects;
}

describe('HandoverCore: ready and retire', () => {
  it('numbers generations in order and retires every older one when one becomes ready', () => {
    const g = new HandoverCore(opts());
    expect([join(g, 1), join(g, 2), join(g, 3)]).toEqual([1, 2, 3]);
    expect(sends(ready(g, 1, 10))).toEqual([]);
    expect(sends(ready(g, 3, 20))).toEqual(['retire:1', 'retire:2']);
    expect(states(g)).toEqual(['1:retiring', '2:retiring', '3:ready']);
    expect(g.get(1)!.retiringSince).toBe(new Date(20).toISOString());
  });

  it('the newest ready generation wins a race: an older one that becomes ready later retires at once', () => {
    const g = new HandoverCore(opts());
    join(g, 1); join(g, 2);
    ready(g, 2, 5);
    expect(g.ready(1, 6)).toEqual({ ok: false, reason: 'retiring' });
    const h = new HandoverCore(opts());
    join(h, 1); join(h, 2); join(h, 3);
    ready(h, 3, 1);
    expect(h.ready(2, 2)).toEqual({ ok: false, reason: 'retiring' });
  });

  it('leaving before ready changes nothing; ready twice is harmless; unknown is refused', () => {
    const g = new HandoverCore(opts());
    join(g, 1); ready(g, 1);
    join(g, 2);
    expect(events(g.leave(2, 1))).toEqual(['leave']);
    expect(states(g)).toEqual(['1:ready']);
    expect(join(g, 3)).toBe(3);
    expect(ready(g, 1, 2)).toEqual([]);
    expect(g.ready(9, 1)).toEqual({ ok: false, reason: 'unknown' });
  });

  it('a generation not ready in time is reported once and its ready is refused; a retiring one past its timeout too', () => {
    const g = new HandoverCore(opts());
    join(g, 1); ready(g, 1);
    join(g, 2);
    expect(events(g.tick(999))).toEqual([]);
    expect(events(g.tick(1000))).toEqual(['overdue']);
    expect(events(g.tick(2000))).toEqual([]);
    expect(g.ready(2, 2000)).toEqual({ ok: false, reason: 'overdue' });
    const h = new HandoverCore(opts());
    join(h, 1); ready(h, 1);
    join(h, 2); ready(h, 2, 100);
    expect(events(h.tick(599))).toEqual([]);
    expect(events(h.tick(600))).toEqual(['overdue']);
    expect(h.get(1)!.retireOverdue).toBe(true);
  });

  it('a warm spare waits past the ready timeout without being overdue, and its ready (the promotion) is a ready like any other', () => {
    const g = new HandoverCore(opts());
    join(g, 1); ready(g, 1);
    const r = g.join(c(2), ['http'], 10, { spare: true });
    expect(r).toMatchObject({ ok: true, number: 2 });
    expect(g.get(2)).toMatchObject({ state: 'starting', spare: true });
    expect(g.startingCount()).toBe(0);
    expect(events(g.tick(5000))).toEqual([]);
    expect(g.get(2)!.readyOverdue).toBe(false);
    // The serving one dies: no standby, nothing resumes; the spare is promoted and says ready.
    expect(events(g.leave(1, 5001))).toEqual(['leave', 'rollback']);
    expect(events(ready(g, 2, 5002))).toEqual(['ready']);
    expect(g.get(2)).toMatchObject({ state: 'ready' });
    expect(g.get(2)!.spare).toBeUndefined();
  });

  it('a newer generation\'s ready retires a spare that was never promoted, and a spare is no successor starting for an embedded broker', () => {
    const g = new HandoverCore(opts());
    join(g, 1); ready(g, 1);
    g.join(c(2), ['http'], 0, { spare: true });
    join(g, 3);
    expect(sends(ready(g, 3, 10))).toEqual(['retire:1', 'retire:2']);
    expect(g.get(2)).toMatchObject({ state: 'retiring' });
    expect(g.get(2)!.spare).toBeUndefined();
    const e = new HandoverCore(opts({ oneStartingAtATime: true }));
    e.join(c(0), [], 0, { asNumber: 7, self: true });
    ready(e, 7, 1);
    expect(e.join(c(1), [], 2, { spare: true })).toMatchObject({ ok: true });
    expect(e.join(c(2), [], 3)).toMatchObject({ ok: true });
  });

  it('instance slots: one ready per slot; a ready retires only the older ones of its slot; a crash resumes only its slot\'s standby', () => {
    const g = new HandoverCore(S());
    const j = (id: number, slot: number, now = 0) => {
      const r = g.join(c(id), ['http'], now, { standbyMs: 1000, slot });
      if (!r.ok) throw new Error('join refused');
      return r.number;
    };
    j(1, 0); j(2, 1);
    ready(g, 1, 1);
    expect(sends(ready(g, 2, 2))).toEqual([]);
    expect(states(g)).toEqual(['1:ready', '2:ready']);
    expect(g.get(2)!.slot).toBe(1);
    expect(g.get(1)!.slot).toBeUndefined();
    // A deploy rolls slot 0: only slot 0's old one stands by.
    j(3, 0, 10);
    expect(sends(ready(g, 3, 11))).toEqual(['retire:1']);
    expect(states(g)).toEqual(['1:standby', '2:ready', '3:ready']);
    // Slot 1's one dies: nothing stands by in slot 1, so nothing resumes (slot 0's standby is not its).
    expect(sends(g.leave(2, 20))).toEqual([]);
    expect(states(g)).toEqual(['1:standby', '3:ready']);
    // Slot 0's new one dies: its standby resumes.
    expect(sends(g.leave(3, 30))).toEqual(['resume:1']);
    expect(g.newestReady()).toBe(1);
  });

  it('instance slots: a stalled shared queue is blamed on nobody while several are ready', () => {
    const g = new HandoverCore(S({ rejoinGraceMs: 0 }));
    const a = g.join(c(1), ['http'], 0, { standbyMs: 1000 });
    const b = g.join(c(2), ['http'], 0, { standbyMs: 1000, slot: 1 });
    if (!a.ok || !b.ok) throw new Error('join refused');
    ready(g, a.number); ready(g, b.number);
    const st = g.stalled('http', 5);
    expect(st).toEqual([{ type: 'emit', event: { type: 'stall', listener: 'http', generation: undefined } }]);
  });

  it('an embedded broker continues its predecessor\'s numbering and lets one generation start at a time', () => {
    const g = new HandoverCore(opts({ oneStartingAtATime: true }));
    expect(g.join(c(0), [], 0, { asNumber: 7, self: true })).toMatchObject({ ok: true, number: 7 });
    expect(g.join(c(1), [], 0)).toEqual({ ok: false, reason: 'one-at-a-time' });
    const r = g.ready(7, 1);
    expect(r.ok).toBe(true);
    expect(join(g, 1)).toBe(8);
    // The self generation is retired through retireSelf, not a message.
    const eff = ready(g, 8, 2);
    expect(eff.some((e) => e.type === 'retireSelf' && e.by === 8)).toBe(true);
  });
});

describe('HandoverCore: warm standby and rollback', () => {
  it('the newest previous ready generation stands by for min(its window, the broker\'s); older ones are released', () => {
    const g = new HandoverCore(S());
    join(g, 1); ready(g, 1);
    join(g, 2); ready(g, 2, 10);
    expect(g.get(1)).toMatchObject({ state: 'standby', standbyUntil: new Date(310).toISOString() });
    join(g, 3);
    const eff = ready(g, 3, 20);
    expect(sends(eff)).toEqual(['release:1', 'retire:2']);
    expect(eff.find((e) => e.type === 'send' && e.to === 2)).toMatchObject({ msg: { standby: 300 } });
    expect(states(g)).toEqual(['1:retiring', '2:standby', '3:ready']);
    expect(sends(g.tick(319))).toEqual([]);
    expect(sends(g.tick(320))).toEqual(['release:2']);
    expect(g.hasStandby()).toBe(false);
  });

  it('no standby when the generation asked for none or the broker allows none', () => {
    const g = new HandoverCore(S());
    join(g, 1, 0, 0); ready(g, 1);
    join(g, 2); ready(g, 2, 1);
    expect(g.get(1)!.state).toBe('retiring');
    const h = new HandoverCore(opts());
    join(h, 1); ready(h, 1);
    join(h, 2); ready(h, 2, 1);
    expect(h.get(1)!.state).toBe('retiring');
  });

  it('the ready generation leaving within the window resumes the standby one (a rollback)', () => {
    const g = new HandoverCore(S());
    join(g, 1); ready(g, 1);
    join(g, 2); ready(g, 2, 10);
    const eff = g.leave(2, 20);
    expect(sends(eff)).toEqual(['resume:1']);
    expect(eff.find((e) => e.type === 'emit' && e.event.type === 'rollback')).toMatchObject({ event: { reason: 'left', resumed: 1 } });
    expect(g.get(1)).toMatchObject({ state: 'ready' });
    expect(g.get(1)!.retiringSince).toBeUndefined();
  });

  it('a planned stop resumes the same way but is a stop, not a rollback', () => {
    const g = new HandoverCore(S());
    join(g, 1); ready(g, 1);
    join(g, 2); ready(g, 2, 10);
    const eff = g.leave(2, 20, true);
    expect(events(eff)).toEqual(['leave', 'stopped']);
    expect(sends(eff)).toEqual(['resume:1']);
    const h = new HandoverCore(opts());
    join(h, 1); ready(h, 1);
    expect(events(h.leave(1, 5, true))).toEqual(['leave', 'stopped']);
    expect(events(new HandoverCore(opts()).leave(1, 0))).toEqual([]);
  });

  it('after the window a crash resumes nobody and is still a rollback', () => {
    const g = new HandoverCore(S());
    join(g, 1); ready(g, 1);
    join(g, 2); ready(g, 2, 10);
    g.tick(400);
    const eff = g.leave(2, 401);
    expect(sends(eff)).toEqual([]);
    expect(eff.find((e) => e.type === 'emit' && e.event.type === 'rollback')).toMatchObject({ event: { resumed: undefined } });
  });

  it('a stall of the ready generation\'s listener rolls it back when one stands by; a failed one cannot become ready', () => {
    const g = new HandoverCore(S());
    join(g, 1); ready(g, 1);
    join(g, 2); ready(g, 2, 10);
    const eff = g.stalled('http', 50);
    expect(sends(eff)).toEqual(['resume:1', 'retire:2']);
    expect(g.get(2)).toMatchObject({ state: 'failed', failedReason: 'stalled' });
    expect(g.ready(2, 60)).toEqual({ ok: false, reason: 'failed' });
    expect(events(g.stalled('other', 70))).toEqual(['stall']); // not held by the ready one: reported only
  });

  it('a ready generation with heartbeat that does not answer a ping within stallMs is rolled back as hung', () => {
    const g = new HandoverCore(S({ stallMs: 100 }));
    join(g, 1); ready(g, 1);
    const r = g.join(c(2), ['http'], 0, { heartbeat: true, standbyMs: 1000 });
    expect(r.ok).toBe(true);
    ready(g, 2, 10);
    const ping = g.tick(20).find((e) => e.type === 'send' && e.msg.type === 'ping');
    expect(ping).toBeDefined();
    g.pong(2, (ping as { msg: { id: number } }).msg.id);
    const ping2 = g.tick(30).find((e) => e.type === 'send' && e.msg.type === 'ping');
    expect(ping2).toBeDefined();
    expect(sends(g.tick(129))).toEqual([]);
    expect(sends(g.tick(130))).toEqual(['resume:1', 'retire:2']);
  });

  it('holding reports are kept only for generations told to retire, and dropped when one resumes', () => {
    const H = { connections: 5, sessions: 1, upgraded: 2, hooked: 3 };
    const g = new HandoverCore(S());
    join(g, 1); ready(g, 1);
    expect(g.holding(1, H, 5)).toBe(false);
    join(g, 2);
    expect(g.holding(2, H, 5)).toBe(false);
    ready(g, 2, 10);
    expect(g.holding(1, H, 20)).toBe(true);
    expect(g.get(1)!.holding).toEqual({ ...H, at: new Date(20).toISOString() });
    g.leave(2, 30);
    expect(g.get(1)!.holding).toBeUndefined();
  });
});

describe('HandoverCore: rejoin after a broker restart', () => {
  it('keeps its number when free and continues numbering after it; a ready rejoiner retires older rejoiners', () => {
    const g = new HandoverCore(opts());
    expect(g.rejoin(c(1), { number: 4, state: 'ready', epoch: 500 }, ['http'], 0)).toMatchObject({ number: 4, state: 'ready', epoch: 500 });
    const r = g.rejoin(c(2), { number: 7, state: 'ready', epoch: 500 }, ['http'], 1);
    expect(r).toMatchObject({ number: 7, state: 'ready' });
    expect(sends(r.effects)).toEqual(['retire:4']);
    expect(join(g, 3, 2)).toBe(8);
    expect(g.rejoin(c(4), { number: 7, state: 'retiring' }, [], 3).number).toBe(9);
  });

  it('a rejoiner never outranks a fresh join, whatever the numbers (ready before or after it)', () => {
    const g = new HandoverCore(opts());
    join(g, 1); ready(g, 1); // a deploy on the restarted broker: number 1
    const r = g.rejoin(c(2), { number: 5, state: 'ready', epoch: 900 }, [], 1);
    expect(r.state).toBe('retiring');
    expect(sends(r.effects)).toEqual(['retire:5']);
    // The other order: the old one rejoins starting, the fresh one is not ready yet, the old one says ready first.
    const h = new HandoverCore(opts());
    join(h, 1);
    h.rejoin(c(2), { number: 5, state: 'starting', epoch: 900 }, [], 1);
    ready(h, 5, 2);
    expect(sends(ready(h, 1, 3))).toEqual(['retire:5']);
    expect(h.rejoin(c(3), { number: 6, state: 'starting', epoch: 900 }, [], 4).state).toBe('starting');
    expect(h.ready(6, 5)).toEqual({ ok: true, effects: expect.any(Array) });
    expect(h.get(6)!.state).toBe('retiring');
    expect(h.get(1)!.state).toBe('ready');
    // Even one claiming an epoch from the future ranks below.
    const k = new HandoverCore(opts());
    join(k, 1); ready(k, 1);
    expect(k.rejoin(c(2), { number: 9, state: 'ready', epoch: E + 10 }, [], 1)).toMatchObject({ state: 'retiring', epoch: E - 1 });
  });

  it('numbers stay unique and bounded: a claim of MAX_GENERATION cannot wedge joins', () => {
    const g = new HandoverCore(opts());
    g.rejoin(c(1), { number: MAX_GENERATION, state: 'ready' }, [], 0);
    const seen = new Set<number>([MAX_GENERATION]);
    for (let i = 0; i < 5; i++) {
      const n = join(g, 10 + i, 1);
      expect(n).toBeGreaterThanOrEqual(1);
      expect(n).toBeLessThanOrEqual(MAX_GENERATION);
      expect(seen.has(n)).toBe(false);
      seen.add(n);
    }
    // The fresh joins after the wrap still outrank the rejoiner and one another in join order.
    const last = [...seen].slice(1);
    ready(g, last[0]!, 2);
    expect(g.get(MAX_GENERATION)!.state).toBe('retiring');
    expect(g.ready(last[0]!, 3).ok).toBe(true);
    ready(g, last[1]!, 4);
    expect(g.get(last[0]!)!.state).toBe('retiring');
  });

  it('a standby rejoins with the window it has left; when its successor never comes back it resumes after the grace', () => {
    const g = new HandoverCore(S({ startedMs: 0, rejoinGraceMs: 100 }));
    const r = g.rejoin(c(1), { number: 1, state: 'standby', standbyLeft: 250, epoch: 500 }, ['http'], 10);
    expect(r.state).toBe('standby');
    expect(g.get(1)!.standbyUntil).toBe(new Date(260).toISOString());
    expect(sends(g.tick(99))).toEqual([]);
    const eff = g.tick(100);
    expect(sends(eff)).toEqual(['resume:1']);
    expect(events(eff)).toContain('resumed');
    expect(g.get(1)!.state).toBe('ready');
  });

  it('a standby that rejoins with its successor keeps standing by, and resumes if the successor then dies', () => {
    const g = new HandoverCore(S());
    g.rejoin(c(2), { number: 2, state: 'ready', epoch: 500 }, ['http'], 0);
    g.rejoin(c(1), { number: 1, state: 'standby', standbyLeft: 250, epoch: 500 }, ['http'], 1);
    expect(sends(g.tick(150))).toEqual([]);
    expect(states(g)).toEqual(['1:standby', '2:ready']);
    expect(sends(g.leave(2, 200))).toEqual(['resume:1']);
  });

  it('a standby rejoining with no window left is released', () => {
    const g = new HandoverCore(S());
    const r = g.rejoin(c(1), { number: 1, state: 'standby', standbyLeft: 0 }, [], 0);
    expect(r.state).toBe('retiring');
    expect(sends(r.effects)).toEqual(['release:1']);
  });
});

describe('HandoverCore: takeover', () => {
  it('a successor imports the table as it was: numbers, states, windows, deadlines, ranks; numbering continues', () => {
    const old = new HandoverCore(S({ standbyMs: 5000 }));
    join(old, 1, 0, 5000); join(old, 2, 0, 5000);
    ready(old, 1, 10); ready(old, 2, 20); // 1 stands by until 5020
    join(old, 3, 30);
    const snap = old.freeze();
    expect(snap.next).toBe(4);
    const t = new HandoverCore(S({ standbyMs: 5000, epoch: 500, startedMs: 100 }), JSON.parse(JSON.stringify(snap)), 100);
    expect(t.list().map((g) => [g.number, g.state, g.clientId])).toEqual([[1, 'standby', 0], [2, 'ready', 0], [3, 'starting', 0]]);
    expect(t.epoch).toBeGreaterThan(E);
    expect(events(t.tick(1029))).toEqual([]);
    expect(events(t.tick(1030))).toEqual(['overdue']);
    // Not rejoined within the detached window: gone, all three; the one that served is reported as a rollback.
    const eff = t.tick(1100);
    expect(events(eff).sort()).toEqual(['leave', 'leave', 'leave', 'rollback']);
    expect(t.list()).toEqual([]);
  });

  it('reattach needs the same number and pid; what the generation missed is told', () => {
    const old = new HandoverCore(S({ standbyMs: 5000 }));
    join(old, 1, 0, 5000); ready(old, 1, 1);
    join(old, 2, 2, 5000); ready(old, 2, 3);
    const t = new HandoverCore(S({ standbyMs: 5000, startedMs: 10 }), old.freeze(), 10);
    // Another pid: not a reattach, a plain rejoin under a new number.
    expect(t.rejoin({ clientId: 50, pid: 999, uid: 0 }, { number: 2, state: 'ready' }, [], 11).number).toBe(3);
    // 1 claims ready (it never saw the retire): told to stand by with what is left of its window.
    const r1 = t.rejoin({ clientId: 51, pid: 101, uid: 0 }, { number: 1, state: 'ready' }, [], 12);
    expect(r1.number).toBe(1);
    expect(sends(r1.effects)).toEqual(['retire:1']);
  });

  it('defect 1: a rollback during a takeover: the old broker only journals the leave, the successor applies it and resumes the standby', () => {
    const old = new HandoverCore(S({ standbyMs: 5000 }));
    join(old, 1, 0, 5000); ready(old, 1, 1); // A
    join(old, 2, 2, 5000); ready(old, 2, 3); // B; A stands by
    const snap = old.freeze();
    // B dies before the commit: nothing is resumed here, nothing changes in what the successor holds.
    expect(sends(old.leave(2, 10))).toEqual([]);
    expect(old.get(1)!.state).toBe('standby');
    expect(old.tick(20000)).toEqual([]);
    const { left } = old.commit();
    expect(left).toEqual([2]);
    const t = new HandoverCore(S({ standbyMs: 5000, startedMs: 10 }), snap, 10);
    t.applyForwarded(left, 11);
    expect(t.get(1)!.state).toBe('ready');
    // A reattaches claiming standby: it is told to resume.
    const r = t.rejoin({ clientId: 9, pid: 101, uid: 0 }, { number: 1, state: 'standby', standbyLeft: 4000 }, [], 12);
    expect(sends(r.effects)).toEqual(['resume:1']);
  });

  it('an aborted takeover replays what it journaled', () => {
    const old = new HandoverCore(S({ standbyMs: 5000 }));
    join(old, 1, 0, 5000); ready(old, 1, 1);
    join(old, 2, 2, 5000); ready(old, 2, 3);
    old.freeze();
    old.leave(2, 10);
    expect(() => old.join(c(3), [], 11)).toThrow(/takeover/);
    const eff = old.abort(12);
    expect(sends(eff)).toEqual(['resume:1']);
    expect(old.get(1)!.state).toBe('ready');
    expect(old.isFrozen).toBe(false);
  });

  it('an import skips numbers it cannot hold and states it does not know', () => {
    const g = { number: 1, clientId: 1, pid: 5, uid: 0, state: 'ready' as const, adopted: [], joinedAt: new Date(0).toISOString(), standbyMs: 0, readyOverdue: false, retireOverdue: false };
    const t = new HandoverCore(opts(), { next: 3, generations: [g, { ...g, number: 2, state: 'weird' as never }, { ...g, number: MAX_GENERATION + 1 }] }, 0);
    expect(t.list().map((x) => x.number)).toEqual([1]);
    expect(join(t, 2)).toBe(3);
  });
});

describe('HandoverCore: a ready is judged on whether the process holds its listeners', () => {
  it('a generation holding none of its listeners is refused, fails (not-holding) and is told to retire; the one serving serves on', () => {
    const g = new HandoverCore(S());
    join(g, 1); ready(g, 1, 1);
    const n = join(g, 2, 2);
    const r = g.ready(n, 3, { result: 'missing', missing: ['http'] });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason).toBe('not-holding');
    expect(sends(r.effects!)).toEqual([`retire:${n}`]);
    expect(events(r.effects!)).toEqual(['notHolding']);
    expect(states(g)).toEqual(['1:ready', `${n}:failed`]);
    expect(g.get(n)).toMatchObject({ failedReason: 'not-holding', holdCheck: { result: 'missing', missing: ['http'] } });
    expect(g.get(n)!.readyAt).toBeUndefined();
    expect(g.newestReady()).toBe(1);
    // It cannot become ready later, holding or not.
    expect(g.ready(n, 4, { result: 'held' })).toEqual({ ok: false, reason: 'failed' });
    // Its leave is no rollback: it never served.
    expect(events(g.leave(n, 5))).toEqual(['leave']);
    expect(states(g)).toEqual(['1:ready']);
  });

  it('the retire notice names the serving generation as "by" (0 when none serves)', () => {
    const g = new HandoverCore(opts());
    const n = join(g, 1);
    const r = g.ready(n, 1, { result: 'missing', missing: ['http'] });
    const notice = !r.ok ? r.effects!.find((e) => e.type === 'send') : undefined;
    expect(notice).toEqual({ type: 'send', to: n, msg: { type: 'retire', generation: n, by: 0, reason: 'not-holding' } });
  });

  it('held and unverified are accepted and recorded; without a fact (rejoin, embedded) nothing is recorded', () => {
    const g = new HandoverCore(opts());
    const a = join(g, 1); const b = join(g, 2); const c3 = join(g, 3);
    expect(g.ready(a, 1, { result: 'held' }).ok).toBe(true);
    expect(g.get(a)!.holdCheck).toEqual({ result: 'held' });
    expect(g.ready(b, 2, { result: 'unverified', why: 'EACCES' }).ok).toBe(true);
    expect(g.get(b)!.holdCheck).toEqual({ result: 'unverified', why: 'EACCES' });
    expect(g.ready(c3, 3).ok).toBe(true);
    expect(g.get(c3)!.holdCheck).toBeUndefined();
  });

  it('a refusal for another reason wins over the fact only once the generation left "starting"', () => {
    const g = new HandoverCore(opts());
    const a = join(g, 1); const b = join(g, 2);
    ready(g, b, 1);
    // Retiring already (a newer one is ready): the usual refusal, nothing recorded.
    expect(g.ready(a, 2, { result: 'missing', missing: ['http'] })).toEqual({ ok: false, reason: 'retiring' });
    expect(g.get(a)!.holdCheck).toBeUndefined();
  });
});

describe('HandoverCore: a generation holding some of its listeners', () => {
  it('is accepted (programs close inherited listeners they do not use), and what it lacks is recorded', () => {
    const g = new HandoverCore(opts());
    const n = join(g, 1);
    expect(g.ready(n, 1, { result: 'held', missing: ['admin'] }).ok).toBe(true);
    expect(g.get(n)!.holdCheck).toEqual({ result: 'held', missing: ['admin'] });
  });
});
