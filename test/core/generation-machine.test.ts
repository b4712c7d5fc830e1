// The client-side generation state machine, pure: inputs in, effects out, no
// sockets or timers. Each rule of its header (invariants 1-7) has a case here.
import { describe, expect, it } from 'vitest';
import { GenerationMachine, type GenerationEffect, type GenerationInput, type GenerationMachineConfig } from '../../src/core/generation-machine';

const ALL = ['holding', 'takeover', 'leaving', 'standby-rejoin', 'epoch'];
const OLD = ['holding', 'takeover'];

function machine(cfg: Partial<GenerationMachineConfig> = {}, features: string[] = ALL, number = 5, epoch = 2): GenerationMachine {
  const m = new GenerationMachine({ standbyMs: 5000, heartbeat: true, retireMode: 'drain', embedded: false, standbyGraceMs: 2000, ...cfg });
  m.step({ type: 'joined', number, epoch, features }, 0);
  return m;
}

/** Steps through `inputs` at time `t` and returns every effect, in order. */
function run(m: GenerationMachine, inputs: GenerationInput[], t = 0): GenerationEffect[] {
  return inputs.flatMap((i) => m.step(i, t));
}
const types = (effects: GenerationEffect[]) => effects.map((e) => (e.type === 'emit' ? `emit:${e.event}` : e.type === 'settle-ready' ? `settle:${e.ok ? 'ok' : e.code}` : e.type));

/** A ready generation standing by (window 1000 ms from t=0). */
function standing(cfg: Partial<GenerationMachineConfig> = {}, features = ALL): GenerationMachine {
  const m = machine(cfg, features);
  run(m, [{ type: 'ready-requested' }, { type: 'ready-acked' }, { type: 'retire', by: 6, standby: 1000, reason: 'newer' }]);
  expect(m.state.phase).toBe('standby');
  return m;
}

describe('ready (invariant 1: every ready request settles exactly once)', () => {
  it('sent once, settled ok by the ack; later requests settle at once', () => {
    const m = machine();
    expect(types(m.step({ type: 'ready-requested' }, 0))).toEqual(['send-ready']);
    expect(types(m.step({ type: 'ready-requested' }, 0))).toEqual([]);
    expect(types(m.step({ type: 'ready-acked' }, 0))).toEqual(['settle:ok']);
    expect(m.state.phase).toBe('ready');
    expect(types(m.step({ type: 'ready-requested' }, 0))).toEqual(['settle:ok']);
    expect(types(m.step({ type: 'ready-acked' }, 0))).toEqual([]);
  });

  it('refused by the broker: settles with its code; not claimed at a rejoin', () => {
    const m = machine();
    run(m, [{ type: 'ready-requested' }]);
    expect(m.step({ type: 'ready-refused', code: 'ERR_FDBROKER_READY_REFUSED', message: 'late' }, 0))
      .toEqual([{ type: 'settle-ready', ok: false, code: 'ERR_FDBROKER_READY_REFUSED', message: 'late' }]);
    run(m, [{ type: 'connection-lost' }, { type: 'rejoin-timer' }]);
    const e = m.step({ type: 'rejoin-connected', features: ALL }, 0);
    expect(e).toContainEqual(expect.objectContaining({ type: 'send-rejoin', claim: expect.objectContaining({ state: 'starting' }) }));
  });

  it('defect 6: closed while the answer is pending: ERR_FDBROKER_CLOSED, and a ready asked after close too', () => {
    const m = machine();
    run(m, [{ type: 'ready-requested' }]);
    expect(types(m.step({ type: 'close', planned: true }, 0))).toEqual(['settle:ERR_FDBROKER_CLOSED', 'send-leaving']);
    expect(types(m.step({ type: 'ready-acked' }, 0))).toEqual([]);
    expect(types(m.step({ type: 'ready-requested' }, 0))).toEqual(['settle:ERR_FDBROKER_CLOSED']);
  });

  it('defect 6: told to retire while the answer is pending: ERR_FDBROKER_READY_REFUSED, and the late ack changes nothing', () => {
    const m = machine();
    run(m, [{ type: 'ready-requested' }]);
    expect(types(m.step({ type: 'retire', by: 6, reason: 'newer' }, 0))).toEqual(['emit:retire', 'settle:ERR_FDBROKER_READY_REFUSED', 'start-retiring']);
    expect(types(m.step({ type: 'ready-acked' }, 0))).toEqual([]);
    expect(m.state.phase).toBe('retiring');
    expect(types(m.step({ type: 'ready-requested' }, 0))).toEqual(['settle:ERR_FDBROKER_READY_REFUSED']);
  });

  it('a lost broker does not settle it: the rejoin claims "ready" and its ack settles it (ok or refused)', () => {
    for (const [ackState, settled] of [['ready', 'settle:ok'], ['retiring', 'settle:ERR_FDBROKER_READY_REFUSED']] as const) {
      const m = machine();
      run(m, [{ type: 'ready-requested' }]);
      expect(types(m.step({ type: 'connection-lost' }, 0))).toEqual(['emit:brokerLost', 'schedule-rejoin']);
      expect(m.state.readyPending).toBe(true);
      expect(types(m.step({ type: 'ready-requested' }, 0))).toEqual([]);
      run(m, [{ type: 'rejoin-timer' }]);
      const sent = m.step({ type: 'rejoin-connected', features: ALL }, 0);
      expect(sent).toEqual([{ type: 'send-rejoin', claim: { generation: 5, epoch: 2, state: 'ready', standby: 5000, heartbeat: true } }]);
      expect(types(m.step({ type: 'rejoined', number: 1, state: ackState, epoch: 2 }, 0))).toEqual(['use-new-connection', 'emit:rejoin', settled]);
      expect(m.state.number).toBe(1);
    }
  });

  it('a ready asked while the broker is lost is not sent: the rejoin claims it', () => {
    const m = machine();
    run(m, [{ type: 'connection-lost' }]);
    expect(types(m.step({ type: 'ready-requested' }, 0))).toEqual([]);
    run(m, [{ type: 'rejoin-timer' }]);
    expect(m.step({ type: 'rejoin-connected', features: ALL }, 0)[0]).toMatchObject({ claim: { state: 'ready' } });
  });
});

