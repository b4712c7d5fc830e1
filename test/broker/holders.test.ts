// Holders of a listener, found in /proc on real processes: a child that holds
// a dup of a listening socket, one that closed it, a grandchild with its
// ancestry, a process of another uid (as root), and what a non-root scanner
// can and cannot see. The cache: one scan per TTL, shared while it runs.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../../src/native/binding';
import { ancestors, HolderCache, HOLDERS_SCAN_CONCURRENCY, HOLDERS_SCAN_DUTY_FACTOR, reuseWindowMs, HOLDERS_SLICE_LINKS, scanHolders, socketInode, type ScanMode } from '../../src/holders/holders';
import { ROOT, tmpDir, cleanup } from '../helpers';

const n = native();
const c = n.constants;
const NOBODY = 65534;
/** Every child exits by itself after this long, whatever happens to the test. */
const CHILD_LIFETIME_MS = 60_000;
const READY_TIMEOUT_MS = 10_000;
const PYTHON = '/usr/bin/python3';

const opened = new Set<number>();
const children = new Set<ChildProcess>();

afterEach(async () => {
  // Each child leads its own process group: the group signal ends grandchildren too.
  for (const ch of children) {
    try { process.kill(-ch.pid!, 'SIGKILL'); } catch { /* gone */ }
  }
  children.clear();
  for (const fd of opened) n.close(fd);
  opened.clear();
  await cleanup();
});

/** A listening TCP socket on 127.0.0.1 that this process owns. */
function tcpListener(): number {
  const fd = n.socket(c.AF_INET, c.SOCK_STREAM);
  expect(fd).toBeGreaterThanOrEqual(0);
  opened.add(fd);
  expect(n.bind(fd, { family: 'inet', address: '127.0.0.1', port: 0 })).toBe(0);
  expect(n.listen(fd, 8)).toBe(0);
  return fd;
}

/**
 * Starts `cmd args` with `fd` as its fd 3 (a dup the kernel makes at exec) and
 * resolves with the child and its first stdout line once it prints one.
 */
