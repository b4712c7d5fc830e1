// Generations under load: ready/retire handovers, rollback, races, timeouts,
// and `fdbroker wait`, with real processes, sockets and HTTP on 127.0.0.1.
import { afterEach, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { CLI, cleanup, FIXTURES, loadLoop, run, sleep, startBroker, tmpDir, type Proc, statusOf } from '../helpers';

afterEach(cleanup);

const GEN_APP = path.join(FIXTURES, 'gen-app.js');

/** Polls `cond` every 20 ms until it holds; fails naming `what` after `timeoutMs`. */
async function waitUntil(cond: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(20);
  }
}

function startGen(sock: string, env: NodeJS.ProcessEnv = {}): Proc {
  return run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: sock, ...env } });
}

async function swaps(keepAlive: boolean, count: number) {
  // A short standby window: every swap goes through standby, then release.
  const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', '300']);
  let current = startGen(broker.sock);
  await current.waitFor(/^ready \d+ gen 1$/m);
  const load = loadLoop(broker.ports.http!, { concurrency: 16, keepAlive });
  await sleep(300);
  const servedBy = new Set<string>();
  for (let i = 0; i < count; i++) {
    const next = startGen(broker.sock);
    await next.waitFor(/^ready \d+/m);
    const { code } = await current.exited;
    expect(code).toBe(0);
    expect(current.stdout()).toMatch(/^drained \d+ forced 0$/m);
    current = next;
    await sleep(100);
  }
  await sleep(300);
  const stats = await load.stop();
  for (const k of Object.keys(stats.servedBy)) servedBy.add(k);
  return { stats, servedBy };
}

describe('blue/green handovers under load', () => {
  it('20 swaps with keep-alive clients: 0 failed requests', async () => {
    const { stats, servedBy } = await swaps(true, 20);
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
    expect(servedBy.size).toBeGreaterThanOrEqual(15);
    expect(stats.ok).toBeGreaterThan(1000);
  }, 120_000);

  it('20 swaps with a new connection per request: 0 failed requests', async () => {
    const { stats, servedBy } = await swaps(false, 20);
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
    expect(servedBy.size).toBeGreaterThanOrEqual(15);
    expect(stats.ok).toBeGreaterThan(1000);
  }, 120_000);
});

describe('rollback and races', () => {
  it('a new generation that crashes before ready changes nothing: 0 failed, the old one serves on', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const v1 = startGen(broker.sock);
    await v1.waitFor(/^ready/m);
    const load = loadLoop(broker.ports.http!, { concurrency: 8 });
    await sleep(300);
    for (let i = 0; i < 3; i++) {
      const bad = startGen(broker.sock, { CRASH_BEFORE_READY: '1' });
      expect((await bad.exited).code).toBe(1);
    }
    await sleep(300);
    const stats = await load.stop();
    expect(stats.failed).toBe(0);
    expect(Object.keys(stats.servedBy)).toEqual([String(v1.pid)]);
    expect(v1.stdout()).not.toMatch(/retire/);
    const s = await statusOf(broker.sock);
    expect(s.generations.map((g) => [g.pid, g.state])).toEqual([[v1.pid, 'ready']]);
  });

  it('a generation not ready within the ready timeout is reported, retires no one, and its late ready is refused', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--ready-timeout', '300']);
    const v1 = startGen(broker.sock);
    await v1.waitFor(/^ready/m);
    const slow = startGen(broker.sock, { READY_DELAY_MS: '800' });
    await slow.waitFor(/^ready-refused \d+ ERR_FDBROKER_READY_REFUSED$/m);
    expect(broker.stderr()).toMatch(/generation 2 \(pid \d+\) not ready in time/);
    const s = await statusOf(broker.sock);
    const g2 = s.generations.find((g) => g.number === 2)!;
    expect(g2.readyOverdue).toBe(true);
    expect(g2.state).toBe('starting');
    expect(s.generations.find((g) => g.number === 1)!.state).toBe('ready');
    expect(v1.stdout()).not.toMatch(/retire/);
  });

  it('two handovers racing: the newest ready generation wins and every older one retires', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const v1 = startGen(broker.sock);
    await v1.waitFor(/^ready/m);
    // v2 joins first but is slow; v3 joins later and is ready first.
    const v2 = startGen(broker.sock, { READY_DELAY_MS: '1500' });
    // v2 has joined (generation 2, starting) before v3 starts.
    await waitUntil(async () => (await statusOf(broker.sock)).generations.some((g) => g.pid === v2.pid && g.number === 2 && g.state === 'starting'),
      'v2 joined as generation 2');
    const v3 = startGen(broker.sock);
    await v3.waitFor(/^ready \d+ gen 3$/m);
    expect((await v1.exited).code).toBe(0);
    // v2 was told to retire before it ever said ready; its ready is refused and it drains.
    await v2.waitFor(/^retire \d+ by 3$/m);
    expect((await v2.exited).code).toBe(0);
    const s = await statusOf(broker.sock);
    expect(s.generations.map((g) => [g.number, g.state])).toEqual([[3, 'ready']]);
  });

  it('a generation told to retire that stays is reported as overdue in status', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--retire-timeout', '300']);
    const v1 = startGen(broker.sock, { IGNORE_RETIRE: '1' });
    await v1.waitFor(/^ready/m);
    const v2 = startGen(broker.sock);
    await v2.waitFor(/^ready/m);
    await v1.waitFor(/^retire/m);
    await sleep(700);
    const s = await statusOf(broker.sock);
    const g1 = s.generations.find((g) => g.number === 1)!;
    expect(g1.state).toBe('retiring');
    expect(g1.retireOverdue).toBe(true);
    expect(broker.stderr()).toMatch(/generation 1 \(pid \d+\) told to retire at .* and still connected/);
    const text = run(process.execPath, [CLI, 'status', broker.sock]);
    await text.exited;
    expect(text.stdout()).toMatch(/#1 pid \d+ retiring .*RETIRE OVERDUE/);
  });
});

describe('fdbroker wait', () => {
  it('exits 0 once the generation of a pid is ready and the old one has left', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const v1 = startGen(broker.sock);
    await v1.waitFor(/^ready/m);
    const v2 = startGen(broker.sock);
    const w = run(process.execPath, [CLI, 'wait', broker.sock, '--pid', String(v2.pid), '--timeout', '10000']);
    expect((await w.exited).code).toBe(0);
    expect(v1.child.exitCode ?? (await v1.exited).code).toBe(0);
  });

  it('exits 4 when the generation of a pid dies before ready (roll back)', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const v1 = startGen(broker.sock);
    await v1.waitFor(/^ready/m);
    const bad = startGen(broker.sock, { CRASH_BEFORE_READY: '1' });
    const w = run(process.execPath, [CLI, 'wait', broker.sock, '--pid', String(bad.pid), '--timeout', '10000']);
    expect((await w.exited).code).toBe(4);
  });

  it('exits 1 on timeout and 3 when no broker answers', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const never = startGen(broker.sock, { NEVER_READY: '1' });
    await never.waitFor(/^serving/m);
    const w = run(process.execPath, [CLI, 'wait', broker.sock, '--pid', String(never.pid), '--timeout', '300']);
    expect((await w.exited).code).toBe(1);
    const none = run(process.execPath, [CLI, 'wait', path.join(tmpDir(), 'nothing.sock'), '--timeout', '300']);
    expect((await none.exited).code).toBe(3);
  });
});
