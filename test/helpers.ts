// Shared test helpers: real processes, real sockets, real HTTP on 127.0.0.1.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../src/native/binding';
import { EAGAIN } from '../src/native/errno';
import { BrokerConnection } from '../src/client/connection';
import type { StatusMessage } from '../src/protocol/messages';

export const ROOT = path.resolve(__dirname, '..');
export const CLI = path.join(ROOT, 'bin', 'fdbroker.js');
export const FIXTURES = path.join(__dirname, 'fixtures');

const started = new Set<ChildProcess>();
/** How long a process gets to exit on SIGTERM in cleanup() before SIGKILL. */
const CLEANUP_GRACE_MS = 1500;
/** After a process exits, how long exited waits for its stdout/stderr to be read to the end. */
const EXIT_DRAIN_MS = 500;
const dirs = new Set<string>();

/** A fresh short temp dir (Unix socket paths must stay under 108 bytes). */
export function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'fdb-'));
  dirs.add(d);
  return d;
}

export interface Proc {
  child: ChildProcess;
  pid: number;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the first stdout line matching `re`. */
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill: (sig?: NodeJS.Signals) => void;
}

export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Proc {
  // Each in its own process group, so cleanup() ends whatever it started too
  // (e.g. the program under `fdbroker exec`).
  const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, cwd: opts.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  started.add(child);
  let out = '';
  let err = '';
  const waiters: Array<{ re: RegExp; resolve: (m: RegExpMatchArray) => void }> = [];
  const check = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const m = out.match(waiters[i]!.re);
      if (m) {
        waiters[i]!.resolve(m);
        waiters.splice(i, 1);
      }
    }
  };
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); check(); });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    // 'exit' can come before the last of stdout/stderr is read: wait for
    // 'close' (streams drained), but not forever, since a child the process
    // left behind may hold its pipes open.
    child.on('exit', (code, signal) => {
      started.delete(child);
      const done = () => { clearTimeout(t); resolve({ code, signal }); };
      const t = setTimeout(done, EXIT_DRAIN_MS);
      child.once('close', done);
    });
  });
  return {
    child,
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: (sig = 'SIGTERM') => { if (child.exitCode === null && child.signalCode === null) child.kill(sig); },
    waitFor: (re, timeoutMs = 10_000) => new Promise((resolve, reject) => {
      const m = out.match(re);
      if (m) return resolve(m);
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${re} in stdout:\n${out}\nstderr:\n${err}`)), timeoutMs);
      waiters.push({ re, resolve: (mm) => { clearTimeout(t); resolve(mm); } });
      void exited.then(({ code, signal }) => {
        clearTimeout(t);
        reject(new Error(`process exited (${code ?? signal}) before ${re}; stdout:\n${out}\nstderr:\n${err}`));
      });
    }),
  };
}

export interface BrokerProc extends Proc {
  sock: string;
  /** name -> port (tcp/udp) from the ready line */
  ports: Record<string, number>;
}

/** Starts `fdbroker serve` and waits for its ready line. */
export async function startBroker(dir: string, listen: string[], extra: string[] = [], env?: NodeJS.ProcessEnv): Promise<BrokerProc> {
  const sock = path.join(dir, 'broker.sock');
  const p = run(process.execPath, [CLI, 'serve', sock, ...listen.flatMap((l) => ['--listen', l]), ...extra], { env });
  const m = await p.waitFor(/fdbroker: ready on .*\n/);
  const ports: Record<string, number> = {};
  for (const [, name, port] of m[0].matchAll(/(\S+)=(?:tcp|udp):\/\/\S+:(\d+)/g)) ports[name!] = Number(port);
  return { ...p, sock, ports };
}

/** Starts the fixture HTTP app adopting `names` from `sock`, and waits until it serves. */
export async function startApp(sock: string, extra: NodeJS.ProcessEnv = {}, fixture = 'http-app.js'): Promise<Proc> {
  const p = run(process.execPath, [path.join(FIXTURES, fixture)], { env: { FDBROKER_SOCK: sock, ...extra } });
  await p.waitFor(/^ready \d+/m);
  return p;
}

export function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** O_CLOEXEC as the `flags:` line of /proc/<pid>/fdinfo/<fd> shows it (octal; Linux, x64 and arm64). */
export const O_CLOEXEC = 0o2000000;

/**
 * The `flags:` of /proc/<pid>/fdinfo/<fd>: the open file's flags, with
 * O_CLOEXEC set when the fd is close-on-exec; undefined when `fd` is not open.
 */
export function fdinfoFlags(fd: number, pid: number | 'self' = 'self'): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const m = /^flags:\s+([0-7]+)$/m.exec(text);
  if (!m) throw new Error(`/proc/${pid}/fdinfo/${fd} has no flags line:\n${text}`);
  return parseInt(m[1]!, 8);
}

/** Whether `fd` is open in `pid`. */
export function fdIsOpen(fd: number, pid: number | 'self' = 'self'): boolean {
  return fdinfoFlags(fd, pid) !== undefined;
}

/** Whether the open fd `fd` of `pid` is close-on-exec; throws when it is not open. */
export function isCloexec(fd: number, pid: number | 'self' = 'self'): boolean {
  const flags = fdinfoFlags(fd, pid);
  if (flags === undefined) throw new Error(`fd ${fd} is not open in ${pid}`);
  return (flags & O_CLOEXEC) !== 0;
}

/** The fds of `pid` that are sockets, as inode numbers. */
export function socketInodes(pid: number): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const t = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      const m = t.match(/^socket:\[(\d+)\]$/);
      if (m) out.push(m[1]!);
    } catch { /* raced with close */ }
  }
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface LoadStats {
  ok: number;
  failed: number;
  byKind: Record<string, number>;
  servedBy: Record<string, number>;
}

/**
 * Sends GETs to 127.0.0.1:port with `concurrency` loops until stop() is called
 * (or `maxMs` passes). Every failure is counted by kind: an error code
 * (ECONNREFUSED, ECONNRESET, ...), 'timeout', or 'status-NNN'.
 */
export function loadLoop(port: number, opts: { concurrency?: number; keepAlive?: boolean; maxMs?: number; timeoutMs?: number; ca?: Buffer } = {}) {
  const stats: LoadStats = { ok: 0, failed: 0, byKind: {}, servedBy: {} };
  // With `ca`: HTTPS, trusting that certificate.
  const mod = opts.ca ? https : http;
  const agent = opts.ca
    ? new https.Agent({ keepAlive: opts.keepAlive ?? false, maxSockets: opts.concurrency ?? 8, ca: opts.ca })
    : new http.Agent({ keepAlive: opts.keepAlive ?? false, maxSockets: opts.concurrency ?? 8 });
  let stopping = false;
  const fail = (kind: string) => { stats.failed++; stats.byKind[kind] = (stats.byKind[kind] ?? 0) + 1; };
  const one = () => new Promise<void>((resolve) => {
    const req = mod.get({ host: '127.0.0.1', port, path: '/', agent: opts.keepAlive || opts.ca ? agent : false, timeout: opts.timeoutMs ?? 10_000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        if (res.statusCode === 200) {
          stats.ok++;
          const who = body.trim().split(' ')[0] ?? '?';
          stats.servedBy[who] = (stats.servedBy[who] ?? 0) + 1;
        } else fail(`status-${res.statusCode}`);
        resolve();
      });
      res.on('error', (e: NodeJS.ErrnoException) => { fail(e.code ?? e.message); resolve(); });
    });
    req.on('timeout', () => { req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })); });
    req.on('error', (e: NodeJS.ErrnoException) => { fail(e.code ?? e.message); resolve(); });
  });
  const deadline = Date.now() + (opts.maxMs ?? 60_000);
  const loops = Array.from({ length: opts.concurrency ?? 8 }, async () => {
    while (!stopping && Date.now() < deadline) await one();
  });
  const done = Promise.all(loops).then(() => { agent.destroy(); return stats; });
  return { stats, stop: () => { stopping = true; return done; }, done };
}

/** Kills every process a test started and removes temp dirs. Call in afterEach. */
export async function cleanup(): Promise<void> {
  // SIGTERM to each started process group, then SIGKILL to the group: a
  // SIGKILLed `fdbroker exec` alone would leave its program running.
  const killGroup = (pid: number, sig: NodeJS.Signals) => { try { process.kill(-pid, sig); } catch { /* gone */ } };
  const waits: Promise<unknown>[] = [];
  for (const c of started) {
    if (c.exitCode === null && c.signalCode === null) {
      waits.push(new Promise((r) => c.once('exit', r)));
      killGroup(c.pid!, 'SIGTERM');
    }
  }
  const pids = [...started].map((c) => c.pid!);
  const timer = setTimeout(() => { for (const pid of pids) killGroup(pid, 'SIGKILL'); }, CLEANUP_GRACE_MS);
  await Promise.all(waits);
  clearTimeout(timer);
  // Whatever is left in those groups (children of a process that exited).
  for (const pid of pids) killGroup(pid, 'SIGKILL');
  started.clear();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

/** HTTP GET returning status and body (one fresh connection). */
export function get(port: number, pathName = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: pathName, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The fd count of `pid` once it has stopped changing (8 equal reads over
 * 200 ms), so that a hang-up the process has not handled yet does not count.
 */
export async function quietFdCount(pid: number, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = fdCount(pid);
  let same = 0;
  while (same < 8 && Date.now() < deadline) {
    await sleep(25);
    const v = fdCount(pid);
    same = v === last ? same + 1 : 0;
    last = v;
  }
  return last;
}

/** VmRSS of `pid` in kB. */
export function rssKb(pid: number): number {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
  return Number(m![1]);
}

/** Waits (bounded) until `read()` matches `re`. */
export async function waitText(read: () => string, re: RegExp, timeoutMs = 5000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = read().match(re);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in:\n${read()}`);
    await sleep(20);
  }
}

