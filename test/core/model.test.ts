// Model-based test of the handover policy: the broker's pure core and the
// client's pure generation machine, wired in memory (test/core/world.ts),
// driven by random command sequences (fast-check's fc.commands): deploys,
// readies, crashes, planned stops, apps retiring themselves, hangs, drains, re-adopts, message delays,
// broker restarts, takeovers started / committed / aborted, and time.
// After every command the structural invariants are checked; a Settle
// command drives the world to quiescence and checks what users are promised
// (docs/FAULTS.md, "Invariants"). A failure shrinks to a short sequence and
// prints the seed and path to replay it: FDBROKER_MODEL_SEED=... FDBROKER_MODEL_PATH=...
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_GENERATION } from '../../src/core/handover-core';
import { T, World, type Proc } from './world';

type Cmd = fc.Command<object, World>;
/** Instance slots the commands use (run --instances 2). */
const SLOTS = [0, 1];

/** Structural invariants, after every command. */
function checkStructure(w: World): void {
  for (const b of w.brokers) {
    if (!b.alive && b !== w.successor?.from) continue;
    const gens = b.core.list();
    for (const slot of SLOTS) {
      const ready = gens.filter((g) => g.state === 'ready' && (g.slot ?? 0) === slot);
      if (ready.length > 1) throw new Error(`broker ${b.id}: ${ready.length} generations ready in slot ${slot} (${ready.map((g) => g.number).join(', ')})`);
    }
    const numbers = new Set<number>();
    const ranks = new Set<string>();
    for (const g of gens) {
      if (!(g.number >= 1 && g.number <= MAX_GENERATION)) throw new Error(`broker ${b.id}: generation number ${g.number} out of range`);
      if (numbers.has(g.number)) throw new Error(`broker ${b.id}: number ${g.number} twice`);
      numbers.add(g.number);
      const r = JSON.stringify(g.rank);
      if (ranks.has(r)) throw new Error(`broker ${b.id}: rank ${r} twice`);
      ranks.add(r);
      if (g.state === 'standby' && g.standbyUntil === undefined) throw new Error(`broker ${b.id}: ${g.number} stands by without a window`);
      if (g.spare && (g.state !== 'starting' || g.readyOverdue)) throw new Error(`broker ${b.id}: spare ${g.number} is ${g.state}${g.readyOverdue ? ', overdue' : ''}`);
      if (g.state === 'ready' && g.holdCheck?.result === 'missing') throw new Error(`broker ${b.id}: ${g.number} is ready but was found not holding its listeners`);
      if (g.holdCheck?.result === 'missing' && g.state !== 'failed') throw new Error(`broker ${b.id}: ${g.number} was found not holding, and is ${g.state}`);
    }
    // A rejoiner from an epoch this broker never gave out (a broker before a restart) never outranks a fresh join.
    const fresh = gens.filter((g) => !g.rejoined && g.clientId !== 0);
    for (const r of gens.filter((g) => g.rejoined && g.rank![0] < b.core.firstEpoch)) {
      for (const f of fresh) {
        if (r.rank![0] > f.rank![0] || (r.rank![0] === f.rank![0] && r.rank![1] > f.rank![1])) {
          throw new Error(`broker ${b.id}: rejoiner ${r.number} ${JSON.stringify(r.rank)} outranks fresh ${f.number} ${JSON.stringify(f.rank)}`);
        }
      }
    }
    for (const g of gens) {
      if (g.rank![0] > b.core.lastEpochGiven) throw new Error(`broker ${b.id}: generation ${g.number} ranks in epoch ${g.rank![0]}, never given out`);
    }
  }
}

function quiet(w: World): boolean {
  return w.pending().length === 0 && !w.successor && w.procs.every((p) => !p.alive
    || (!p.readopting && !p.draining && p.standbyTimerAt === undefined && p.rejoinAt === undefined && p.newConn === undefined
      && p.machine.state.phase !== 'starting'));
}

