// A generation that says ready while holding none of the listeners it
// adopted (it bound a port of its own, or closed the one it got) is refused
// with ERR_FDBROKER_NOT_HOLDING, fails (not-holding) and is told to retire,
// while the version that served serves on: real broker, real apps, HTTP load
// on 127.0.0.1 with 0 failed requests. And the decision's fact, read from
// /proc (src/holders/tree-holds.ts), for real processes.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { treeHolds } from '../../src/holders/tree-holds';
import { CLI, cleanup, FIXTURES, get, loadLoop, run, sleep, startBroker, statusOf, tmpDir, waitText } from '../helpers';

const GEN_APP = path.join(FIXTURES, 'gen-app.js');

afterEach(cleanup);

async function serving(sock: string): Promise<{ port: number; old: ReturnType<typeof run> }> {
  const old = run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: sock, LABEL: 'v1' } });
  await old.waitFor(/^ready \d+ gen 1$/m);
  return { port: 0, old };
}

describe('ready is refused when the process does not hold its listeners', () => {
  it('a library app that binds its own port: ERR_FDBROKER_NOT_HOLDING, status says why, v1 serves on with 0 failed requests', async () => {
    const dir = tmpDir();
    const b = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', '1000']);
    const port = b.ports.http!;
    const { old } = await serving(b.sock);
    const load = loadLoop(port, { concurrency: 4, maxMs: 20_000 });
    await sleep(200);
    // IGNORE_RETIRE: it stays, so status can be read while it is there.
    const bad = run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: b.sock, OWN_PORT: '1', IGNORE_RETIRE: '1', LABEL: 'v2' } });
    const own = await bad.waitFor(/^own-port (\d+) (\d+)$/m);
    await bad.waitFor(/^ready-refused \d+ ERR_FDBROKER_NOT_HOLDING$/m);
    const s = await statusOf(b.sock);
    const g2 = s.generations.find((g) => g.pid === bad.pid)!;
    expect(g2).toMatchObject({ state: 'failed', failedReason: 'not-holding', holdCheck: { result: 'missing', missing: ['http'] } });
    expect(g2.readyAt).toBeUndefined();
    const g1 = s.generations.find((g) => g.pid === old.pid)!;
    expect(g1).toMatchObject({ state: 'ready', holdCheck: { result: 'held' } });
    await waitText(() => b.stderr(), /REFUSED: generation 2 .* holds no copy of "http"/);
    // The text status names the reason.
    const text = run(process.execPath, [CLI, 'status', b.sock]);
    await text.exited;
    expect(text.stdout()).toMatch(/#2 pid \d+ FAILED \(not-holding: said ready holding no copy of http; refused\)/);
    await sleep(500);
    const stats = await load.stop();
    expect(stats.failed, JSON.stringify(stats.byKind)).toBe(0);
    expect(stats.ok).toBeGreaterThan(20);
    // Every answer came from v1; v2's own port answers, but nobody is sent there.
    expect(Object.keys(stats.servedBy)).toEqual([String(old.pid)]);
    expect((await get(Number(own[2]))).body).toContain(`${bad.pid} gen 2`);
    expect((await get(port)).body).toContain(`${old.pid} gen 1`);
  }, 30_000);

  it('an exec program that closes fd 3 and binds elsewhere: refused, stopped, v1 serves on with 0 failed requests', async () => {
    const dir = tmpDir();
    const b = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', '1000']);
    const port = b.ports.http!;
    const { old } = await serving(b.sock);
    const load = loadLoop(port, { concurrency: 4, maxMs: 20_000 });
    await sleep(200);
    const ex = run(process.execPath, [CLI, 'exec', b.sock, '--', 'python3', path.join(FIXTURES, 'exec_own_port.py')]);
    await ex.waitFor(/^own-port \d+ \d+$/m);
    await waitText(() => ex.stderr(), /ERR_FDBROKER_NOT_HOLDING/);
    // Told to retire (reason failed): exec stops the program and exits.
    const end = await Promise.race([ex.exited, sleep(10_000).then(() => 'timeout' as const)]);
    expect(end).not.toBe('timeout');
    const s = await statusOf(b.sock);
    expect(s.generations.map((g) => `${g.pid}:${g.state}`)).toEqual([`${old.pid}:ready`]);
    const stats = await load.stop();
    expect(stats.failed, JSON.stringify(stats.byKind)).toBe(0);
    expect(stats.ok).toBeGreaterThan(20);
    expect(Object.keys(stats.servedBy)).toEqual([String(old.pid)]);
  }, 30_000);

  it('fdbroker deploy of a version that binds its own port: rolled back (exit 1), the reason named, v1 serves on', async () => {
    const dir = tmpDir();
    const b = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const { old } = await serving(b.sock);
    // gen-app reads FDBROKER_SOCK; deploy gives FDBROKER_PATH: an empty one makes startGeneration() use FDBROKER_PATH.
    const d = run(process.execPath, [CLI, 'deploy', b.sock, '--timeout', '15000', '--json', '--log', path.join(dir, 'v2.log'), '--', process.execPath, GEN_APP],
      { env: { OWN_PORT: '1', FDBROKER_SOCK: '' } });
    const e = await d.exited;
    expect(e.code, d.stderr()).toBe(1);
    // The reason reaches the user: deploy's verdict line names it when its poll saw the generation failed, and the
    // new version's last lines (printed after a rollback) do in any case, if it drained and left between two polls.
    expect(d.stderr()).toMatch(/ERR_FDBROKER_NOT_HOLDING/);
    expect(JSON.parse(d.stdout().trim().split('\n').pop()!)).toMatchObject({ verdict: 'rolled_back' });
    expect((await get(b.ports.http!)).body).toContain(`${old.pid} gen 1`);
  }, 30_000);

  it('an exec program that serves fd 3 is accepted: the check looks at the program, not the wrapper that closed its copies', async () => {
    const dir = tmpDir();
    const b = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const ex = run(process.execPath, [CLI, 'exec', b.sock, '--', 'python3', path.join(FIXTURES, 'exec_py_server.py')]);
    await ex.waitFor(/^ready \d+/m);
    for (let i = 0; i < 50; i++) {
      const g = (await statusOf(b.sock)).generations[0];
      if (g?.state === 'ready') {
        expect(g.holdCheck).toEqual({ result: 'held' });
        return;
      }
      await sleep(100);
    }
    throw new Error('exec generation never ready');
  }, 20_000);
});

