// The nginx way (kill -USR2 starts the successor) and the app as its own
// broker (no `fdbroker serve`), under load on 127.0.0.1.
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cleanup, FIXTURES, loadLoop, run, sleep, startBroker, tmpDir, type Proc, statusOf, alive, waitText } from '../helpers';

const SELF_APP = path.join(FIXTURES, 'self-app.js');
// A successor binds its control socket at a temporary sibling name first and
// renames it over the path: `.<pid base 36><6 hex digits>` (temporaryPath() in
// src/broker/control-path.ts). None may be left behind.
const TEMPORARY_SOCKET_NAME = /^\.[0-9a-z]+[0-9a-f]{6}$/;
// Successors are detached children of the app: the test ends them by pid.
const spawned = new Set<number>();

afterEach(async () => {
  for (const pid of spawned) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  spawned.clear();
  await cleanup();
});

function readyLines(p: Proc): Array<{ pid: number; gen: number; port: number }> {
  return [...p.stdout().matchAll(/^ready (\d+) gen (\d+) port (\d+)/gm)].map((m) => ({ pid: +m[1]!, gen: +m[2]!, port: +m[3]! }));
}

async function waitReadyCount(p: Proc, n: number, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (readyLines(p).length < n) {
    if (Date.now() > deadline) throw new Error(`no ready #${n}:\n${p.stdout()}\n${p.stderr()}`);
    await sleep(20);
  }
  const all = readyLines(p);
  for (const r of all) spawned.add(r.pid);
  return all[n - 1]!;
}

describe('the app as its own broker, upgraded with SIGUSR2', () => {
  it('three USR2 upgrades under load: 0 failed requests, and the control path always answers', async () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'app.sock');
    const app = run(process.execPath, [SELF_APP], { env: { FDBROKER_SOCK: sock } });
    const first = await waitReadyCount(app, 1);
    expect(first.pid).toBe(app.pid);
    const load = loadLoop(first.port, { concurrency: 12, keepAlive: true });
    // The control path is probed continuously: it must answer every time.
    let probing = true;
    let probes = 0;
    const probeErrors: string[] = [];
    const prober = (async () => {
      while (probing) {
        try { await statusOf(sock); probes++; } catch (err) { probeErrors.push(String((err as Error & { code?: string }).code)); }
        await sleep(5);
      }
    })();
    await sleep(300);
    let current = first;
    for (let i = 2; i <= 4; i++) {
      process.kill(current.pid, 'SIGUSR2');
      const next = await waitReadyCount(app, i);
      expect(next.port).toBe(first.port);
      expect(next.pid).not.toBe(current.pid);
      // The predecessor drains and exits.
      for (let t = 0; t < 200 && alive(current.pid); t++) await sleep(25);
      expect(alive(current.pid)).toBe(false);
      current = next;
      await sleep(200);
    }
    probing = false;
    await prober;
    const stats = await load.stop();
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
    expect(Object.keys(stats.servedBy).length).toBe(4);
    expect(probeErrors).toEqual([]);
    expect(probes).toBeGreaterThan(20);
    const s = await statusOf(sock);
    expect(s.broker.pid).toBe(current.pid);
    expect(s.generations.map((g) => [g.number, g.state])).toEqual([[current.gen, 'ready']]);
    const left = fs.readdirSync(dir);
    expect(left.filter((f) => TEMPORARY_SOCKET_NAME.test(f))).toEqual([]);
    // Nothing else either: the control socket (a self-broker takes no lock file).
    expect(left).toEqual(['app.sock']);
  }, 90_000);

  it('a second USR2 while an upgrade is in flight is refused', async () => {
    const sock = path.join(tmpDir(), 'app.sock');
    const app = run(process.execPath, [SELF_APP], { env: { FDBROKER_SOCK: sock } });
    const first = await waitReadyCount(app, 1);
    process.kill(first.pid, 'SIGUSR2');
    // Standard signals do not queue: send the second once the first was handled.
    const successor = Number((await app.waitFor(/^upgrade (\d+)$/m))[1]);
    process.kill(first.pid, 'SIGUSR2');
    // Refused, naming the upgrade in flight.
    await app.waitFor(new RegExp(`^upgrade-refused an upgrade is in flight \\(pid ${successor}\\)$`, 'm'));
    const second = await waitReadyCount(app, 2);
    expect(second.pid).toBe(successor);
    expect(app.stdout().match(/^upgrade \d+$/gm)).toEqual([`upgrade ${successor}`]);
  });

  it('a successor that crashes before ready: the old one serves on, gets its path back, and can upgrade again', async () => {
    const sock = path.join(tmpDir(), 'app.sock');
    const app = run(process.execPath, [SELF_APP], { env: { FDBROKER_SOCK: sock, CRASH_SUCCESSOR: '1' } });
    const first = await waitReadyCount(app, 1);
    const load = loadLoop(first.port, { concurrency: 8 });
    await sleep(200);
    process.kill(first.pid, 'SIGUSR2');
    const successor = Number((await app.waitFor(/^upgrade (\d+)$/m))[1]);
    spawned.add(successor);
    await app.waitFor(new RegExp(`^upgrade-failed ${successor} 1 failed before ready$`, 'm'));
    await sleep(300);
    const stats = await load.stop();
    expect(stats.failed).toBe(0);
    expect(Object.keys(stats.servedBy)).toEqual([String(first.pid)]);
    const s = await statusOf(sock);
    expect(s.broker.pid).toBe(first.pid);
    // The path answers again (the old process reclaimed it) and a new upgrade may start.
    process.kill(first.pid, 'SIGUSR2');
    const again = Number((await waitText(app.stdout, new RegExp(`^upgrade (?!${successor}$)(\\d+)$`, 'm')))[1]);
    spawned.add(again);
    expect(again).not.toBe(successor);
    // That successor crashes too (CRASH_SUCCESSOR): the upgrade really ran again.
    await waitText(app.stdout, new RegExp(`^upgrade-failed ${again} 1 failed before ready$`, 'm'), 15_000);
    expect(app.stdout()).not.toMatch(/^upgrade-refused/m);
  });

  it('USR2 also works with a standalone broker', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', '300']);
    const app = run(process.execPath, [SELF_APP], { env: { FDBROKER_SOCK: broker.sock, STANDALONE: '1' } });
    const first = await waitReadyCount(app, 1);
    const load = loadLoop(broker.ports.http!, { concurrency: 8 });
    await sleep(200);
    process.kill(first.pid, 'SIGUSR2');
    const second = await waitReadyCount(app, 2);
    for (let t = 0; t < 200 && alive(first.pid); t++) await sleep(25);
    expect(alive(first.pid)).toBe(false);
    await sleep(200);
    const stats = await load.stop();
    expect(stats.failed).toBe(0);
    const s = await statusOf(broker.sock);
    expect(s.broker.pid).toBe(broker.pid);
    expect(s.generations.map((g) => g.pid)).toEqual([second.pid]);
  });
});