/**
 * Drives the world to quiescence the way a deploy ends: hung processes are
 * killed, every message is delivered, starting processes say ready (one
 * refused exits, as the README's snippet does), re-adopts and drains
 * finish, a takeover in flight commits, and time passes. Then: exactly one
 * process accepts, the one the broker says is ready, or none when nobody
 * that could serve is left; every ready request settled.
 */
function settle(w: World): void {
  for (const p of w.procs) if (p.alive && p.hung) w.crash(p);
  const mustServe = SLOTS.map((slot) => w.procs.some((p) => p.alive && p.slot === slot && ((!p.released && p.machine.state.phase === 'ready') || p.machine.state.phase === 'resuming'
    || (p.machine.state.phase === 'standby' && !p.released && (p.machine.state.standbyUntil ?? 0) - w.now >= T.rejoinGraceMs * 2))));
  if (w.successor) w.commitTakeover();
  for (let round = 0; round < 2_000 && !quiet(w); round++) {
    for (let i = 0; i < 1_000 && w.deliver(0); i++) { /* deliver everything */ }
    for (const p of w.procs) {
      if (!p.alive) continue;
      if (p.machine.state.number === 0 && !p.conn && !p.newConn) w.crash(p); // its join was lost: start() rejects, the app exits
      if (p.readySettled === 'refused' && p.machine.state.phase === 'starting') w.step(p, { type: 'drain-started' });
      if (p.machine.state.phase === 'starting' && p.machine.state.number !== 0) w.askReady(p);
      if (p.readopting) w.finishReadopt(p, true);
      if (p.draining) w.finishDrain(p);
    }
    w.advance(10);
  }
  if (!quiet(w)) throw new Error('the world did not settle');
  const b = w.current;
  // Per instance slot: exactly the broker's ready generation of the slot accepts.
  for (const slot of SLOTS) {
    const accepting = w.accepting().filter((p) => p.slot === slot);
    const n = b.core.list().find((g) => g.state === 'ready' && (g.slot ?? 0) === slot)?.number ?? 0;
    const owner = n ? w.procOf(b, n) : undefined;
    if (accepting.length > 1) throw new Error(`after settling, ${accepting.length} processes accept in slot ${slot}: ${accepting.map((p) => p.pid).join(', ')}`);
    if (accepting.length === 1 && accepting[0] !== owner) {
      throw new Error(`pid ${accepting[0]!.pid} accepts in slot ${slot} but the broker's ready generation there is ${n} (pid ${owner?.pid ?? '-'})`);
    }
    if (owner && owner.alive && accepting.length === 0) throw new Error(`generation ${n} (pid ${owner.pid}) is ready but does not accept`);
    if (mustServe[slot] && accepting.length === 0) throw new Error(`a process that served or stood by with its window open was alive in slot ${slot}, and after settling nobody accepts there`);
  }
  for (const p of w.procs) {
    if (p.alive && p.readyAsked && p.readySettled === undefined) throw new Error(`pid ${p.pid}: its ready() never settled`);
  }
}

const pick = (w: World, i: number): Proc | undefined => (w.procs.length === 0 ? undefined : w.procs[i % w.procs.length]);

function command(name: string, fn: (w: World) => void): Cmd {
  return {
    check: () => true,
    run: (_m, w) => {
      w.log.push(name);
      fn(w);
      checkStructure(w);
    },
    toString: () => name,
  };
}