describe('retire and standby', () => {
  it('a ready generation told retire with a window stands by: stops accepting, arms window + grace', () => {
    const m = machine();
    run(m, [{ type: 'ready-requested' }, { type: 'ready-acked' }]);
    expect(m.step({ type: 'retire', by: 6, standby: 1000, reason: 'newer' }, 100)).toEqual([
      { type: 'emit', event: 'retire', by: 6 }, { type: 'stop-accepting' }, { type: 'arm-standby-timer', delayMs: 3000 },
    ]);
    expect(m.state.standbyUntil).toBe(1100);
  });

  it('without a window, as rolled back (reason failed), or starting: retires and drains at once', () => {
    for (const retire of [{ by: 6 }, { by: 6, standby: 1000, reason: 'failed' as const }]) {
      const m = machine();
      run(m, [{ type: 'ready-requested' }, { type: 'ready-acked' }]);
      expect(types(m.step({ type: 'retire', ...retire }, 0))).toEqual(['emit:retire', 'start-retiring']);
    }
    const starting = machine();
    expect(starting.step({ type: 'retire', by: 6, standby: 1000 }, 0)).toContainEqual({ type: 'start-retiring', drain: true });
  });

  it('release ends the standby; so does the window passing; a retiring generation ignores later notices', () => {
    const a = standing();
    expect(types(a.step({ type: 'release' }, 10))).toEqual(['clear-standby-timer', 'start-retiring']);
    expect(types(run(a, [{ type: 'retire', by: 7 }, { type: 'resume', failed: 6, reason: 'left' }, { type: 'release' }]))).toEqual([]);
    const b = standing();
    expect(types(b.step({ type: 'standby-timer' }, 3000))).toEqual(['start-retiring']);
  });

  it("retireMode 'app': retire only reports (no drain, no standby); resume makes it ready again", () => {
    const m = machine({ retireMode: 'app' });
    run(m, [{ type: 'ready-requested' }, { type: 'ready-acked' }]);
    expect(m.step({ type: 'retire', by: 6, standby: 1000 }, 0)).toEqual([{ type: 'emit', event: 'retire', by: 6 }, { type: 'start-retiring', drain: false }]);
    expect(m.step({ type: 'resume', failed: 6, reason: 'left' }, 0)).toEqual([{ type: 'emit', event: 'resume', failed: 6, reason: 'left' }]);
    expect(m.state.phase).toBe('ready');
  });
});