describe('treeHolds: the fact, from /proc', () => {
  const listening = async () => {
    const server = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    return { server, inode: fs.fstatSync(fd).ino };
  };

  it('held by this process; missing for a socket nobody in the tree holds; partial names what is missing', async () => {
    const a = await listening();
    const b = await listening();
    expect(await treeHolds(process.pid, [a.inode])).toEqual({ result: 'held' });
    b.server.close();
    await sleep(50);
    // b's inode is nobody's now (closed): a child of this process holds no copy either.
    expect(await treeHolds(process.pid, [b.inode])).toEqual({ result: 'missing', missing: [b.inode] });
    expect(await treeHolds(process.pid, [a.inode, b.inode])).toEqual({ result: 'held', missing: [b.inode] });
    a.server.close();
  });

  it('held by a descendant when the process itself closed its copy (as fdbroker exec does)', async () => {
    const a = await listening();
    const fd = (a.server as unknown as { _handle: { fd: number } })._handle.fd;
    const child = run('sleep', ['30'], {});
    // `run` spawns with pipes only; a child holding the socket: sh with the fd inherited at 3.
    const { spawn } = await import('node:child_process');
    const holder = spawn('/bin/sh', ['-c', 'sleep 30'], { stdio: ['ignore', 'ignore', 'ignore', fd] });
    await sleep(100);
    a.server.close();
    await sleep(50);
    try {
      expect(await treeHolds(process.pid, [a.inode])).toEqual({ result: 'held' });
      // Not a descendant of the child that holds nothing.
      expect((await treeHolds(child.pid, [a.inode])).result).toBe('missing');
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('unverified, never missing, where /proc cannot tell: pid 0 (another namespace), a hidden pid that runs, an unreadable table', async () => {
    expect((await treeHolds(0, [1])).result).toBe('unverified');
    const empty = tmpDir();
    expect(await treeHolds(12345, [1], { proc: empty, alive: () => true })).toMatchObject({ result: 'unverified' });
    // A pid that is gone and not alive: missing (the process that said ready is not there).
    expect(await treeHolds(12345, [1], { proc: empty, alive: () => false })).toEqual({ result: 'missing', missing: [1] });
    // A fd "table" that is a file, not a directory: cannot be read (ENOTDIR).
    fs.mkdirSync(path.join(empty, '777'));
    fs.writeFileSync(path.join(empty, '777', 'fd'), '');
    expect(await treeHolds(777, [1], { proc: empty })).toMatchObject({ result: 'unverified' });
    expect(await treeHolds(process.pid, [])).toEqual({ result: 'held' });
  });
});
