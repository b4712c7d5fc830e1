// Two faults at once (docs/FAULTS.md, "Invariants"): the races of the
// handover policy that a model-based test found or that were reported, each
// on real processes: brokers, apps and `serve --takeover`, real sockets and
// real HTTP on 127.0.0.1 under clients that never retry.
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, cleanup, FIXTURES, loadLoop, Raw, run, sleep, startBroker, statusOf, tmpDir, waitText, type Proc } from '../helpers';

/** The test preload that sets fault-injection pauses from FDBROKER_TEST_* (test/fixtures/seams.js). */
const SEAMS = path.join(__dirname, '..', 'fixtures', 'seams.js');

afterEach(cleanup);

const GEN_APP = path.join(FIXTURES, 'gen-app.js');
const CLIENT_TIMEOUT_MS = 8000;

function startGen(sock: string, env: NodeJS.ProcessEnv = {}): Proc {
  return run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: sock, ...env } });
}

describe('after a broker restart', () => {
  it('a fresh deploy that joined the restarted broker first is not retired by the old generation rejoining later as ready (it has a lower rank, whatever its number); 0 failed', async () => {
    const dir = tmpDir();
    const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const expose = path.join(dir, 'keeper.sock');
    // A process that only holds the listener (never serves), so the broker can be restarted while the old version is stopped.
    const keeper = run(process.execPath, [path.join(FIXTURES, 'keeper.js')], { env: { FDBROKER_SOCK: broker.sock, EXPOSE: expose } });
    await keeper.waitFor(/^exposed /m);
    const old = startGen(broker.sock);
    await old.waitFor(/^ready \d+ gen 2$/m);
    const load = loadLoop(broker.ports.http!, { concurrency: 6, timeoutMs: CLIENT_TIMEOUT_MS, maxMs: 60_000 });
    let fresh: Proc;
    try {
      await sleep(300);
      process.kill(broker.pid, 'SIGKILL');
      // Hold the old generation so that the fresh one joins the restarted broker before it rejoins.
      process.kill(old.pid, 'SIGSTOP');
      const next = run(process.execPath, [CLI, 'serve', broker.sock, '--adopt-from', expose, '--quiet']);
      await next.waitFor(/^fdbroker: ready on /m);
      // The fresh one joins first and says ready only after the old one has rejoined as ready (the order that retired the fresh one).
      fresh = startGen(broker.sock, { READY_DELAY_MS: '2500' });
      for (let t = 0; t < 200 && !(await statusOf(broker.sock)).generations.some((g) => g.pid === fresh.pid); t++) await sleep(25);
      process.kill(old.pid, 'SIGCONT');
      await old.waitFor(/^rejoin \d+ gen \d+ ready$/m, 10_000);
      const m = await fresh.waitFor(/^ready \d+ gen (\d+)$/m, 10_000);
      const freshNumber = Number(m[1]);
      await old.waitFor(new RegExp(`^retire \\d+ by ${freshNumber}$`, 'm'), 10_000);
      await old.waitFor(/^drained \d+ forced 0$/m, 20_000);
      const s = await statusOf(broker.sock);
      expect(s.generations.filter((g) => g.state === 'ready').map((g) => g.pid)).toEqual([fresh.pid]);
      expect(fresh.stdout()).not.toMatch(/^retire /m);
      await sleep(300);
    } finally {
      try { process.kill(old.pid, 'SIGCONT'); } catch { /* gone */ }
      await load.stop();
    }
    console.info(`fresh deploy before the old generation's rejoin: ${JSON.stringify({ ok: load.stats.ok, failed: load.stats.failed, byKind: load.stats.byKind })}`);
    expect(load.stats.failed).toBe(0);
  }, 60_000);
});

describe('a rejoin claim cannot wedge numbering', () => {
  it('a rejoin with generation 2^53-1 is a protocol error; one with the largest number (2^31-1) is kept, and later joins still get unique numbers', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const hello = async () => {
      const r = await Raw.connect(broker.sock);
      r.send({ type: 'hello', versions: [1] });
      expect((await r.next())!.msg.type).toBe('welcome');
      return r;
    };
    const bad = await hello();
    bad.send({ type: 'rejoin', id: 1, generation: Number.MAX_SAFE_INTEGER, state: 'ready', names: ['http'] });
    expect((await bad.next())!.msg).toMatchObject({ type: 'error', code: 'ERR_FDBROKER_PROTOCOL' });
    bad.close();
    const top = await hello();
    top.send({ type: 'rejoin', id: 1, generation: 2 ** 31 - 1, state: 'ready', names: ['http'] });
    expect((await top.next())!.msg).toMatchObject({ type: 'ack', generation: 2 ** 31 - 1, state: 'ready' });
    const numbers: number[] = [];
    const apps: Proc[] = [];
    for (let i = 0; i < 3; i++) {
      const app = startGen(broker.sock);
      apps.push(app);
      const m = await app.waitFor(/^ready \d+ gen (\d+)$/m);
      numbers.push(Number(m[1]));
    }
    expect(new Set(numbers).size).toBe(3);
    for (const n of numbers) expect(n).toBeLessThanOrEqual(2 ** 31 - 1);
    // The newest join serves: the top-numbered rejoiner was retired by the first fresh one.
    expect((await top.next())!.msg).toMatchObject({ type: 'retire', generation: 2 ** 31 - 1 });
    const s = await statusOf(broker.sock);
    expect(s.generations.filter((g) => g.state === 'ready').map((g) => g.pid)).toEqual([apps[2]!.pid]);
    top.close();
  }, 30_000);
});