describe('resume (invariant 2: nothing is dropped while resuming)', () => {
  it('resume re-adopts; readopt-done makes it ready and emits resume', () => {
    const m = standing();
    expect(types(m.step({ type: 'resume', failed: 6, reason: 'left' }, 10))).toEqual(['clear-standby-timer', 'readopt']);
    expect(m.state.phase).toBe('resuming');
    expect(m.step({ type: 'readopt-done' }, 20)).toEqual([{ type: 'emit', event: 'resume', failed: 6, reason: 'left' }]);
    expect(m.state.phase).toBe('ready');
  });

  it('defect 2: told resume then retire (no window) while re-adopting: ends retiring once the re-adopt completes', () => {
    const m = standing();
    run(m, [{ type: 'resume', failed: 6, reason: 'left' }]);
    expect(types(m.step({ type: 'retire', by: 7, reason: 'newer' }, 10))).toEqual([]);
    expect(m.state.queued).toHaveLength(1);
    expect(types(m.step({ type: 'readopt-done' }, 20))).toEqual(['emit:resume', 'emit:retire', 'start-retiring']);
    expect(m.state.phase).toBe('retiring');
  });

  it('defect 2: resume, retire with a window, release while re-adopting: stands by again, then ends retiring', () => {
    const m = standing();
    run(m, [{ type: 'resume', failed: 6, reason: 'left' }, { type: 'retire', by: 7, standby: 500, reason: 'newer' }, { type: 'release' }], 10);
    expect(types(m.step({ type: 'readopt-done' }, 20))).toEqual([
      'emit:resume', 'emit:retire', 'stop-accepting', 'arm-standby-timer', 'clear-standby-timer', 'start-retiring',
    ]);
    expect(m.state.phase).toBe('retiring');
  });

  it('a re-adopt that fails ends retiring; queued notices are dropped with it', () => {
    const m = standing();
    run(m, [{ type: 'resume', failed: 6, reason: 'left' }, { type: 'retire', by: 7 }]);
    expect(types(m.step({ type: 'readopt-failed' }, 10))).toEqual(['start-retiring']);
    expect(m.state.queued).toEqual([]);
  });

  it('the broker lost while re-adopting: decided by the re-adopt (done: serves on and rejoins; failed: retires)', () => {
    const ok = standing();
    run(ok, [{ type: 'resume', failed: 6, reason: 'left' }]);
    expect(types(ok.step({ type: 'connection-lost' }, 10))).toEqual([]);
    expect(types(ok.step({ type: 'readopt-done' }, 20))).toEqual(['emit:resume', 'emit:brokerLost', 'schedule-rejoin']);
    const bad = standing();
    run(bad, [{ type: 'resume', failed: 6, reason: 'left' }, { type: 'connection-lost' }]);
    expect(types(bad.step({ type: 'readopt-failed' }, 20))).toEqual(['start-retiring']);
  });
});

describe('a lost broker during standby (invariant 3)', () => {
  it('defect 7: with "standby-rejoin" it keeps standing by, rejoins with the window left, and the ack "standby" keeps it', () => {
    const m = standing();
    expect(types(m.step({ type: 'connection-lost' }, 200))).toEqual(['emit:brokerLost', 'schedule-rejoin']);
    expect(m.state.phase).toBe('standby');
    run(m, [{ type: 'rejoin-timer' }], 400);
    expect(m.step({ type: 'rejoin-connected', features: ALL }, 700)).toEqual([
      { type: 'send-rejoin', claim: { generation: 5, epoch: 2, state: 'standby', standbyLeft: 300, standby: 5000, heartbeat: true } },
    ]);
    expect(types(m.step({ type: 'rejoined', number: 5, state: 'standby', epoch: 2 }, 710))).toEqual(['use-new-connection', 'emit:rejoin']);
    expect(m.state.phase).toBe('standby');
    // The restarted broker can still resume it.
    expect(types(m.step({ type: 'resume', failed: 6, reason: 'left' }, 800))).toEqual(['clear-standby-timer', 'readopt']);
  });

  it('defect 7: the window ends before a broker answers: it retires and stops rejoining', () => {
    const m = standing();
    run(m, [{ type: 'connection-lost' }], 200);
    expect(types(m.step({ type: 'standby-timer' }, 3000))).toEqual(['start-retiring', 'cancel-rejoin']);
    expect(m.state.rejoin).toBe('idle');
    // A connection that comes back anyway is dropped.
    expect(types(m.step({ type: 'rejoin-connected', features: ALL }, 3100))).toEqual(['drop-new-connection']);
  });

  it('against an older broker (no "standby-rejoin"): retires at once, as before the feature', () => {
    const m = standing({}, OLD);
    expect(types(m.step({ type: 'connection-lost' }, 200))).toEqual(['clear-standby-timer', 'start-retiring']);
  });

  it('a restarted broker without the feature: the standby is given up (retires), the new connection dropped', () => {
    const m = standing();
    run(m, [{ type: 'connection-lost' }, { type: 'rejoin-timer' }], 200);
    expect(types(m.step({ type: 'rejoin-connected', features: OLD }, 300))).toEqual(['clear-standby-timer', 'drop-new-connection', 'start-retiring']);
  });

  it('the rejoin ack says what the window became: "ready" resumes (re-adopt), "retiring" drains', () => {
    for (const [state, effects] of [['ready', ['clear-standby-timer', 'readopt']], ['retiring', ['clear-standby-timer', 'start-retiring']]] as const) {
      const m = standing();
      run(m, [{ type: 'connection-lost' }, { type: 'rejoin-timer' }, { type: 'rejoin-connected', features: ALL }], 200);
      expect(types(m.step({ type: 'rejoined', number: 5, state }, 300)).slice(2)).toEqual(effects);
    }
  });

  it('moved (a takeover) during standby: rejoins at once, no brokerLost; an older successor is sent "retiring" and the standby goes on', () => {
    const m = standing({}, OLD);
    run(m, [{ type: 'moved' }]);
    expect(m.step({ type: 'connection-lost' }, 200)).toEqual([{ type: 'schedule-rejoin', delayMs: 0 }]);
    run(m, [{ type: 'rejoin-timer' }], 200);
    expect(m.step({ type: 'rejoin-connected', features: OLD }, 210)[0]).toMatchObject({ type: 'send-rejoin', claim: { state: 'retiring' } });
    run(m, [{ type: 'rejoined', number: 5, state: 'standby' }], 220);
    expect(m.state.phase).toBe('standby');
  });
});