const alive = (w: World) => w.procs.filter((p) => p.alive).length;
const deployReady = command('deployReady', (w) => {
  if (alive(w) >= 8) return;
  w.deploy();
  w.deliverAll();
  w.askReady(w.procs[w.procs.length - 1]!);
  w.deliverAll();
});
const commands = [
  fc.constant(null).map(() => command('deploy', (w) => { if (alive(w) < 8) w.deploy(); })),
  fc.constant(null).map(() => command('spare', (w) => { if (alive(w) < 8) w.deploy(true); })),
  fc.constant(null).map(() => command('deploySlot1', (w) => { if (alive(w) < 8) w.deploy(false, 1); })),
  fc.constant(null).map(() => deployReady),
  fc.constant(null).map(() => deployReady),
  fc.constant(null).map(() => command('deliverAll', (w) => w.deliverAll())),
  fc.constant(null).map(() => command('deliverAll', (w) => w.deliverAll())),
  fc.constant(null).map(() => command('restartBrokerClockBack', (w) => { w.clockBack(); w.restartBroker(); })),
  fc.nat(50).map((i) => command(`deliver(${i})`, (w) => { w.deliver(i); })),
  fc.nat(50).map((i) => command(`deliver(${i})`, (w) => { w.deliver(i); })),
  fc.nat(50).map((i) => command(`deliver(${i})`, (w) => { w.deliver(i); })),
  fc.nat(20).map((i) => command(`ready(${i})`, (w) => { const p = pick(w, i); if (p) w.askReady(p); })),
  fc.nat(20).map((i) => command(`crash(${i})`, (w) => { const p = pick(w, i); if (p) w.crash(p); })),
  // It binds a socket of its own before it says ready: its ready is refused (not-holding) and it is told to retire.
  fc.nat(20).map((i) => command(`misbind(${i})`, (w) => { const p = pick(w, i); if (p && !p.readyAsked) p.misbound = true; })),
  fc.nat(20).map((i) => command(`stop(${i})`, (w) => { const p = pick(w, i); if (p) w.stop(p); })),
  fc.nat(20).map((i) => command(`hang(${i})`, (w) => { const p = pick(w, i); if (p) w.hang(p); })),
  fc.nat(20).map((i) => command(`drain(${i})`, (w) => { const p = pick(w, i); if (p) w.finishDrain(p); })),
  // The app retires itself (retire() on its own SIGTERM): a planned stop unless it was told to retire.
  fc.nat(20).map((i) => command(`selfRetire(${i})`, (w) => { const p = pick(w, i); if (p) w.selfRetire(p); })),
  fc.tuple(fc.nat(20), fc.boolean()).map(([i, ok]) => command(`readopt(${i}, ${ok})`, (w) => { const p = pick(w, i); if (p) w.finishReadopt(p, ok); })),
  fc.integer({ min: 1, max: 300 }).map((ms) => command(`advance(${ms})`, (w) => w.advance(ms))),
  fc.constant(null).map(() => command('stall', (w) => w.sampleStall())),
  fc.constant(null).map(() => command('restartBroker', (w) => w.restartBroker())),
  fc.constant(null).map(() => command('takeoverStart', (w) => w.startTakeover())),
  fc.constant(null).map(() => command('takeoverCommit', (w) => w.commitTakeover())),
  fc.constant(null).map(() => command('takeoverAbort', (w) => w.abortTakeover())),
  fc.constant(null).map(() => command('settle', (w) => settle(w))),
];

const RUNS = Number(process.env.FDBROKER_MODEL_RUNS ?? 3_000);
const SEED = process.env.FDBROKER_MODEL_SEED !== undefined ? Number(process.env.FDBROKER_MODEL_SEED) : 20261207;
const PATH = process.env.FDBROKER_MODEL_PATH;

describe('the handover policy, model-based (broker core + generation machine in memory)', () => {
  it(`keeps its invariants over ${RUNS} random command sequences (seed ${SEED})`, () => {
    let steps = 0;
    fc.assert(
      fc.property(fc.commands(commands, { maxCommands: 60 }), (cmds) => {
        const w = new World();
        fc.modelRun(() => ({ model: {}, real: w }), cmds);
        settle(w);
        steps += w.log.length;
      }),
      { numRuns: RUNS, seed: SEED, ...(PATH ? { path: PATH } : {}), endOnFailure: false },
    );
    expect(steps).toBeGreaterThan(RUNS);
  });
});