/** The broker's status, over a fresh connection. */
export async function statusOf(sock: string): Promise<StatusMessage> {
  const conn = await BrokerConnection.connect(sock, { timeout: 5000 });
  try {
    return await conn.status();
  } finally {
    conn.close();
  }
}

/**
 * A raw SOCK_SEQPACKET connection to `sock` through the native layer, with no
 * library logic in between (EAGAIN on a full queue is retried for up to 5 s).
 * The caller owns the returned fd.
 */
export async function rawConnect(sock: string): Promise<number> {
  const n = native();
  const fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_SEQPACKET);
  if (fd < 0) throw new Error(`socket: ${fd}`);
  const deadline = Date.now() + 5000;
  for (;;) {
    const r = n.connect(fd, { family: 'unix', path: sock });
    if (r === 0) return fd;
    if (r !== EAGAIN || Date.now() > deadline) {
      n.close(fd);
      throw new Error(`connect ${sock}: ${r}`);
    }
    await sleep(2);
  }
}

/** A raw protocol client: whole JSON messages over SOCK_SEQPACKET, no library logic (fds that arrive are counted and closed). */
export class Raw {
  private readonly buf = Buffer.alloc(65536);
  private constructor(readonly fd: number) {}
  static async connect(sock: string): Promise<Raw> {
    return new Raw(await rawConnect(sock));
  }
  send(msg: object): void {
    const b = Buffer.from(JSON.stringify(msg));
    const r = native().sendmsg(this.fd, b, []);
    if (r !== b.length) throw new Error(`sendmsg: ${r}`);
  }
  /** The next message and how many fds came with it (closed at once), or null on timeout/EOF. */
  async next(timeoutMs = 5000): Promise<{ msg: Record<string, unknown>; fds: number; bytes: number } | null> {
    const n = native();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = n.recvmsg(this.fd, this.buf, 253);
      if (typeof r === 'number') {
        if (r === EAGAIN && Date.now() < deadline) {
          await sleep(2);
          continue;
        }
        return null;
      }
      for (const fd of r.fds) n.close(fd);
      if (r.bytes === 0 && r.fds.length === 0) return null;
      return { msg: JSON.parse(this.buf.subarray(0, r.bytes).toString('utf8')) as Record<string, unknown>, fds: r.fds.length, bytes: r.bytes };
    }
  }
  close(): void { native().close(this.fd); }
}
