// examples/blue-green.sh: deploy v2 over v1 under load, and roll back when v2
// fails to start. Real broker, real apps, real HTTP on 127.0.0.1.
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLI, cleanup, FIXTURES, loadLoop, ROOT, run, sleep, startBroker, tmpDir } from '../helpers';

const SCRIPT = path.join(ROOT, 'examples', 'blue-green.sh');
const GEN_APP = path.join(FIXTURES, 'gen-app.js');
const started = new Set<number>();

afterEach(async () => {
  for (const pid of started) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  started.clear();
  await cleanup();
});

function deploy(sock: string, env: NodeJS.ProcessEnv = {}) {
  const p = run('bash', [SCRIPT, sock, process.execPath, GEN_APP], {
    env: { FDBROKER: `${process.execPath} ${CLI}`, FDBROKER_SOCK: sock, TIMEOUT_MS: '10000', ...env },
  });
  return p;
}

describe('examples/blue-green.sh', () => {
  it('deploys v2 over v1 under load with 0 failed requests, then rolls back a v3 that crashes', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const v1 = run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: broker.sock } });
    await v1.waitFor(/^ready/m);
    const load = loadLoop(broker.ports.http!, { concurrency: 12, keepAlive: true });
    await sleep(300);

    const d2 = deploy(broker.sock);
    const r2 = await d2.exited;
    const v2pid = Number(d2.stdout().match(/started pid (\d+)/)![1]);
    started.add(v2pid);
    expect(r2.code).toBe(0);
    expect(d2.stdout()).toMatch(/deployed/);
    expect((await v1.exited).code).toBe(0);

    const d3 = deploy(broker.sock, { CRASH_BEFORE_READY: '1' });
    const r3 = await d3.exited;
    started.add(Number(d3.stdout().match(/started pid (\d+)/)![1]));
    expect(r3.code).toBe(1);
    expect(d3.stderr()).toMatch(/rolled back/);

    await sleep(300);
    const stats = await load.stop();
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
    expect(Object.keys(stats.servedBy).sort()).toEqual([String(v1.pid), String(v2pid)].sort());
    // v2 still serves after the failed v3.
    const after = loadLoop(broker.ports.http!, { concurrency: 2 });
    await sleep(200);
    const s = await after.stop();
    expect(Object.keys(s.servedBy)).toEqual([String(v2pid)]);
  });

  it('rolls back a v2 that never becomes ready (timeout), stopping it', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const v1 = run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: broker.sock } });
    await v1.waitFor(/^ready/m);
    const d2 = deploy(broker.sock, { NEVER_READY: '1', TIMEOUT_MS: '800' });
    const r2 = await d2.exited;
    const pid = Number(d2.stdout().match(/started pid (\d+)/)![1]);
    started.add(pid);
    expect(r2.code).toBe(1);
    expect(d2.stderr()).toMatch(/not ready within 800 ms/);
    await sleep(300);
    // Gone, or a zombie waiting for this container's init to reap it.
    const state = (() => { try { return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0]; } catch { return 'gone'; } })();
    expect(['gone', 'Z']).toContain(state);
    expect(v1.child.exitCode).toBe(null);
  });
});
