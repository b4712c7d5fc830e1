// The handover under faults (docs/FAULTS.md): a new version that dies, hangs,
// or stops accepting right after it said ready; no standby; the broker
// restarted between join and ready; two successors at once in self-broker
// mode. Real processes, real sockets, real HTTP on 127.0.0.1, clients that
// never retry and whose timeout is longer than the stall timeout.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { alive, CLI, cleanup, FIXTURES, loadLoop, run, sleep, startBroker, statusOf, tmpDir, waitText, type Proc } from '../helpers';

/** The test preload that sets fault-injection pauses from FDBROKER_TEST_* (test/fixtures/seams.js). */
const SEAMS = path.join(__dirname, '..', 'fixtures', 'seams.js');

afterEach(cleanup);

const GEN_APP = path.join(FIXTURES, 'gen-app.js');
/** Broker flags of these tests: a 3 s standby window and a 0.8 s stall timeout. */
const STANDBY = ['--standby', '3000', '--stall-timeout', '800'];
/** Client loops; each has at most one request in flight, so this also bounds what a dead process can take with it. */
const CONCURRENCY = 12;
/** Longer than the stall timeout plus a rollback, so a request queued meanwhile is served, not timed out. */
const CLIENT_TIMEOUT_MS = 5000;

function startGen(sock: string, env: NodeJS.ProcessEnv = {}): Proc {
  return run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: sock, ...env } });
}

/** v1 serving under load, v2 started and ready: the moment every fault below is injected. */
async function v2ReadyUnderLoad(keepAlive: boolean, v2env: NodeJS.ProcessEnv = {}, brokerFlags = STANDBY) {
  const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', ...brokerFlags]);
  const v1 = startGen(broker.sock);
  await v1.waitFor(/^ready \d+ gen 1$/m);
  const load = loadLoop(broker.ports.http!, { concurrency: CONCURRENCY, keepAlive, timeoutMs: CLIENT_TIMEOUT_MS, maxMs: 60_000 });
  await sleep(300);
  const v2 = startGen(broker.sock, v2env);
  await v2.waitFor(/^ready \d+ gen 2$/m);
  await v1.waitFor(/^retire \d+ by 2$/m);
  return { broker, v1, v2, load };
}

/** After the rollback: v1 serves alone again, and is the ready generation. */
async function expectV1ServesAgain(broker: { sock: string; stderr: () => string }, v1: Proc, load: ReturnType<typeof loadLoop>) {
  await v1.waitFor(/^resume \d+ failed 2$/m, 10_000);
  const before = load.stats.servedBy[String(v1.pid)] ?? 0;
  await sleep(800);
  expect(load.stats.servedBy[String(v1.pid)] ?? 0).toBeGreaterThan(before);
  const s = await statusOf(broker.sock);
  expect(s.generations.find((g) => g.number === 1)).toMatchObject({ state: 'ready', pid: v1.pid });
  expect(alive(v1.pid)).toBe(true);
  expect(v1.stdout()).not.toMatch(/^drained/m);
}