async function holder(cmd: string, args: string[], fd: number): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe', fd], detached: true, cwd: os.tmpdir() });
  children.add(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d; });
  const line = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${cmd} printed no line in ${READY_TIMEOUT_MS} ms; stderr:\n${err}`)), READY_TIMEOUT_MS);
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      const i = out.indexOf('\n');
      if (i >= 0) { clearTimeout(t); resolve(out.slice(0, i)); }
    });
    child.on('exit', (code, sig) => { clearTimeout(t); reject(new Error(`${cmd} exited (${code ?? sig}); stderr:\n${err}`)); });
  });
  return { child, line };
}

const LIVE = `setTimeout(() => {}, ${CHILD_LIFETIME_MS});`;
/** Node that keeps its fd 3 and says so. */
const HOLD = `${LIVE} console.log('holding');`;
/** Node that closes its fd 3 first. */
const CLOSE = `require('fs').closeSync(3); ${LIVE} console.log('closed');`;
/** Node that hands its fd 3 to a child of its own (as that child's fd 3), then closes its own copy. */
const PARENT = `${LIVE}
const { spawn } = require('child_process');
const g = spawn(process.execPath, ['-e', ${JSON.stringify(HOLD)}], { stdio: ['ignore', 'pipe', 'inherit', 3] });
g.stdout.once('data', () => { require('fs').closeSync(3); console.log(String(g.pid)); });`;

/** The chain this test process sits in, nearest first, read here independently of holders.ts. */
function myAncestry(): number[] {
  const chain: number[] = [];
  let pid = process.pid;
  for (;;) {
    const ppid = Number(/^PPid:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    if (ppid === 0) return chain;
    chain.push(ppid);
    pid = ppid;
  }
}

const MODES: ScanMode[] = ['slices', 'threadpool'];

describe.each(MODES)('scanHolders, %s mode', (mode) => {
  it('finds a child that holds a dup of the listener, with its pid, ppid, uid, comm and fd; not the caller', async () => {
    const l = tcpListener();
    const ino = socketInode(l);
    expect(ino).toBe(Number(/^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${l}`))![1]));
    const { child, line } = await holder(process.execPath, ['-e', HOLD], l);
    expect(line).toBe('holding');

    const scan = await scanHolders([ino], { mode });
    expect(scan.holders).toHaveLength(1);
    const h = scan.holders[0]!;
    expect(h).toMatchObject({ pid: child.pid, ppid: process.pid, uid: process.getuid!(), comm: 'node', fds: [{ fd: 3, inode: ino }] });
    expect(h.ancestors).toEqual([process.pid, ...myAncestry()]);
    expect(scan.byInode.get(ino)).toEqual([h]);
    expect(scan.scanned).toBeGreaterThan(1);
    expect(scan.durationMs).toBeGreaterThan(0);

    // Not excluding the caller: this process (fd l) is a holder too.
    const all = await scanHolders([ino], { mode, exclude: [] });
    expect(all.holders.map((x) => x.pid).sort((a, b) => a - b)).toEqual([process.pid, child.pid!].sort((a, b) => a - b));
    expect(all.holders.find((x) => x.pid === process.pid)!.fds).toEqual([{ fd: l, inode: ino }]);
  });

  it('does not report a child that closed its copy, nor a listener nobody else holds', async () => {
    const l = tcpListener();
    const other = tcpListener();
    const { child, line } = await holder(process.execPath, ['-e', CLOSE], l);
    expect(line).toBe('closed');
    const scan = await scanHolders([socketInode(l), socketInode(other)], { mode });
    expect(scan.holders).toEqual([]);
    expect(scan.byInode).toEqual(new Map([[socketInode(l), []], [socketInode(other), []]]));
    // It was scanned (it is alive and ours), it just holds nothing.
    expect(fs.existsSync(`/proc/${child.pid}/fd`)).toBe(true);
  });

  it('finds a grandchild, with the ppid chain that leads through its parent to this process', async () => {
    const l = tcpListener();
    const ino = socketInode(l);
    const { child, line } = await holder(process.execPath, ['-e', PARENT], l);
    const grandchild = Number(line);
    expect(grandchild).toBeGreaterThan(0);
    const scan = await scanHolders([ino], { mode });
    expect(scan.holders.map((h) => h.pid)).toEqual([grandchild]);
    const h = scan.holders[0]!;
    expect(h.ppid).toBe(child.pid);
    expect(h.ancestors.slice(0, 2)).toEqual([child.pid, process.pid]);
    expect(h.ancestors.at(-1)).toBe(1);
    expect(await ancestors(grandchild)).toEqual(h.ancestors);
    expect(await ancestors(2 ** 22 + 1)).toEqual([]); // above pid_max's ceiling: no such process
  });

  it('several listeners: each inode lists its own holders, a holder of two lists both fds', async () => {
    const a = tcpListener();
    const b = tcpListener();
    const one = await holder(process.execPath, ['-e', HOLD], a);
    // fd 3 = a, and fd 4 = b via a second extra stdio slot.
    const both = spawn(process.execPath, ['-e', HOLD], { stdio: ['ignore', 'pipe', 'inherit', a, b], detached: true });
    children.add(both);
    await new Promise((r) => both.stdout!.once('data', r));
    const scan = await scanHolders([socketInode(a), socketInode(b)], { mode });
    expect(scan.holders.map((h) => h.pid)).toEqual([one.child.pid!, both.pid!].sort((x, y) => x - y));
    expect(scan.byInode.get(socketInode(a))!.map((h) => h.pid).sort((x, y) => x - y)).toEqual([one.child.pid!, both.pid!].sort((x, y) => x - y));
    expect(scan.byInode.get(socketInode(b))!.map((h) => h.pid)).toEqual([both.pid]);
    expect(scan.holders.find((h) => h.pid === both.pid)!.fds).toEqual([{ fd: 3, inode: socketInode(a) }, { fd: 4, inode: socketInode(b) }]);
  });

  it('as root: finds a process of another uid (python3 as uid 65534 holding a passed fd)', async () => {
    expect(process.getuid!(), 'this test needs root: it starts a process as uid 65534 with setpriv').toBe(0);
    expect(fs.existsSync('/usr/bin/setpriv'), 'setpriv is missing: apt-get install util-linux').toBe(true);
    expect(fs.existsSync(PYTHON), `${PYTHON} is missing: apt-get install python3`).toBe(true);
    const l = tcpListener();
    const ino = socketInode(l);
    const py = `import os, time; os.fstat(3); print("holding", flush=True); time.sleep(${CHILD_LIFETIME_MS / 1000})`;
    const { child, line } = await holder('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', PYTHON, '-c', py], l);
    expect(line).toBe('holding');
    const scan = await scanHolders([ino], { mode });
    // setpriv execs python: same pid, so this process is the parent.
    expect(scan.holders).toEqual([expect.objectContaining({ pid: child.pid, ppid: process.pid, uid: NOBODY, comm: 'python3', fds: [{ fd: 3, inode: ino }] })]);
    expect(scan.unreadable).toBe(0);
  });

  it('as another uid: finds that uid\'s holders, counts the processes it cannot read, and does not see root\'s', async () => {
    expect(process.getuid!(), 'this test needs root: it runs the scanner as uid 65534 with setpriv').toBe(0);
    const built = path.join(ROOT, 'dist', 'holders', 'holders.js');
    expect(fs.existsSync(built), `${built} is missing: run \`npm run build\``).toBe(true);
    // holders.js needs only node:fs: copied alone into a directory uid 65534 can read.
    const dir = tmpDir();
    fs.chmodSync(dir, 0o755);
    fs.copyFileSync(built, path.join(dir, 'holders.js'));
    const l = tcpListener();
    const ino = socketInode(l);
    const rootHolder = await holder(process.execPath, ['-e', HOLD], l);
    const py = `import time; print("holding", flush=True); time.sleep(${CHILD_LIFETIME_MS / 1000})`;
    const nobodyHolder = await holder('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', PYTHON, '-c', py], l);
    const scanner = `require(${JSON.stringify(path.join(dir, 'holders.js'))}).scanHolders([${ino}], { mode: '${mode}' }).then((s) =>
      console.log(JSON.stringify({ uid: process.getuid(), pids: s.holders.map((h) => h.pid), uids: s.holders.map((h) => h.uid), unreadable: s.unreadable, scanned: s.scanned })))`;
    const { line } = await holder('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, '-e', `${LIVE} ${scanner}`], l);
    const r = JSON.parse(line) as { uid: number; pids: number[]; uids: number[]; unreadable: number; scanned: number };
    expect(r.uid).toBe(NOBODY);
    expect(r.pids).toEqual([nobodyHolder.child.pid]);
    expect(r.uids).toEqual([NOBODY]);
    expect(r.pids).not.toContain(rootHolder.child.pid);
    // At least this test process and the root holder are root's: unreadable, and counted.
    expect(r.unreadable).toBeGreaterThanOrEqual(2);
    expect(r.scanned).toBeGreaterThanOrEqual(1);
  });

  it('a holder deep in a large fd table is found, and the event loop turns while the scan runs', async () => {
    const l = tcpListener();
    const devnull = fs.openSync('/dev/null', 'r');
    opened.add(devnull);
    // The listener at fd 700 of 1,000: past two slices of one process's table.
    const table: Array<number | 'ignore' | 'pipe'> = Array.from({ length: 1000 }, (_, i) => (i === 700 ? l : i === 1 ? 'pipe' : i < 3 ? 'ignore' : devnull));
    const big = spawn(process.execPath, ['-e', HOLD], { stdio: table, detached: true });
    children.add(big);
    await new Promise((r) => big.stdout!.once('data', r));
    expect(fs.readdirSync(`/proc/${big.pid}/fd`).length).toBeGreaterThan(2 * HOLDERS_SLICE_LINKS);
    let turns = 0;
    let done = false;
    const spin = () => { if (!done) { turns++; setImmediate(spin); } };
    setImmediate(spin);
    const sliceLinks = 4;
    const scan = await scanHolders([socketInode(l)], { mode, sliceLinks });
    done = true;
    expect(scan.holders.map((h) => [h.pid, h.fds])).toEqual([[big.pid, [{ fd: 700, inode: socketInode(l) }]]]);
    // slices: a turn at least every 4 links, so at least 1000 / 4 for the big table
    // alone; threadpool: every readlink is a separate job, 8 at most in flight.
    expect(turns).toBeGreaterThanOrEqual(mode === 'slices' ? 1000 / sliceLinks : 1000 / HOLDERS_SCAN_CONCURRENCY);
  });

  it('stops at its time budget: with a budget of 0 no fd table is read and every process is counted as skipped', async () => {
    const l = tcpListener();
    const all = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).length;
    const scan = await scanHolders([socketInode(l)], { mode, budgetMs: 0 });
    expect(scan.scanned).toBe(0);
    expect(scan.holders).toEqual([]);
    // Processes come and go meanwhile: about every process.
    expect(scan.skipped).toBeGreaterThan(all / 2);
    const full = await scanHolders([socketInode(l)], { mode });
    expect(full.skipped).toBe(0);
    expect(full.scanned).toBeGreaterThan(0);
  });

  it('an empty set of inodes reads no fd table', async () => {
    const scan = await scanHolders([], { mode });
    expect(scan).toMatchObject({ holders: [], scanned: 0, unreadable: 0 });
    expect(scan.byInode.size).toBe(0);
  });
});