describe('rejoin (invariants 4 and 6)', () => {
  it('keeps the epoch the broker gave; a rejoin ack with another epoch replaces it, one without keeps it', () => {
    const m = machine({}, ALL, 9, 4);
    run(m, [{ type: 'connection-lost' }, { type: 'rejoin-timer' }]);
    expect(m.step({ type: 'rejoin-connected', features: ALL }, 0)[0]).toMatchObject({ claim: { generation: 9, epoch: 4 } });
    run(m, [{ type: 'rejoined', number: 9, state: 'starting' }]);
    expect(m.state.epoch).toBe(4);
    run(m, [{ type: 'connection-lost' }, { type: 'rejoin-timer' }, { type: 'rejoin-connected', features: ALL }, { type: 'rejoined', number: 2, state: 'starting', epoch: 7 }]);
    expect(m.state).toMatchObject({ number: 2, epoch: 7 });
  });

  it('backs off: 200, 400, 800, ... up to 2000 ms', () => {
    const m = machine();
    const delays: number[] = [];
    const grab = (e: GenerationEffect[]) => { for (const x of e) if (x.type === 'schedule-rejoin') delays.push(x.delayMs); };
    grab(m.step({ type: 'connection-lost' }, 0));
    for (let i = 0; i < 6; i++) grab(run(m, [{ type: 'rejoin-timer' }, { type: 'rejoin-failed' }]));
    expect(delays).toEqual([200, 400, 800, 1600, 2000, 2000, 2000]);
  });

  it('a retiring generation does not rejoin a lost broker, but does rejoin after "moved" (claiming retiring)', () => {
    const m = machine();
    run(m, [{ type: 'retire', by: 6 }]);
    expect(types(m.step({ type: 'connection-lost' }, 0))).toEqual([]);
    const moved = machine();
    run(moved, [{ type: 'retire', by: 6 }, { type: 'moved' }]);
    expect(moved.step({ type: 'connection-lost' }, 0)).toEqual([{ type: 'schedule-rejoin', delayMs: 0 }]);
    run(moved, [{ type: 'rejoin-timer' }]);
    expect(moved.step({ type: 'rejoin-connected', features: ALL }, 0)[0]).toMatchObject({ claim: { state: 'retiring' } });
  });

  it('closed: timers cancelled, a new connection dropped, late answers ignored', () => {
    const m = machine();
    run(m, [{ type: 'connection-lost' }]);
    expect(types(m.step({ type: 'close', planned: true }, 0))).toEqual(['cancel-rejoin']);
    expect(types(run(m, [{ type: 'rejoin-timer' }, { type: 'resume', failed: 1, reason: 'left' }, { type: 'retire', by: 2 }]))).toEqual([]);
    expect(types(m.step({ type: 'rejoined', number: 5, state: 'ready' }, 0))).toEqual(['drop-new-connection']);
  });
});