describe('warm standby: a new version that fails right after ready is rolled back', () => {
  for (const keepAlive of [true, false]) {
    const kind = keepAlive ? 'keep-alive' : 'new connection per request';

    it(`v2 SIGKILLed right after ready (${kind}): v1 resumes; only requests v2 had accepted fail (resets, at most one per client)`, async () => {
      const { broker, v1, v2, load } = await v2ReadyUnderLoad(keepAlive);
      process.kill(v2.pid, 'SIGKILL');
      await expectV1ServesAgain(broker, v1, load);
      const stats = await load.stop();
      console.info(`v2 SIGKILL after ready, ${kind}: ${JSON.stringify({ ok: stats.ok, failed: stats.failed, byKind: stats.byKind })}`);
      expect(stats.failed).toBeLessThanOrEqual(CONCURRENCY);
      for (const k of Object.keys(stats.byKind)) expect(['ECONNRESET', 'socket hang up']).toContain(k);
      expect(broker.stderr()).toMatch(/ROLLBACK: generation 2 .* left without being retired .*; generation 1 resumes serving/);
    });

    it(`v2 SIGSTOPped right after ready (${kind}): the stall is seen, v1 resumes; only requests v2 had accepted fail (timeouts)`, async () => {
      const { broker, v1, v2, load } = await v2ReadyUnderLoad(keepAlive);
      process.kill(v2.pid, 'SIGSTOP');
      try {
        await expectV1ServesAgain(broker, v1, load);
        const s = await statusOf(broker.sock);
        // Seen as hung (no answer to the broker's pings) or stalled (its accept queue did not drain), whichever comes first.
        expect(s.generations.find((g) => g.number === 2)).toMatchObject({ state: 'failed', failedReason: expect.stringMatching(/^(hung|stalled)$/) });
        await sleep(CLIENT_TIMEOUT_MS); // whatever v2 holds has timed out by now
        const stats = await load.stop();
        console.info(`v2 SIGSTOP after ready, ${kind}: ${JSON.stringify({ ok: stats.ok, failed: stats.failed, byKind: stats.byKind })}`);
        expect(stats.failed).toBeLessThanOrEqual(CONCURRENCY);
        for (const k of Object.keys(stats.byKind)) expect(k).toBe('timeout');
        expect(broker.stderr()).toMatch(/ROLLBACK: generation 2 .* stopped (accepting|answering)/);
      } finally {
        process.kill(v2.pid, 'SIGCONT');
      }
      // Woken up, v2 finds it was told to retire (failed) and leaves.
      await v2.waitFor(/^drained \d+/m, 15_000);
    });
  }

  it('v2 closes its listener right after ready: the stall is seen, v1 resumes: 0 failed', async () => {
    const { broker, v1, v2, load } = await v2ReadyUnderLoad(false, { CLOSE_AFTER_READY_MS: '0' });
    await v2.waitFor(/^closed /m);
    await expectV1ServesAgain(broker, v1, load);
    // Seen as a stall, or, when closing its last handle lets v2's process end, as a generation that left.
    expect(broker.stderr()).toMatch(/ROLLBACK: generation 2 .* (stopped accepting \(its accept queue stalled\)|left without being retired .*); generation 1 resumes serving/);
    const stats = await load.stop();
    console.info(`v2 closes its listener after ready: ${JSON.stringify({ ok: stats.ok, failed: stats.failed, byKind: stats.byKind })}`);
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
  });

  it('v2 blocks its event loop for 2.5 s right after ready: rolled back, 0 failed, and v2 leaves when it wakes', async () => {
    const { broker, v1, v2, load } = await v2ReadyUnderLoad(false, { BLOCK_AFTER_READY_MS: '2500' });
    await expectV1ServesAgain(broker, v1, load);
    await v2.waitFor(/^drained \d+/m, 15_000);
    const stats = await load.stop();
    console.info(`v2 event-loop stall after ready: ${JSON.stringify({ ok: stats.ok, failed: stats.failed, byKind: stats.byKind })}`);
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
  });

  it('a healthy v2: v1 stands by for the window, is released, drains and exits; v2 serves alone, 0 failed', async () => {
    const { broker, v1, v2, load } = await v2ReadyUnderLoad(true);
    const s = await statusOf(broker.sock);
    expect(s.generations.find((g) => g.number === 1)).toMatchObject({ state: 'standby' });
    expect(s.generations.find((g) => g.number === 1)!.standbyUntil).toBeTruthy();
    expect(alive(v1.pid)).toBe(true);
    await v1.waitFor(/^drained \d+ forced 0$/m, 15_000);
    const stats = await load.stop();
    expect(stats.failed).toBe(0);
    expect(stats.servedBy[String(v2.pid)]).toBeGreaterThan(0);
    expect((await statusOf(broker.sock)).generations.map((g) => [g.number, g.state])).toEqual([[2, 'ready']]);
  });

  it('no standby (--standby 0): v1 leaves at once; v2 killed after ready is reported, and connections wait in the queue for the next version', async () => {
    const { broker, v1, v2, load } = await v2ReadyUnderLoad(false, {}, ['--standby', '0', '--stall-timeout', '800']);
    await v1.waitFor(/^drained \d+/m, 15_000);
    process.kill(v2.pid, 'SIGKILL');
    await waitText(broker.stderr, /FAILED: generation 2 .* no generation stood by: nobody may be accepting now/, 5000);
    // Nobody accepts, but nothing is refused: a new version started 1 s later serves what queued meanwhile.
    await sleep(1000);
    const v3 = startGen(broker.sock);
    await v3.waitFor(/^ready \d+ gen 3$/m);
    await sleep(500);
    const stats = await load.stop();
    console.info(`no standby, v2 SIGKILL after ready, v3 1 s later: ${JSON.stringify({ ok: stats.ok, failed: stats.failed, byKind: stats.byKind })}`);
    expect(stats.byKind.ECONNREFUSED).toBeUndefined();
    expect(stats.failed).toBeLessThanOrEqual(CONCURRENCY);
    expect(stats.servedBy[String(v3.pid)]).toBeGreaterThan(0);
  });

  it('fdbroker wait reports a rollback after ready with exit 6', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', ...STANDBY]);
    const v1 = startGen(broker.sock);
    await v1.waitFor(/^ready \d+ gen 1$/m);
    const v2 = startGen(broker.sock);
    const waiter = run(process.execPath, [CLI, 'wait', broker.sock, '--pid', String(v2.pid), '--timeout', '20000', '--json']);
    await v2.waitFor(/^ready \d+ gen 2$/m);
    await sleep(200);
    process.kill(v2.pid, 'SIGKILL');
    const { code } = await waiter.exited;
    expect(code).toBe(6);
    expect(JSON.parse(waiter.stdout().trim())).toMatchObject({ result: 'rolledBack' });
    expect(waiter.stderr()).toMatch(/ROLLED BACK/);
    await v1.waitFor(/^resume /m);
  });
});

