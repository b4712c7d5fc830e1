// The protocol features "leaving", "standby-rejoin" and "epoch", end to end:
// the broker announces and honours them, the client uses them (a standby kept
// across a broker restart, a planned stop that is no rollback). Real
// processes: `fdbroker serve`, generations running the library, `fdbroker exec`.
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BrokerConnection } from '../../src/client/connection';
import { startGeneration } from '../../src/handover/generation';
import type { StatusMessage } from '../../src/protocol/messages';
import { cleanup, CLI, FIXTURES, get, ROOT, run, sleep, startBroker, statusOf, tmpDir, waitText } from '../helpers';

afterEach(cleanup);

/** The broker's standby window in these tests: long enough to restart a broker inside it. */
const WINDOW_MS = 8000;

describe('the broker announces what the client checks', () => {
  it('welcome.features lists "leaving", "standby-rejoin" and "epoch"', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const conn = await BrokerConnection.connect(broker.sock, { timeout: 5000 });
    try {
      expect(conn.features).toEqual(expect.arrayContaining(['leaving', 'standby-rejoin', 'epoch']));
    } finally {
      conn.close();
    }
  });
});

describe('defect 7: a broker restart inside the standby window keeps the standby', () => {
  it('A stands by, B ready; the broker is killed and started again; A rejoins as "standby"; B dies within the window: A resumes and serves', async () => {
    const dir = tmpDir();
    const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', String(WINDOW_MS)]);
    const expose = path.join(dir, 'a-expose.sock');
    const a = run(process.execPath, [path.join(FIXTURES, 'gen-app.js')], { env: { FDBROKER_SOCK: broker.sock, STANDBY: String(WINDOW_MS), EXPOSE: expose, LABEL: 'A' } });
    await a.waitFor(/^ready \d+ gen \d+$/m);
    const b = run(process.execPath, [path.join(FIXTURES, 'gen-app.js')], { env: { FDBROKER_SOCK: broker.sock, STANDBY: String(WINDOW_MS), LABEL: 'B' } });
    await b.waitFor(/^ready \d+ gen \d+$/m);
    await waitText(a.stdout, /^retire \d+ by \d+$/m, 5000);
    process.kill(broker.pid, 'SIGKILL');
    await b.waitFor(/^lost /m);
    await sleep(500);
    // A stands by on (without the feature it would have drained and exited by now, its exposed listeners with it).
    expect(a.stdout(), 'A gave up its standby when the broker was lost').not.toMatch(/^drained /m);
    const next = run(process.execPath, [CLI, 'serve', broker.sock, '--adopt-from', expose, '--standby', String(WINDOW_MS), '--quiet']);
    await next.waitFor(/^fdbroker: ready on /m);
    await a.waitFor(/^rejoin \d+ gen \d+ standby$/m, 5000);
    await b.waitFor(/^rejoin \d+ gen \d+ ready$/m, 5000);
    expect(a.stdout()).not.toMatch(/^drained /m);
    b.kill('SIGKILL');
    await a.waitFor(/^resume \d+ failed \d+$/m, 5000);
    const r = await get(broker.ports.http!);
    expect(r.body).toMatch(new RegExp(`^${a.pid} `));
    const s = await statusOf(broker.sock);
    expect(s.generations.find((g) => g.label === 'A')?.state).toBe('ready');
  }, 40_000);

  it('the window ends before a broker answers: the standing-by generation retires on its own', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', '1500']);
    const a = run(process.execPath, [path.join(FIXTURES, 'gen-app.js')], { env: { FDBROKER_SOCK: broker.sock, STANDBY: '1500', LABEL: 'A' } });
    await a.waitFor(/^ready \d+ gen \d+$/m);
    const b = run(process.execPath, [path.join(FIXTURES, 'gen-app.js')], { env: { FDBROKER_SOCK: broker.sock, STANDBY: '1500', LABEL: 'B' } });
    await b.waitFor(/^ready \d+ gen \d+$/m);
    await waitText(a.stdout, /^retire \d+ by \d+$/m, 5000);
    const lostAt = Date.now();
    process.kill(broker.pid, 'SIGKILL');
    // A keeps standing by (a broker with "standby-rejoin" was lost) ...
    await sleep(500);
    expect(a.stdout(), 'A gave up its standby when the broker was lost').not.toMatch(/^drained /m);
    expect(a.stdout()).toMatch(/^lost \d+$/m);
    // ... until its window (+ grace) is over.
    await a.waitFor(/^drained \d+ forced \d+$/m, 10_000);
    expect(Date.now() - lostAt).toBeGreaterThan(1000);
  }, 30_000);
});

/** The broker's status once it lists no generation (polled; fails after 5 s). */
async function gone(sock: string): Promise<StatusMessage> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const s = await statusOf(sock);
    if (s.generations.length === 0) return s;
    if (Date.now() > deadline) throw new Error(`generations still listed: ${JSON.stringify(s.generations)}`);
    await sleep(50);
  }
}

describe('a planned stop is no rollback and no failure ("leaving")', () => {
  it('Generation.close() of the only ready generation: the broker counts no rollback', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const gen = await startGeneration(broker.sock, { names: [] });
    await gen.ready();
    gen.close();
    const s = await gone(broker.sock);
    expect(s.generations).toEqual([]);
    expect(s.metrics?.rollbacks.left).toBe(0);
    expect(s.metrics?.unreplaced?.left).toBe(0);
  });

  it('Generation.retire() started by the app itself (its own SIGTERM handler): no rollback, no failure', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const gen = await startGeneration(broker.sock, { names: [] });
    await gen.ready();
    await gen.retire();
    const s = await gone(broker.sock);
    expect(s.metrics?.rollbacks.left).toBe(0);
    expect(s.metrics?.unreplaced?.left).toBe(0);
  });

  it('the quick-start app (examples/app.js) stopped with SIGTERM: the broker logs no FAILED line', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const app = run(process.execPath, [path.join(ROOT, 'examples', 'app.js')], { env: { FDBROKER_SOCK: broker.sock, APP_VERSION: 'v1' } });
    await app.waitFor(/^v1: serving/m);
    app.kill('SIGTERM');
    expect((await app.exited).code).toBe(0);
    const s = await gone(broker.sock);
    expect(s.metrics?.unreplaced?.left).toBe(0);
    expect(broker.stderr()).not.toMatch(/FAILED|ROLLBACK/);
  });

  it('fdbroker exec, SIGTERM from outside: the wrapper forwards it and says "leaving"; the broker counts no rollback', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const w = run(process.execPath, [CLI, 'exec', broker.sock, '--ready', 'immediate', '--', 'sleep', '30']);
    const deadline = Date.now() + 5000;
    while (!(await statusOf(broker.sock)).generations.some((g) => g.state === 'ready')) {
      if (Date.now() > deadline) throw new Error(`exec never ready: ${w.stderr()}`);
      await sleep(50);
    }
    w.kill('SIGTERM');
    await w.exited;
    const s = await gone(broker.sock);
    expect(s.generations).toEqual([]);
    expect(s.metrics?.rollbacks.left).toBe(0);
    expect(s.metrics?.unreplaced?.left).toBe(0);
  });
});