describe('planned stop and heartbeat (invariants 5 and 7)', () => {
  it('"leaving" only on a planned close, only to a broker listing it, never when retiring', () => {
    expect(types(machine().step({ type: 'close', planned: true }, 0))).toEqual(['send-leaving']);
    expect(types(machine().step({ type: 'close', planned: false }, 0))).toEqual(['close-connection']);
    expect(types(machine({}, OLD).step({ type: 'close', planned: true }, 0))).toEqual(['close-connection']);
    const retiring = machine();
    run(retiring, [{ type: 'retire', by: 6 }]);
    expect(types(retiring.step({ type: 'close', planned: true }, 0))).toEqual(['close-connection']);
  });

  it('a drain the app started itself is a planned stop; told to retire meanwhile, it is not', () => {
    const self = machine();
    run(self, [{ type: 'drain-started' }]);
    expect(types(self.step({ type: 'close', planned: false }, 0))).toEqual(['send-leaving']);
    const told = machine();
    run(told, [{ type: 'drain-started' }, { type: 'retire', by: 7 }]);
    expect(types(told.step({ type: 'close', planned: false }, 0))).toEqual(['close-connection']);
    // The model's shrunk failure (spare, settle, deployReady, stop): standing by, a planned close says no "leaving".
    const standing = machine();
    run(standing, [{ type: 'ready-requested' }, { type: 'ready-acked' }, { type: 'retire', by: 6, standby: 5000 }]);
    expect(standing.state.phase).toBe('standby');
    expect(types(standing.step({ type: 'close', planned: true }, 0))).toEqual(['clear-standby-timer', 'close-connection']);
    // A retire queued behind a resume counts as told too: an app drain meanwhile is no planned stop of its own.
    const queued = machine();
    run(queued, [{ type: 'ready-requested' }, { type: 'ready-acked' }, { type: 'retire', by: 6, standby: 5000 }, { type: 'resume', failed: 6, reason: 'left' },
      { type: 'retire', by: 7, standby: 5000 }, { type: 'drain-started' }, { type: 'readopt-done' }]);
    expect(types(queued.step({ type: 'close', planned: false }, 0))).toEqual(['close-connection']);
  });

  it('pings are answered while connected; the claim carries the configured heartbeat', () => {
    const m = machine({ heartbeat: false, standbyMs: 0 });
    expect(m.step({ type: 'ping', id: 3 }, 0)).toEqual([{ type: 'send-pong', id: 3 }]);
    run(m, [{ type: 'connection-lost' }]);
    expect(m.step({ type: 'ping', id: 4 }, 0)).toEqual([]);
    run(m, [{ type: 'rejoin-timer' }]);
    expect(m.step({ type: 'rejoin-connected', features: ALL }, 0)[0]).toMatchObject({ claim: { heartbeat: false, standby: 0 } });
  });
});

describe('self-broker mode (embedded)', () => {
  it('the first process (no predecessor) asks its own broker: send-ready although not connected', () => {
    const m = new GenerationMachine({ standbyMs: 0, heartbeat: true, retireMode: 'drain', embedded: true });
    m.step({ type: 'joined', number: 1, epoch: 0, features: [], connected: false }, 0);
    expect(types(m.step({ type: 'ready-requested' }, 0))).toEqual(['send-ready']);
  });

  it("a successor whose predecessor's connection ends while ready is pending asks its own broker; once ready the end is no loss", () => {
    const m = new GenerationMachine({ standbyMs: 0, heartbeat: true, retireMode: 'drain', embedded: true });
    m.step({ type: 'joined', number: 2, epoch: 0, features: OLD }, 0);
    run(m, [{ type: 'ready-requested' }]);
    expect(types(m.step({ type: 'connection-lost' }, 0))).toEqual(['send-ready']);
    expect(types(m.step({ type: 'ready-acked' }, 0))).toEqual(['settle:ok']);
  });
});

describe('a ready refused because the process holds none of its listeners', () => {
  it('the retire notice (read before the error reply) settles the ready with ERR_FDBROKER_NOT_HOLDING, once, and the generation drains', () => {
    const m = machine();
    run(m, [{ type: 'ready-requested' }]);
    const out = m.step({ type: 'retire', by: 4, reason: 'not-holding' }, 0);
    expect(types(out)).toContain('settle:ERR_FDBROKER_NOT_HOLDING');
    expect(types(out)).toContain('start-retiring');
    expect(types(m.step({ type: 'ready-refused', code: 'ERR_FDBROKER_NOT_HOLDING', message: 'x' }, 0))).toEqual([]);
    expect(m.state.phase).toBe('retiring');
  });
});