describe('HolderCache', () => {
  it('reuses a slow scan for at least HOLDERS_SCAN_DUTY_FACTOR times its duration, a fast one for the TTL', () => {
    expect(reuseWindowMs(1000, 20)).toBe(1000);
    expect(reuseWindowMs(1000, 1200)).toBe(1200 * HOLDERS_SCAN_DUTY_FACTOR);
  });

  it('one scan per TTL for the same listeners, shared while it runs; a new set or an expired TTL scans again', async () => {
    const l = tcpListener();
    const ino = socketInode(l);
    let now = 1_000_000;
    const cache = new HolderCache({ ttlMs: 1_000, now: () => now });
    const [a, b] = [cache.get([ino]), cache.get([ino, ino])];
    expect(a).toBe(b); // in flight: shared
    const first = await a;
    expect(cache.scans).toBe(1);
    now += 999;
    expect(await cache.get([ino])).toBe(first);
    expect(cache.scans).toBe(1);

    // A holder appears; the cached answer does not show it until the TTL is over.
    const { child } = await holder(process.execPath, ['-e', HOLD], l);
    expect((await cache.get([ino])).holders).toEqual([]);
    now += 1;
    const second = await cache.get([ino]);
    expect(cache.scans).toBe(2);
    expect(second.holders.map((h) => h.pid)).toEqual([child.pid]);

    const other = tcpListener();
    await cache.get([ino, socketInode(other)]);
    expect(cache.scans).toBe(3);
    cache.clear();
    await cache.get([ino, socketInode(other)]);
    expect(cache.scans).toBe(4);
  });

  it('passes its scan options on (mode, exclude)', async () => {
    const l = tcpListener();
    const ino = socketInode(l);
    const scan = await new HolderCache({ mode: 'threadpool', concurrency: 2, exclude: [] }).get([ino]);
    expect(scan.holders.map((h) => h.pid)).toEqual([process.pid]);
  });

  it('100 requests in a burst make one scan', async () => {
    const ino = socketInode(tcpListener());
    const cache = new HolderCache();
    const scans = await Promise.all(Array.from({ length: 100 }, () => cache.get([ino])));
    expect(new Set(scans).size).toBe(1);
    expect(cache.scans).toBe(1);
  });
});
