// adoptListeners() and Listener, in this process, against a real broker
// process: typed errors without fd leaks, name selection, every listener kind,
// attach/close semantics, close-on-exec, and worker threads.
import * as dgram from 'node:dgram';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { adoptListeners, BrokerConnection, FdbrokerError, type Listener } from '../../src';
import { native } from '../../src/native/binding';
import { cleanup, fdCount, FIXTURES, get, isCloexec, Raw, startBroker, tmpDir } from '../helpers';
import { toListeners } from '../../src/client/adopt';
import { needOrSkip, ss } from '../requirements';

// tcp and udp; tests that need all three kinds add a unix listener in their own dir.

// Things a test opened in this process, closed after it whatever happened.
const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) {
    try { await c(); } catch { /* already closed */ }
  }
  await cleanup();
  // Let hangups of anything closed above land, so fd counts in the next test start settled.
  await new Promise((r) => setTimeout(r, 20));
});

const fds = () => fdCount(process.pid);

/** Runs `fn`, expects it to reject with an FdbrokerError of `code`, and returns the error. */
async function rejectsWith(fn: () => Promise<unknown>, code: string): Promise<FdbrokerError> {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected a rejection with ${code}`).toBeInstanceOf(Error);
  expect((caught as FdbrokerError).code).toBe(code);
  return caught as FdbrokerError;
}

function listenOn<T extends net.Server>(server: T, ...args: unknown[]): Promise<T> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    (server.listen as (...a: unknown[]) => void)(...args, () => resolve(server));
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    (server as http.Server).closeAllConnections?.();
    server.close(() => resolve());
  });
}

function httpServer(tag: string): http.Server {
  const server = http.createServer((req, res) => res.end(`${tag} ${req.url}\n`));
  closers.push(() => closeServer(server));
  return server;
}

function getUnix(socketPath: string, urlPath = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath, path: urlPath, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

function getHost(host: string, port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host, port, path: '/', agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

/** The listen(2) backlog of the TCP listener on 127.0.0.1:port, from `ss` (Send-Q), or undefined. */
function listenBacklog(port: number): number | undefined {
  try {
    const out = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' });
    const line = out.split('\n').find((l) => l.includes(`127.0.0.1:${port}`));
    const cols = line?.trim().split(/\s+/);
    return cols ? Number(cols[2]) : undefined;
  } catch {
    return undefined;
  }
}

/** A SOCK_SEQPACKET listener at `p` made with the native layer: accepts, never says a word. */
function silentSeqpacketServer(p: string): { accepted: () => number; close: () => void } {
  const n = native();
  const c = n.constants;
  const fd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
  expect(fd).toBeGreaterThanOrEqual(0);
  expect(n.bind(fd, { family: 'unix', path: p })).toBe(0);
  expect(n.listen(fd, 8)).toBe(0);
  const conns: number[] = [];
  let accepted = 0;
  const timer = setInterval(() => {
    for (let a = n.accept(fd); a >= 0; a = n.accept(fd)) { conns.push(a); accepted++; }
  }, 5);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    clearInterval(timer);
    for (const a of conns) n.close(a);
    n.close(fd);
    fs.rmSync(p, { force: true });
  };
  closers.push(close);
  return { accepted: () => accepted, close };
}

const BASE = ['web=tcp://127.0.0.1:0', 'dns=udp://127.0.0.1:0'];

describe('adoptListeners errors: stable codes, no leaked fds', () => {
  it('a missing control socket path is ERR_FDBROKER_NO_BROKER', async () => {
    const p = path.join(tmpDir(), 'nothing-here.sock');
    const before = fds();
    const err = await rejectsWith(() => adoptListeners(p, { timeout: 2000 }), 'ERR_FDBROKER_NO_BROKER');
    expect(err).toBeInstanceOf(FdbrokerError);
    expect(fds()).toBe(before);
  });

  it('a stale socket file with nobody listening is ERR_FDBROKER_NO_BROKER', async () => {
    const p = path.join(tmpDir(), 'stale.sock');
    // Bind a SOCK_SEQPACKET socket to the path, then close it without listening:
    // the file stays, nobody answers (ECONNREFUSED).
    const n = native();
    const fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_SEQPACKET);
    expect(n.bind(fd, { family: 'unix', path: p })).toBe(0);
    n.close(fd);
    expect(fs.lstatSync(p).isSocket()).toBe(true);
    const before = fds();
    await rejectsWith(() => adoptListeners(p, { timeout: 2000 }), 'ERR_FDBROKER_NO_BROKER');
    expect(fds()).toBe(before);
  });

  it('a SOCK_STREAM listener at the path is ERR_FDBROKER_NOT_A_BROKER', async () => {
    const p = path.join(tmpDir(), 'stream.sock');
    const server = net.createServer((s) => s.destroy());
    closers.push(() => closeServer(server));
    await listenOn(server, p);
    const before = fds();
    await rejectsWith(() => adoptListeners(p, { timeout: 2000 }), 'ERR_FDBROKER_NOT_A_BROKER');
    expect(fds()).toBe(before);
  });

  it('an unknown listener name is ERR_FDBROKER_UNKNOWN_LISTENER, and nothing else is kept', async () => {
    const broker = await startBroker(tmpDir(), BASE);
    const before = fds();
    const err = await rejectsWith(() => adoptListeners(broker.sock, { names: ['web', 'nope'], timeout: 5000 }),
      'ERR_FDBROKER_UNKNOWN_LISTENER');
    expect((err as FdbrokerError & { names?: string[] }).names).toEqual(['nope']);
    expect(fds()).toBe(before);
  });

  it('no common protocol version is ERR_FDBROKER_VERSION', async () => {
    const broker = await startBroker(tmpDir(), BASE);
    const before = fds();
    await rejectsWith(() => BrokerConnection.connect(broker.sock, { versions: [99], timeout: 5000 }), 'ERR_FDBROKER_VERSION');
    expect(fds()).toBe(before);
    // The broker is unharmed: a well-behaved client still adopts.
    const ls = await adoptListeners(broker.sock, { names: ['web'], timeout: 5000 });
    ls.web!.close();
  });

  it('a SOCK_SEQPACKET listener that never answers is ERR_FDBROKER_TIMEOUT within the timeout', async () => {
    const p = path.join(tmpDir(), 'silent.sock');
    const before = fds();
    const silent = silentSeqpacketServer(p);
    const t0 = Date.now();
    await rejectsWith(() => adoptListeners(p, { timeout: 300 }), 'ERR_FDBROKER_TIMEOUT');
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(3000);
    expect(silent.accepted()).toBe(1);
    // Checked while the fake server still holds the connection (a client fd
    // left open would otherwise be closed later by its hangup): only the fake's
    // listener and accepted fd are new.
    expect(fds()).toBe(before + 2);
    silent.close();
    expect(fds()).toBe(before);
  });

  it('BrokerConnection.connect times out with ERR_FDBROKER_TIMEOUT when the peer never answers the hello', async () => {
    // The same silent server, seen through the lower-level API: connect()'s handshake times out.
    const p = path.join(tmpDir(), 'silent2.sock');
    const before = fds();
    const silent = silentSeqpacketServer(p);
    await rejectsWith(() => BrokerConnection.connect(p, { timeout: 200 }), 'ERR_FDBROKER_TIMEOUT');
    expect(silent.accepted()).toBe(1);
    expect(fds()).toBe(before + 2);
    silent.close();
    expect(fds()).toBe(before);
  });
});

describe('adoptListeners names', () => {
  it('asking for one of three listeners returns only it, holding exactly one new fd', async () => {
    const dir = tmpDir();
    const broker = await startBroker(dir, [...BASE, `local=unix:${dir}/app.sock`]);
    const before = fds();
    const ls = await adoptListeners(broker.sock, { names: ['local'], timeout: 5000 });
    expect(Object.keys(ls)).toEqual(['local']);
    expect(fds()).toBe(before + 1);
    const l = ls.local!;
    expect(l.kind).toBe('unix');
    expect(l.path).toBe(`${dir}/app.sock`);
    expect(fs.readlinkSync(`/proc/self/fd/${l.fd}`)).toMatch(/^socket:\[\d+\]$/);
    l.close();
    expect(fds()).toBe(before);
  });

  it('asking for all returns all three (tcp, unix, udp) with what the broker announced', async () => {
    const dir = tmpDir();
    const broker = await startBroker(dir, [...BASE, `local=unix:${dir}/app.sock`]);
    const before = fds();
    const ls = await adoptListeners(broker.sock, { timeout: 5000 });
    closers.push(() => Object.values(ls).forEach((l) => l.close()));
    expect(Object.keys(ls).sort()).toEqual(['dns', 'local', 'web']);
    expect(fds()).toBe(before + 3);
    expect(ls.web).toMatchObject({ kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: broker.ports.web, backlog: 511 });
    expect(ls.dns).toMatchObject({ kind: 'udp', family: 'IPv4', address: '127.0.0.1', port: broker.ports.dns });
    expect(ls.local).toMatchObject({ kind: 'unix', family: 'unix', path: `${dir}/app.sock`, backlog: 511 });
    expect(new Set(Object.values(ls).map((l) => l.fd)).size).toBe(3);
    for (const l of Object.values(ls)) l.close();
    expect(fds()).toBe(before);
  });
});

describe('every listener kind serves', () => {
  it('tcp: an http server attached to the adopted listener answers on the broker\'s port', async () => {
    const broker = await startBroker(tmpDir(), BASE);
    const { web } = await adoptListeners(broker.sock, { names: ['web'], timeout: 5000 });
    const server = httpServer('tcp');
    await new Promise<void>((resolve) => web!.attach(server, resolve));
    const res = await get(broker.ports.web!, '/hello');
    expect(res).toEqual({ status: 200, body: 'tcp /hello\n' });
  });

  it('tcp: attach keeps the broker\'s backlog (plain listen({fd}) would reset it to 511)', async (ctx) => {
    const broker = await startBroker(tmpDir(), ['web=tcp://127.0.0.1:0?backlog=17']);
    const port = broker.ports.web!;
    needOrSkip(ctx, [ss()]);
    needOrSkip(ctx, [{ what: '`ss -ltn` showing the listen backlog (Send-Q)', missing: listenBacklog(port) === undefined ? 'no such column for the port' : undefined, fix: 'iproute2 on Linux >= 2.6.18' }]);
    expect(listenBacklog(port)).toBe(17);
    const { web } = await adoptListeners(broker.sock, { names: ['web'], timeout: 5000 });
    expect(web!.backlog).toBe(17);
    const server = httpServer('tcp');
    await new Promise<void>((resolve) => web!.attach(server, resolve));
    expect(listenBacklog(port)).toBe(17);
    expect((await get(port)).status).toBe(200);
  });

  it('unix: an http server attached to the adopted listener answers on the unix path', async () => {
    const dir = tmpDir();
    const sockPath = path.join(dir, 'app.sock');
    const broker = await startBroker(dir, [`local=unix:${sockPath}`]);
    const { local } = await adoptListeners(broker.sock, { names: ['local'], timeout: 5000 });
    const server = httpServer('unix');
    await new Promise<void>((resolve) => local!.attach(server, resolve));
    const res = await getUnix(sockPath, '/u');
    expect(res).toEqual({ status: 200, body: 'unix /u\n' });
  });

  it('udp: a dgram socket attached to the adopted listener receives and answers datagrams', async () => {
    const broker = await startBroker(tmpDir(), BASE);
    const port = broker.ports.dns!;
    const { dns } = await adoptListeners(broker.sock, { names: ['dns'], timeout: 5000 });
    const server = dgram.createSocket('udp4');
    closers.push(() => server.close());
    server.on('message', (msg, rinfo) => server.send(Buffer.concat([Buffer.from('echo '), msg]), rinfo.port, rinfo.address));
    await new Promise<void>((resolve) => dns!.attach(server, resolve));
    expect(server.address().port).toBe(port);
    const client = dgram.createSocket('udp4');
    closers.push(() => client.close());
    const reply = new Promise<string>((resolve) => client.once('message', (m) => resolve(m.toString())));
    client.send('ping', port, '127.0.0.1');
    expect(await reply).toBe('echo ping');
  });

  it('tcp over IPv6: tcp://[::1]:0 serves HTTP on ::1', async (ctx) => {
    // Is ::1 usable here? A plain Node listen tells.
    const probe = net.createServer();
    const v6 = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(0, '::1', () => probe.close(() => resolve(true)));
    });
    if (!v6) ctx.skip('::1 is not available on this machine (net.listen on ::1 failed)');
    const broker = await startBroker(tmpDir(), ['v6=tcp://[::1]:0']);
    const { v6: l } = await adoptListeners(broker.sock, { names: ['v6'], timeout: 5000 });
    expect(l).toMatchObject({ kind: 'tcp', family: 'IPv6', address: '::1', port: broker.ports.v6 });
    const server = httpServer('v6');
    await new Promise<void>((resolve) => l!.attach(server, resolve));
    const res = await getHost('::1', broker.ports.v6!);
    expect(res).toEqual({ status: 200, body: 'v6 /\n' });
  });
});

describe('Listener semantics', () => {
  it('server.listen(listener) (the plain Node form) also serves', async () => {
    const broker = await startBroker(tmpDir(), BASE);
    const { web } = await adoptListeners(broker.sock, { names: ['web'], timeout: 5000 });
    const server = httpServer('plain');
    await listenOn(server, web as Listener);
    expect((server.address() as net.AddressInfo).port).toBe(broker.ports.web);
    expect(await get(broker.ports.web!)).toEqual({ status: 200, body: 'plain /\n' });
  });

  it('attaching a listener twice throws ERR_FDBROKER_ALREADY_ATTACHED', async () => {
    const broker = await startBroker(tmpDir(), BASE);
    const { web } = await adoptListeners(broker.sock, { names: ['web'], timeout: 5000 });
    const first = httpServer('first');
    await new Promise<void>((resolve) => web!.attach(first, resolve));
    const second = http.createServer();
    let caught: unknown;
    try { web!.attach(second); } catch (err) { caught = err; }
    expect((caught as FdbrokerError).code).toBe('ERR_FDBROKER_ALREADY_ATTACHED');
    expect(second.listening).toBe(false);
    // close() on an attached listener leaves the server's fd alone.
    web!.close();
    expect(await get(broker.ports.web!)).toEqual({ status: 200, body: 'first /\n' });
  });

  it('listener.close() releases the fd, is idempotent, and a closed listener cannot be attached', async () => {
    const broker = await startBroker(tmpDir(), BASE);
    const before = fds();
    const { web } = await adoptListeners(broker.sock, { names: ['web'], timeout: 5000 });
    const fd = web!.fd;
    expect(fds()).toBe(before + 1);
    expect(fs.existsSync(`/proc/self/fd/${fd}`)).toBe(true);
    web!.close();
    expect(web!.fd).toBe(-1);
    expect(fds()).toBe(before);
    web!.close();
    expect(fds()).toBe(before);
    let caught: unknown;
    try { web!.attach(http.createServer()); } catch (err) { caught = err; }
    expect((caught as FdbrokerError).code).toBe('ERR_FDBROKER_ALREADY_ATTACHED');
    // The broker still holds its own: the port still accepts (and a new adopter serves it).
    const again = await adoptListeners(broker.sock, { names: ['web'], timeout: 5000 });
    const server = httpServer('again');
    await new Promise<void>((resolve) => again.web!.attach(server, resolve));
    expect((await get(broker.ports.web!)).body).toBe('again /\n');
  });

  it('received fds are close-on-exec', async () => {
    const dir = tmpDir();
    const broker = await startBroker(dir, [...BASE, `local=unix:${dir}/app.sock`]);
    const ls = await adoptListeners(broker.sock, { timeout: 5000 });
    closers.push(() => Object.values(ls).forEach((l) => l.close()));
    expect(Object.keys(ls)).toHaveLength(3);
    for (const l of Object.values(ls)) expect(isCloexec(l.fd), `${l.name} is close-on-exec`).toBe(true);
  });

  it('adoption works inside a worker_threads Worker, which then serves HTTP', async () => {
    const broker = await startBroker(tmpDir(), BASE);
    const worker = new Worker(path.join(FIXTURES, 'adopt-worker.js'), { workerData: { sock: broker.sock, name: 'web' } });
    closers.push(() => worker.terminate());
    const first = await new Promise<{ ready?: boolean; threadId?: number; error?: { code: string; message: string } }>(
      (resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`worker exited ${code}`)));
      });
    expect(first.error).toBeUndefined();
    expect(first.ready).toBe(true);
    expect(first.threadId).toBe(worker.threadId);
    const res = await get(broker.ports.web!);
    expect(res).toEqual({ status: 200, body: `worker ${worker.threadId}\n` });
    const stopped = new Promise((resolve) => worker.once('message', resolve));
    worker.postMessage('stop');
    expect(await stopped).toEqual({ stopped: true });
  });
});

describe('adoptListeners: one round trip, checks at first use', () => {
  it('sends its adopt right behind the hello, before any answer', async () => {
    // A peer that reads and never answers: what it has read when the client
    // gives up is what the client sent without waiting for a welcome.
    const p = path.join(tmpDir(), 'reader.sock');
    const n = native();
    const c = n.constants;
    const lfd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
    expect(n.bind(lfd, { family: 'unix', path: p })).toBe(0);
    expect(n.listen(lfd, 8)).toBe(0);
    const got: string[] = [];
    const conns: number[] = [];
    const buf = Buffer.alloc(65536);
    const timer = setInterval(() => {
      for (let a = n.accept(lfd); a >= 0; a = n.accept(lfd)) conns.push(a);
      for (const a of conns) {
        for (let r = n.recvmsg(a, buf, 0); typeof r !== 'number' && r.bytes > 0; r = n.recvmsg(a, buf, 0)) {
          got.push(String((JSON.parse(buf.subarray(0, r.bytes).toString()) as { type: string }).type));
        }
      }
    }, 5);
    closers.push(() => { clearInterval(timer); for (const a of conns) n.close(a); n.close(lfd); });
    await rejectsWith(() => adoptListeners(p, { names: ['web'], timeout: 300 }), 'ERR_FDBROKER_TIMEOUT');
    await new Promise((r) => setTimeout(r, 20));
    expect(got).toEqual(['hello', 'adopt']);
  });

  it('a broker answers a pipelined adopt only after a hello it accepts', async () => {
    const broker = await startBroker(tmpDir(), BASE);
    const raw = await Raw.connect(broker.sock);
    closers.push(() => raw.close());
    raw.send({ type: 'hello', versions: [99] });
    raw.send({ type: 'adopt', id: 1, names: null });
    // Everything until the broker hangs up (it closes with the adopt unread,
    // so the kernel may report ECONNRESET once before the reply).
    const n = native();
    const buf = Buffer.alloc(65536);
    const answers: Array<{ type: string; code?: string; fds: number }> = [];
    const deadline = Date.now() + 5000;
    let resets = 0;
    for (;;) {
      const r = n.recvmsg(raw.fd, buf, 253);
      if (typeof r === 'number') {
        if (r === -104 && resets++ === 0) continue; // ECONNRESET
        if (r === -11 && Date.now() < deadline) { await new Promise((res) => setTimeout(res, 5)); continue; } // EAGAIN
        break;
      }
      if (r.bytes === 0 && r.fds.length === 0) break;
      for (const fd of r.fds) n.close(fd);
      answers.push({ ...(JSON.parse(buf.subarray(0, r.bytes).toString()) as { type: string; code?: string }), fds: r.fds.length });
    }
    expect(answers).toEqual([expect.objectContaining({ type: 'error', code: 'ERR_FDBROKER_VERSION', fds: 0 })]);
    // The library's pipelined adopt reports the same.
    await rejectsWith(() => BrokerConnection.adoptOnce(broker.sock, ['web'], { versions: [99], timeout: 5000 }), 'ERR_FDBROKER_VERSION');
    const ok = await Raw.connect(broker.sock);
    closers.push(() => ok.close());
    ok.send({ type: 'hello', versions: [1] });
    ok.send({ type: 'adopt', id: 1, names: ['web'] });
    expect((await ok.next())?.msg).toMatchObject({ type: 'welcome' });
    const answer = await ok.next();
    expect(answer?.msg).toMatchObject({ type: 'listeners', id: 1, last: true });
    expect(answer?.fds).toBe(1);
  });

  it('check "use": a wrong fd throws ERR_FDBROKER_BAD_LISTENER when first used, and is closed', () => {
    const n = native();
    const before = fds();
    const server = net.createServer();
    const fd = n.socket(n.constants.AF_INET, n.constants.SOCK_STREAM);
    expect(n.bind(fd, { family: 'inet', address: '127.0.0.1', port: 0 })).toBe(0);
    expect(n.listen(fd, 8)).toBe(0);
    // Announced as udp, but a listening tcp socket.
    const ls = toListeners([{ info: { name: 'dns', kind: 'udp', family: 'IPv4', address: '127.0.0.1', port: 0 }, fd }], ['dns'], 'use');
    expect(fds()).toBe(before + 1);
    let caught: unknown;
    try { void ls.dns!.fd; } catch (err) { caught = err; }
    expect((caught as FdbrokerError).code).toBe('ERR_FDBROKER_BAD_LISTENER');
    expect(ls.dns!.fd).toBe(-1);
    expect(() => ls.dns!.attach(server)).toThrow(FdbrokerError);
    expect(fds()).toBe(before);
  });

  it('check "adopt": the same fd fails toListeners at once, and is closed', () => {
    const n = native();
    const before = fds();
    const fd = n.socket(n.constants.AF_INET, n.constants.SOCK_STREAM);
    expect(n.bind(fd, { family: 'inet', address: '127.0.0.1', port: 0 })).toBe(0);
    expect(n.listen(fd, 8)).toBe(0);
    let caught: unknown;
    try {
      toListeners([{ info: { name: 'dns', kind: 'udp', family: 'IPv4', address: '127.0.0.1', port: 0 }, fd }], ['dns'], 'adopt');
    } catch (err) { caught = err; }
    expect((caught as FdbrokerError).code).toBe('ERR_FDBROKER_BAD_LISTENER');
    expect(fds()).toBe(before);
  });

  it('listeners never used are closed by close(), leaving no fd', async () => {
    const broker = await startBroker(tmpDir(), BASE);
    const before = fds();
    const ls = await adoptListeners(broker.sock, { timeout: 5000 });
    expect(fds()).toBe(before + 2);
    for (const l of Object.values(ls)) l.close();
    expect(fds()).toBe(before);
  });
});