describe('the broker restarted mid-deploy', () => {
  it('generations rejoin a recovered broker; v2 says ready while the broker is down and ready() settles when it is back; v1 is retired; 0 failed', async () => {
    const dir = tmpDir();
    const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const expose = path.join(dir, 'v1-expose.sock');
    const v1 = startGen(broker.sock, { EXPOSE: expose });
    await v1.waitFor(/^ready \d+ gen 1$/m);
    const load = loadLoop(broker.ports.http!, { concurrency: 8, timeoutMs: CLIENT_TIMEOUT_MS, maxMs: 60_000 });
    try {
      // v2 joins, and delays its ready past the broker's death.
      const v2 = startGen(broker.sock, { READY_DELAY_MS: '1500' });
      await waitText(() => JSON.stringify(load.stats.servedBy), new RegExp(`"${v2.pid}"`), 10_000);
      process.kill(broker.pid, 'SIGKILL');
      await v1.waitFor(/^lost /m);
      await v2.waitFor(/^lost /m);
      await sleep(2000); // v2's ready() is now waiting for a broker
      expect(v2.stdout()).not.toMatch(/^ready /m);
      const next = run(process.execPath, [CLI, 'serve', broker.sock, '--adopt-from', expose, '--quiet']);
      await next.waitFor(/^fdbroker: ready on /m);
      // Both rejoin; v2's ready is committed by the new broker, which retires v1.
      await v2.waitFor(/^ready \d+ gen 2$/m, 10_000);
      await v1.waitFor(/^retire \d+ by 2$/m, 10_000);
      await v1.waitFor(/^drained \d+ forced 0$/m, 20_000);
      const s = await statusOf(broker.sock);
      expect(s.broker.pid).toBe(next.pid);
      expect(s.generations.map((g) => [g.number, g.pid, g.state, g.rejoined])).toEqual([[2, v2.pid, 'ready', true]]);
    } finally {
      await load.stop();
    }
    console.info(`broker killed between v2's join and ready: ${JSON.stringify({ ok: load.stats.ok, failed: load.stats.failed, byKind: load.stats.byKind })}`);
    expect(load.stats.failed).toBe(0);
  });

  it('the broker hung (SIGSTOP) under load: apps serve on (0 failed); a deploy waits and completes once it runs again', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', '0']);
    const v1 = startGen(broker.sock);
    await v1.waitFor(/^ready \d+ gen 1$/m);
    const load = loadLoop(broker.ports.http!, { concurrency: 8, timeoutMs: CLIENT_TIMEOUT_MS, maxMs: 60_000 });
    try {
      await sleep(300);
      process.kill(broker.pid, 'SIGSTOP');
      const v2 = startGen(broker.sock);
      await sleep(1500);
      expect(v2.stdout()).not.toMatch(/^ready/m);
      process.kill(broker.pid, 'SIGCONT');
      await v2.waitFor(/^ready \d+ gen 2$/m, 15_000);
      await v1.waitFor(/^drained \d+ forced 0$/m, 15_000);
    } finally {
      try { process.kill(broker.pid, 'SIGCONT'); } catch { /* gone */ }
      await load.stop();
    }
    expect(load.stats.failed).toBe(0);
  });
});

