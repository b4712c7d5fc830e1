// A stopped broker is no dead end: a broker started again on the same
// addresses takes the listening sockets back from the generations that still
// hold them (pidfd_getfd), instead of failing with EADDRINUSE. Real processes
// and HTTP load on 127.0.0.1, clients that never retry.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { alive, CLI, cleanup, FIXTURES, get, run, sleep, startBroker, tmpDir, waitText } from '../helpers';
import { failuresByKind, timedLoad } from '../run-helpers';
import { NOBODY, SYSTEM_PYTHON } from '../other-user';
import { DEPLOY_EXIT } from '../../src/cli/deploy';

/** Versions `fdbroker deploy` started (detached, in their own process group): cleanup() does not know them. */
const deployed: number[] = [];
afterEach(async () => {
  for (const pid of deployed.splice(0)) {
    try { process.kill(-pid, 'SIGKILL'); } catch { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  }
  await cleanup();
});

const GEN_APP = path.join(FIXTURES, 'gen-app.js');
const EXEC_APP = path.join(FIXTURES, 'exec-listen-fds.js');

describe('a broker started again after one stopped', () => {
  it('takes the listeners back from the running generation (nothing closed), which rejoins; a deploy then works: 0 failed under load', async () => {
    const dir = tmpDir();
    const first = await startBroker(dir, ['http=tcp://127.0.0.1:0', `u=unix:${path.join(dir, 'u.sock')}`], ['--standby', '1000']);
    const port = first.ports.http!;
    const v1 = run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: first.sock } });
    const m = await v1.waitFor(/^ready (\d+) gen (\d+)/m);
    const v1Pid = Number(m[1]);
    // A second holder of the unix listener, as an app outside any generation would be.
    const unixHolder = run(process.execPath, ['-e', `
      const { adoptListeners } = require(${JSON.stringify(path.join(FIXTURES, '..', '..', 'dist'))});
      adoptListeners(process.env.FDBROKER_SOCK, { names: ['u'] }).then(() => { console.log('holding'); setInterval(() => {}, 1000); });`],
    { env: { FDBROKER_SOCK: first.sock } });
    await unixHolder.waitFor(/holding/);
    const loads = [timedLoad(port, { concurrency: 4 }), timedLoad(port, { concurrency: 4, keepAlive: true })];
    await sleep(300);

    // Ctrl-C: the broker stops, the app serves on.
    first.kill('SIGINT');
    await first.exited;
    await sleep(300);
    expect(alive(v1Pid)).toBe(true);

    const second = await startBroker(dir, [`http=tcp://127.0.0.1:${port}`, `u=unix:${path.join(dir, 'u.sock')}`], ['--standby', '1000']);
    expect(second.stdout()).toMatch(new RegExp(`listener "http" .* was still held by pid ${v1Pid} \\(node\\)`));
    expect(second.stdout()).toMatch(/listener "u" .* was still held by pid \d+/);
    // Both listeners are the new broker's again (the copies taken back, each checked to be the very socket at that address).
    const st = await statusJson(second.sock);
    expect(st.listeners.map((l: { name: string }) => l.name).sort()).toEqual(['http', 'u']);
    // The generation rejoins the new broker.
    await v1.waitFor(/^rejoin \d+ gen \d+ ready/m, 10_000);

    const d = run(process.execPath, [CLI, 'deploy', second.sock, '--timeout', '15000', '--', process.execPath, GEN_APP], { env: { FDBROKER_SOCK: second.sock } });
    const ex = await d.exited;
    expect(ex.code, d.stderr()).toBe(DEPLOY_EXIT.deployed);
    const v2Pid = (JSON.parse(d.stdout().trim()) as { pid: number }).pid;
    deployed.push(v2Pid);
    await v1.exited;
    await sleep(300);
    const results = (await Promise.all(loads.map((l) => l.stop()))).flat();
    expect(failuresByKind(results)).toEqual({});
    expect(results.length).toBeGreaterThan(50);
    expect((await get(port)).body).toMatch(new RegExp(`^${v2Pid} gen`));
    // The unix listener is the one the outside holder still accepts on: a client connects.
    await new Promise<void>((resolve, reject) => {
      const c = net.connect(path.join(dir, 'u.sock'), () => { c.destroy(); resolve(); });
      c.on('error', reject);
    });
    unixHolder.kill();
  });

  it('works for an `fdbroker exec` program as well: it rejoins through exec, and a deploy replaces it (0 failed)', async () => {
    const dir = tmpDir();
    const first = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--standby', '500']);
    const port = first.ports.http!;
    const v1 = run(process.execPath, [CLI, 'exec', first.sock, '--ready', 'immediate', '--', process.execPath, EXEC_APP]);
    const v1Pid = Number((await v1.waitFor(/^serving (\d+)/m))[1]);
    const loads = [timedLoad(port, { concurrency: 4 }), timedLoad(port, { concurrency: 4, keepAlive: true })];
    await sleep(300);
    first.kill('SIGINT');
    await first.exited;
    const second = await startBroker(dir, [`http=tcp://127.0.0.1:${port}`], ['--standby', '500']);
    expect(second.stdout()).toMatch(/listener "http" .* was still held by pid \d+/);
    await waitText(() => v1.stderr(), /re-joined the broker as generation \d+/, 10_000);
    const d = run(process.execPath, [CLI, 'deploy', second.sock, '--timeout', '15000', '--', process.execPath, CLI, 'exec', second.sock, '--ready', 'immediate', '--', process.execPath, EXEC_APP]);
    const ex = await d.exited;
    expect(ex.code, d.stderr()).toBe(DEPLOY_EXIT.deployed);
    deployed.push((JSON.parse(d.stdout().trim()) as { pid: number }).pid);
    await v1.exited;
    await sleep(300);
    const results = (await Promise.all(loads.map((l) => l.stop()))).flat();
    expect(failuresByKind(results)).toEqual({});
    expect(results.length).toBeGreaterThan(50);
    expect((await get(port)).body).not.toMatch(new RegExp(`^${v1Pid} `));
  });

  it('never takes a port another user bound while it was down: EADDRINUSE', async () => {
    const dir = tmpDir();
    fs.chmodSync(dir, 0o755);
    const squatter = run('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', SYSTEM_PYTHON, '-c', `
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
time.sleep(30)`]);
    const port = Number((await squatter.waitFor(/^(\d+)$/m))[1]);
    const b = run(process.execPath, [CLI, 'serve', path.join(dir, 'b.sock'), '--listen', `http=tcp://127.0.0.1:${port}`]);
    const ex = await b.exited;
    expect(ex.code).not.toBe(0);
    expect(b.stderr()).toMatch(new RegExp(`cannot bind tcp://127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\): another process \\(or another broker\\) already listens there`));
    squatter.kill();
  });

  it('never takes a socket no broker on this path recorded, even one of its own user: EADDRINUSE', async () => {
    const dir = tmpDir();
    const other = run(process.execPath, ['-e', `
      const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); setInterval(() => {}, 1000); });`]);
    const port = Number((await other.waitFor(/^(\d+)$/m))[1]);
    const b = run(process.execPath, [CLI, 'serve', path.join(dir, 'b.sock'), '--listen', `http=tcp://127.0.0.1:${port}`]);
    expect((await b.exited).code).toBe(1);
    expect(b.stderr()).toMatch(/\(EADDRINUSE\): another process \(or another broker\) already listens there/);
    other.kill();
  });
});

async function statusJson(sock: string) {
  const s = run(process.execPath, [CLI, 'status', sock, '--json']);
  await s.exited;
  return JSON.parse(s.stdout()) as { listeners: { name: string }[] };
}