describe('a rollback during a broker takeover', () => {
  it('the new version dies while a successor holds the table: the successor resumes the standby one; nobody is left not serving; 0 refused', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--standby', '5000']);
    const a = startGen(broker.sock);
    await a.waitFor(/^ready \d+ gen 1$/m);
    const b = startGen(broker.sock);
    await b.waitFor(/^ready \d+ gen 2$/m);
    await a.waitFor(/^retire \d+ by 2$/m);
    const load = loadLoop(broker.ports.http!, { concurrency: 6, keepAlive: false, timeoutMs: CLIENT_TIMEOUT_MS, maxMs: 60_000 });
    try {
      await sleep(200);
      // The successor holds 1.5 s after its rename, before it commits (test-only hook).
      const successor = run(process.execPath, ['-r', SEAMS, CLI, 'serve', broker.sock, '--takeover'], { env: { FDBROKER_TEST_TAKEOVER_COMMIT_DELAY_MS: '1500' } });
      await broker.waitFor(/^fdbroker: takeover by pid \d+ /m);
      process.kill(b.pid, 'SIGKILL');
      await successor.waitFor(/^fdbroker: ready on /m, 15_000);
      await a.waitFor(/^resume \d+ failed 2$/m, 15_000);
      expect((await broker.exited).code).toBe(0);
      await waitText(() => JSON.stringify(load.stats.servedBy), new RegExp(`"${a.pid}"`), 10_000);
      const s = await statusOf(broker.sock);
      expect(s.broker.pid).toBe(successor.pid);
      expect(s.generations.map((g) => [g.number, g.state])).toEqual([[1, 'ready']]);
      const before = load.stats.servedBy[String(a.pid)] ?? 0;
      await sleep(1000);
      expect(load.stats.servedBy[String(a.pid)] ?? 0).toBeGreaterThan(before);
      expect(a.stdout()).not.toMatch(/^drained /m);
    } finally {
      await load.stop();
    }
    console.info(`rollback during a takeover: ${JSON.stringify({ ok: load.stats.ok, failed: load.stats.failed, byKind: load.stats.byKind })}`);
    // Only what the SIGKILLed process had accepted may fail (at most one per client).
    expect(load.stats.failed).toBeLessThanOrEqual(6);
    for (const k of Object.keys(load.stats.byKind)) expect(['ECONNRESET', 'socket hang up']).toContain(k);
  }, 60_000);
});

describe('a broker restart inside the standby window', () => {
  it('the standby version keeps standing by, rejoins with its window, and resumes when the new version then dies; connections wait in the queue, none refused', async () => {
    const dir = tmpDir();
    const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', '8000']);
    const expose = path.join(dir, 'keeper.sock');
    const keeper = run(process.execPath, [path.join(FIXTURES, 'keeper.js')], { env: { FDBROKER_SOCK: broker.sock, EXPOSE: expose } });
    await keeper.waitFor(/^exposed /m);
    const a = startGen(broker.sock, { STANDBY: '8000' });
    await a.waitFor(/^ready \d+ gen 2$/m);
    const b = startGen(broker.sock);
    await b.waitFor(/^ready \d+ gen 3$/m);
    await a.waitFor(/^retire \d+ by 3$/m);
    const load = loadLoop(broker.ports.http!, { concurrency: 6, keepAlive: false, timeoutMs: CLIENT_TIMEOUT_MS, maxMs: 60_000 });
    try {
      await sleep(200);
      process.kill(broker.pid, 'SIGKILL');
      const next = run(process.execPath, [CLI, 'serve', broker.sock, '--adopt-from', expose, '--quiet', '--standby', '8000']);
      await next.waitFor(/^fdbroker: ready on /m);
      await a.waitFor(/^rejoin \d+ gen 2 standby$/m, 10_000);
      await b.waitFor(/^rejoin \d+ gen 3 ready$/m, 10_000);
      // The new version dies within what is left of the window: the old one serves again.
      process.kill(b.pid, 'SIGKILL');
      await a.waitFor(/^resume \d+ failed 3$/m, 10_000);
      const before = load.stats.servedBy[String(a.pid)] ?? 0;
      await sleep(1000);
      expect(load.stats.servedBy[String(a.pid)] ?? 0).toBeGreaterThan(before);
      expect(a.stdout()).not.toMatch(/^drained /m);
      const s = await statusOf(broker.sock);
      expect(s.generations.filter((g) => g.state === 'ready').map((g) => g.pid)).toEqual([a.pid]);
    } finally {
      await load.stop();
    }
    console.info(`standby across a broker restart: ${JSON.stringify({ ok: load.stats.ok, failed: load.stats.failed, byKind: load.stats.byKind })}`);
    expect(load.stats.byKind.ECONNREFUSED ?? 0).toBe(0);
    // Only what the SIGKILLed version had accepted may fail.
    expect(load.stats.failed).toBeLessThanOrEqual(6);
  }, 60_000);
});