describe('two successors at once (self-broker mode)', () => {
  it('one successor at a time: the second is refused with ERR_FDBROKER_UPGRADE_IN_PROGRESS while the first has not said ready; numbers never repeat; every version retires', async () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'self.sock');
    const SELF_APP = path.join(FIXTURES, 'self-app.js');
    const v1 = run(process.execPath, [SELF_APP], { env: { FDBROKER_SOCK: sock } });
    await v1.waitFor(/ready/m);
    // The first successor lingers 1.5 s between adopting and renaming its control socket over the path.
    const a = run(process.execPath, ['-r', SEAMS, SELF_APP], { env: { FDBROKER_SOCK: sock, FDBROKER_TEST_SUCCESSOR_DELAY_MS: '1500' } });
    await sleep(400);
    const b = run(process.execPath, [SELF_APP], { env: { FDBROKER_SOCK: sock } });
    const bExit = await b.exited;
    expect(bExit.code).not.toBe(0);
    expect(b.stderr()).toMatch(/ERR_FDBROKER_UPGRADE_IN_PROGRESS/);
    await waitText(a.stdout, /ready/m, 10_000);
    for (let t = 0; t < 200 && alive(v1.pid); t++) await sleep(25);
    expect(alive(v1.pid)).toBe(false);
    const s = await statusOf(sock);
    expect(s.broker.pid).toBe(a.pid);
    expect(s.generations.map((g) => [g.pid, g.number])).toEqual([[a.pid, 2]]);
    expect(a.stdout()).toMatch(new RegExp(`^ready ${a.pid} gen 2 `, 'm'));
    // Nothing is left serving on a temporary name.
    expect(fs.readdirSync(dir).filter((f) => /^\.[0-9a-z]+[0-9a-f]{6}$/.test(f))).toEqual([]);
  });
});

describe('the plain server.listen({ fd }) form', () => {
  it('retire() drains a server started with listen({ fd }) and closes no fd it does not own (not even a reused number)', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', '0']);
    const v1 = run(process.execPath, [path.join(FIXTURES, 'plain-listen-retire.js')], { env: { FDBROKER_SOCK: broker.sock } });
    await v1.waitFor(/^ready \d+ fd \d+$/m);
    const load = loadLoop(broker.ports.http!, { concurrency: 4, timeoutMs: CLIENT_TIMEOUT_MS });
    await sleep(200);
    const v2 = startGen(broker.sock);
    await v2.waitFor(/^ready \d+ gen 2$/m);
    const line = await v1.waitFor(/^\{.*\}$/m, 15_000);
    expect((await v1.exited).code).toBe(0);
    const stats = await load.stop();
    expect(JSON.parse(line[0])).toMatchObject({ drained: true, listeningAfter: false, devnullIntact: true, forced: 0 });
    expect(stats.failed).toBe(0);
  });
});

describe('outside a standby window', () => {
  it('the only version hangs (SIGSTOP): the stall is reported once on stderr and in status; nothing is rolled back', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', '--stall-timeout', '800']);
    const v1 = startGen(broker.sock);
    await v1.waitFor(/^ready \d+ gen 1$/m);
    const load = loadLoop(broker.ports.http!, { concurrency: 4, timeoutMs: 3000 });
    await sleep(200);
    process.kill(v1.pid, 'SIGSTOP');
    try {
      await waitText(broker.stderr, /listener "http" stalled: \d+ connections wait since .* and nobody accepts \(generation 1 should\)/, 5000);
      const s = await statusOf(broker.sock);
      expect(s.listeners[0]!.stalledSince).toBeTruthy();
      expect(s.listeners[0]!.queued).toBeGreaterThan(0);
      expect(s.generations.map((g) => [g.number, g.state])).toEqual([[1, 'ready']]);
      expect(broker.stderr()).not.toMatch(/ROLLBACK/);
    } finally {
      process.kill(v1.pid, 'SIGCONT');
    }
    await load.stop();
  });

  it('broker and app both gone: the socket closes with its last holder, and connections are refused (no promise beyond that)', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const v1 = startGen(broker.sock);
    await v1.waitFor(/^ready \d+ gen 1$/m);
    const port = broker.ports.http!;
    process.kill(broker.pid, 'SIGKILL');
    process.kill(v1.pid, 'SIGKILL');
    await broker.exited;
    await v1.exited;
    const load = loadLoop(port, { concurrency: 2, timeoutMs: 2000, maxMs: 500 });
    const stats = await load.done;
    expect(stats.ok).toBe(0);
    expect(Object.keys(stats.byKind)).toEqual(['ECONNREFUSED']);
  });
});
