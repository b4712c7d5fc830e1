// The native layer and the Channel transport on real sockets, no mocks:
// SCM_RIGHTS counts and limits, truncation without leaks, close-on-exec,
// EPIPE without SIGPIPE, EAGAIN, SO_PEERCRED, Poller on the event loop and in
// worker threads, and the socket introspection calls.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { native, type RecvResult } from '../../src/native/binding';
import { Channel } from '../../src/transport/channel';
import { FdbrokerError } from '../../src/protocol/errors';
import { cleanup, fdIsOpen, isCloexec, ROOT, run, tmpDir } from '../helpers';

const n = native();
const c = n.constants;
const EBADF = -9;
const EAGAIN = -11;
const EPIPE = -32;
const NODE_GYP_BUILD = path.join(ROOT, 'node_modules', 'node-gyp-build');

/** Open fds of this process (readdir's own directory fd is counted every time alike). */
const openFds = () => fs.readdirSync('/proc/self/fd').length;

// Every fd a test opens is tracked, so a failing test cannot leak into the next.
const opened = new Set<number>();
function track(fd: number): number {
  expect(fd).toBeGreaterThanOrEqual(0);
  opened.add(fd);
  return fd;
}
function closeFd(fd: number): void {
  opened.delete(fd);
  expect(n.close(fd)).toBe(0);
}
function closeAll(fds: Iterable<number>): void {
  for (const fd of [...fds]) closeFd(fd);
}
/** The fd now belongs to someone else (a Channel); stop tracking it. */
function untrack(fd: number): number {
  opened.delete(fd);
  return fd;
}

afterEach(async () => {
  for (const fd of opened) n.close(fd);
  opened.clear();
  await cleanup();
});

/** A connected AF_UNIX SOCK_SEQPACKET pair made with socket/bind/listen/connect/accept. */
function seqpacketPair(): [number, number] {
  const p = path.join(tmpDir(), 'pair.sock');
  const l = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
  expect(l).toBeGreaterThanOrEqual(0);
  try {
    expect(n.bind(l, { family: 'unix', path: p })).toBe(0);
    expect(n.listen(l, 1)).toBe(0);
    const a = track(n.socket(c.AF_UNIX, c.SOCK_SEQPACKET));
    expect(n.connect(a, { family: 'unix', path: p })).toBe(0);
    const b = track(n.accept(l));
    return [a, b];
  } finally {
    expect(n.close(l)).toBe(0);
    fs.rmSync(p, { force: true });
  }
}

/** A listening TCP socket on 127.0.0.1, an ephemeral port. */
function tcpListener(): number {
  const s = track(n.socket(c.AF_INET, c.SOCK_STREAM));
  expect(n.bind(s, { family: 'inet', address: '127.0.0.1', port: 0 })).toBe(0);
  expect(n.listen(s, 16)).toBe(0);
  return s;
}

function tcpListeners(count: number): number[] {
  return Array.from({ length: count }, tcpListener);
}

function recv(fd: number, buffer: Buffer, maxFds: number): RecvResult {
  const r = n.recvmsg(fd, buffer, maxFds);
  if (typeof r === 'number') throw new Error(`recvmsg returned ${r}`);
  return r;
}

const ino = (fd: number) => fs.fstatSync(fd).ino;
const link = (fd: number) => fs.readlinkSync(`/proc/self/fd/${fd}`);

/** Received fds are new, distinct, open, and each names the same socket as the one sent at its index. */
function expectSameSockets(sent: number[], received: number[]): void {
  expect(received).toHaveLength(sent.length);
  expect(new Set(received).size).toBe(received.length);
  const sentSet = new Set(sent);
  for (let i = 0; i < sent.length; i++) {
    const r = received[i]!;
    expect(sentSet.has(r)).toBe(false);
    expect(fdIsOpen(r)).toBe(true);
    expect(ino(r)).toBe(ino(sent[i]!));
    expect(link(r)).toBe(link(sent[i]!));
    expect(link(r)).toMatch(/^socket:\[\d+\]$/);
  }
}

function waitForClose(ch: Channel): Promise<void> {
  return ch.isClosed ? new Promise((r) => setImmediate(r)) : new Promise((resolve) => ch.once('close', resolve));
}

describe('native: fds through SCM_RIGHTS', () => {
  it.each([0, 1, 253])('sends and receives %i fds in one message, intact', (count) => {
    const base = openFds();
    const [a, b] = seqpacketPair();
    const sent = tcpListeners(count);
    const payload = Buffer.concat([Buffer.from(`${count} fds:`), randomBytes(4096)]);

    expect(n.sendmsg(a, payload, sent)).toBe(payload.length);
    const afterSend = openFds();
    const buf = Buffer.alloc(64 * 1024);
    const r = recv(b, buf, c.SCM_MAX_FD);
    expect(r.truncated).toBe(false);
    expect(r.ctrunc).toBe(false);
    expect(r.foreign).toBe(false);
    expect(r.closed).toBe(0);
    expect(r.bytes).toBe(payload.length);
    expect(buf.subarray(0, r.bytes).equals(payload)).toBe(true);
    expect(openFds()).toBe(afterSend + count);
    expectSameSockets(sent, r.fds);
    for (const fd of r.fds) {
      track(fd);
      // Still a listening TCP socket on the same port.
      expect(n.getsockoptInt(fd, c.SOL_SOCKET, c.SO_ACCEPTCONN)).toEqual({ value: 1 });
    }
    expect(r.fds.map((fd) => n.sockname(fd))).toEqual(sent.map((fd) => n.sockname(fd)));

    // Nothing else is waiting.
    expect(n.recvmsg(b, buf, c.SCM_MAX_FD)).toBe(EAGAIN);
    closeAll(r.fds);
    closeAll(sent);
    closeAll([a, b]);
    expect(openFds()).toBe(base);
  });

  it('a message with fds and an empty payload arrives as 0 bytes plus its fds', () => {
    const base = openFds();
    const [a, b] = seqpacketPair();
    const [l] = tcpListeners(1);
    expect(n.sendmsg(a, Buffer.alloc(0), [l!])).toBe(0);
    const r = recv(b, Buffer.alloc(16), 4);
    expect(r.bytes).toBe(0);
    expect(r.truncated).toBe(false);
    expectSameSockets([l!], r.fds);
    closeAll(r.fds.map(track));
    closeAll([l!, a, b]);
    expect(openFds()).toBe(base);
  });

  it('sends 1,000 fds in four messages of at most 253, all queued before any is read', () => {
    const base = openFds();
    const [a, b] = seqpacketPair();
    const sent = tcpListeners(1000);
    const chunks: number[][] = [];
    for (let i = 0; i < sent.length; i += c.SCM_MAX_FD) chunks.push(sent.slice(i, i + c.SCM_MAX_FD));
    expect(chunks.map((ch) => ch.length)).toEqual([253, 253, 253, 241]);

    const payloads = chunks.map((_, i) => Buffer.from(`chunk ${i} ${randomBytes(32).toString('hex')}`));
    chunks.forEach((chunk, i) => expect(n.sendmsg(a, payloads[i]!, chunk)).toBe(payloads[i]!.length));

    const received: number[] = [];
    const buf = Buffer.alloc(1024);
    for (let i = 0; i < chunks.length; i++) {
      const r = recv(b, buf, c.SCM_MAX_FD);
      expect(r.truncated).toBe(false);
      expect(buf.subarray(0, r.bytes).equals(payloads[i]!)).toBe(true);
      expect(r.fds).toHaveLength(chunks[i]!.length);
      received.push(...r.fds.map(track));
    }
    expect(n.recvmsg(b, buf, c.SCM_MAX_FD)).toBe(EAGAIN);
    expectSameSockets(sent, received);
    expect(new Set(received.map(ino)).size).toBe(1000);

    closeAll(received);
    closeAll(sent);
    closeAll([a, b]);
    expect(openFds()).toBe(base);
  });

  it('Channel carries 1,000 fds in four messages to a message listener', async () => {
    const base = openFds();
    const [a, b] = seqpacketPair();
    const sent = tcpListeners(1000);
    const tx = new Channel(untrack(a));
    const rx = new Channel(untrack(b));
    const got: Array<{ payload: string; fds: number[] }> = [];
    const done = new Promise<void>((resolve) => {
      rx.on('message', (payload, fds) => {
        got.push({ payload: payload.toString(), fds: fds.map(track) });
        if (got.length === 4) resolve();
      });
    });
    rx.resume();
    for (let i = 0; i < 4; i++) tx.send(Buffer.from(`part ${i}`), sent.slice(i * 253, (i + 1) * 253));
    await done;
    expect(got.map((m) => m.payload)).toEqual(['part 0', 'part 1', 'part 2', 'part 3']);
    expect(got.map((m) => m.fds.length)).toEqual([253, 253, 253, 241]);
    expectSameSockets(sent, got.flatMap((m) => m.fds));

    tx.close();
    rx.close();
    await Promise.all([waitForClose(tx), waitForClose(rx)]);
    closeAll(got.flatMap((m) => m.fds));
    closeAll(sent);
    expect(openFds()).toBe(base);
  });
});

describe('native: the 253-fd limit', () => {
  it('more than 253 fds in one send is refused before the syscall with a RangeError', () => {
    const [a, b] = seqpacketPair();
    const [l] = tcpListeners(1);
    // An fd number that is not open: the kernel would answer EBADF.
    let bogus = 19_000;
    while (fdIsOpen(bogus)) bogus--;
    // 253 bad fds reach the kernel (EBADF); 254 never get that far.
    expect(n.sendmsg(a, Buffer.from('x'), Array(253).fill(bogus))).toBe(EBADF);
    expect(() => n.sendmsg(a, Buffer.from('x'), Array(254).fill(bogus))).toThrow(RangeError);
    expect(() => n.sendmsg(a, Buffer.from('x'), Array(254).fill(l))).toThrow(/253/);
    expect(() => n.sendmsg(a, Buffer.from('x'), Array(1000).fill(l))).toThrow(RangeError);
    expect(n.recvmsg(b, Buffer.alloc(16), c.SCM_MAX_FD)).toBe(EAGAIN);
    // The socket is unharmed: a legal send still goes through.
    expect(n.sendmsg(a, Buffer.from('ok'), Array(253).fill(l))).toBe(2);
    const r = recv(b, Buffer.alloc(16), c.SCM_MAX_FD);
    expect(r.fds).toHaveLength(253);
    closeAll(r.fds.map(track));
    closeAll([l!, a, b]);
  });

  it('recvmsg refuses a maxFds outside 0..253', () => {
    const [a, b] = seqpacketPair();
    expect(() => n.recvmsg(b, Buffer.alloc(16), 254)).toThrow(RangeError);
    expect(() => n.recvmsg(b, Buffer.alloc(16), -1)).toThrow(RangeError);
    closeAll([a, b]);
  });

  it('Channel.send with 254 fds throws ERR_FDBROKER_TOO_MANY_FDS and leaves the channel open', async () => {
    const [a, b] = seqpacketPair();
    const [l] = tcpListeners(1);
    const tx = new Channel(untrack(a));
    let thrown: unknown;
    try {
      tx.send(Buffer.from('x'), Array(254).fill(l));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(FdbrokerError);
    expect((thrown as FdbrokerError).code).toBe('ERR_FDBROKER_TOO_MANY_FDS');
    expect(tx.isClosed).toBe(false);
    expect(n.recvmsg(b, Buffer.alloc(16), c.SCM_MAX_FD)).toBe(EAGAIN);
    tx.send(Buffer.from('fine'), Array(253).fill(l));
    const r = recv(b, Buffer.alloc(16), c.SCM_MAX_FD);
    expect(r.fds).toHaveLength(253);
    closeAll(r.fds.map(track));
    tx.close();
    await waitForClose(tx);
    closeAll([l!, b]);
  });
});

describe('native: truncated messages close their fds', () => {
  it('a payload larger than the buffer (MSG_TRUNC): truncated, no fds, nothing leaked', () => {
    const base = openFds();
    const [a, b] = seqpacketPair();
    const sent = tcpListeners(3);
    const payload = randomBytes(100);
    expect(n.sendmsg(a, payload, sent)).toBe(100);
    const before = openFds();
    const buf = Buffer.alloc(10);
    const r = recv(b, buf, c.SCM_MAX_FD);
    expect(r.truncated).toBe(true);
    expect(r.ctrunc).toBe(false);
    expect(r.fds).toEqual([]);
    expect(r.closed).toBe(3);
    expect(r.bytes).toBe(10);
    expect(buf.equals(payload.subarray(0, 10))).toBe(true);
    expect(openFds()).toBe(before);
    // The whole packet was consumed; the rest of it is not read as a new message.
    expect(n.recvmsg(b, Buffer.alloc(200), c.SCM_MAX_FD)).toBe(EAGAIN);
    closeAll(sent);
    closeAll([a, b]);
    expect(openFds()).toBe(base);
  });

  it('more fds than the receiver has room for (MSG_CTRUNC): truncated, no fds, nothing leaked', () => {
    const base = openFds();
    const [a, b] = seqpacketPair();
    const sent = tcpListeners(5);
    expect(n.sendmsg(a, Buffer.from('five'), sent)).toBe(4);
    const before = openFds();
    const r = recv(b, Buffer.alloc(64), 2);
    expect(r.truncated).toBe(true);
    expect(r.ctrunc).toBe(true);
    expect(r.fds).toEqual([]);
    expect(r.closed).toBeGreaterThanOrEqual(2);
    expect(r.closed).toBeLessThan(5);
    expect(openFds()).toBe(before);
    expect(n.recvmsg(b, Buffer.alloc(64), c.SCM_MAX_FD)).toBe(EAGAIN);
    closeAll(sent);
    closeAll([a, b]);
    expect(openFds()).toBe(base);
  });

  // The control buffer is sized with CMSG_SPACE, which rounds up to 8 bytes: for
  // an odd maxFds (and for 0, which gets room for 1) one fd more than asked for
  // fits without MSG_CTRUNC. The limit must still hold exactly.
  it.each([
    [0, 1],
    [1, 2],
    [3, 4],
  ])('maxFds %i is exact: a message with %i fds is truncated and its fds closed', (maxFds, count) => {
    const base = openFds();
    const [a, b] = seqpacketPair();
    const sent = tcpListeners(count);
    expect(n.sendmsg(a, Buffer.from('x'), sent)).toBe(1);
    const before = openFds();
    const r = recv(b, Buffer.alloc(16), maxFds);
    for (const fd of r.fds) track(fd);
    expect(r.fds).toEqual([]);
    expect(r.truncated).toBe(true);
    expect(r.closed).toBe(count);
    expect(openFds()).toBe(before);
    closeAll(sent);
    closeAll([a, b]);
    expect(openFds()).toBe(base);
  });

  it('Channel emits ERR_FDBROKER_TRUNCATED for a message over maxMessageBytes, and leaks nothing', async () => {
    const base = openFds();
    const [a, b] = seqpacketPair();
    const sent = tcpListeners(2);
    const rx = new Channel(untrack(b), { maxMessageBytes: 16 });
    const messages: number[] = [];
    rx.on('message', (_p, fds) => messages.push(...fds.map(track)));
    rx.resume();
    const before = openFds();
    const errored = new Promise<{ err: Error; fds: number }>((resolve) => {
      // Counted inside the handler: the channel closed its own socket, nothing else changed.
      rx.once('error', (err) => resolve({ err, fds: openFds() }));
    });
    expect(n.sendmsg(a, randomBytes(100), sent)).toBe(100);
    const { err, fds } = await errored;
    expect(err).toBeInstanceOf(FdbrokerError);
    expect((err as FdbrokerError).code).toBe('ERR_FDBROKER_TRUNCATED');
    expect(fds).toBe(before - 1);
    expect(messages).toEqual([]);
    expect(rx.isClosed).toBe(true);
    await waitForClose(rx);
    closeAll(sent);
    closeAll([a]);
    expect(openFds()).toBe(base);
  });

  it('Channel emits ERR_FDBROKER_TRUNCATED for more fds than maxFdsPerMessage, and leaks nothing', async () => {
    const base = openFds();
    const [a, b] = seqpacketPair();
    const sent = tcpListeners(5);
    const rx = new Channel(untrack(b), { maxFdsPerMessage: 2 });
    const messages: number[] = [];
    rx.on('message', (_p, fds) => messages.push(...fds.map(track)));
    rx.resume();
    const before = openFds();
    const errored = new Promise<{ err: Error; fds: number }>((resolve) => {
      rx.once('error', (err) => resolve({ err, fds: openFds() }));
    });
    expect(n.sendmsg(a, Buffer.from('too many'), sent)).toBe(8);
    const { err, fds } = await errored;
    expect((err as FdbrokerError).code).toBe('ERR_FDBROKER_TRUNCATED');
    expect(fds).toBe(before - 1);
    expect(messages).toEqual([]);
    await waitForClose(rx);
    closeAll(sent);
    closeAll([a]);
    expect(openFds()).toBe(base);
  });
});

describe('native: fd flags', () => {
  it('received fds are close-on-exec even when the sent fd is not', () => {
    const [a, b] = seqpacketPair();
    const [plain, cloexec] = tcpListeners(2);
    expect(n.setCloexec(plain!, false)).toBe(0);
    expect(isCloexec(plain!)).toBe(false);
    expect(isCloexec(cloexec!)).toBe(true);
    expect(n.sendmsg(a, Buffer.from('x'), [plain!, cloexec!])).toBe(1);
    const r = recv(b, Buffer.alloc(16), 4);
    expect(r.fds).toHaveLength(2);
    for (const fd of r.fds.map(track)) expect(isCloexec(fd)).toBe(true);
    // The sender's own fd is untouched.
    expect(isCloexec(plain!)).toBe(false);
    closeAll(r.fds);
    closeAll([plain!, cloexec!, a, b]);
  });

  it('sockets from socket(), accept() and dup() are close-on-exec', () => {
    const [a, b] = seqpacketPair();
    const [l] = tcpListeners(1);
    const d = track(n.dup(l!));
    for (const fd of [a, b, l!, d]) expect(isCloexec(fd)).toBe(true);
    expect(ino(d)).toBe(ino(l!));
    closeAll([d, l!, a, b]);
  });
});

describe('native: errors come back as negative errno', () => {
  it('sending to a closed peer returns EPIPE (-32) and raises no SIGPIPE', () => {
    const base = openFds();
    const [a, b] = seqpacketPair();
    const [l] = tcpListeners(1);
    closeFd(b);
    expect(n.sendmsg(a, Buffer.from('anyone?'), [])).toBe(EPIPE);
    expect(n.sendmsg(a, Buffer.from('anyone?'), [l!])).toBe(EPIPE);
    // The fd offered in the failed send is still ours and open.
    expect(fdIsOpen(l!)).toBe(true);
    expect(process.kill(process.pid, 0)).toBe(true);
    closeAll([l!, a]);
    expect(openFds()).toBe(base);
  });

  it('a process listening for SIGPIPE receives none when sendmsg hits EPIPE (MSG_NOSIGNAL)', async () => {
    // Node ignores SIGPIPE, so only a process that installs a handler can see
    // whether the kernel raised it. Done in a child so this process's
    // disposition of SIGPIPE is never changed.
    const dir = tmpDir();
    const script = `
      const n = require(${JSON.stringify(NODE_GYP_BUILD)})(${JSON.stringify(ROOT)});
      const c = n.constants;
      let signals = 0;
      process.on('SIGPIPE', () => { signals++; });
      const p = ${JSON.stringify(path.join(dir, 'p.sock'))};
      const l = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
      n.bind(l, { family: 'unix', path: p });
      n.listen(l, 1);
      const a = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
      n.connect(a, { family: 'unix', path: p });
      const b = n.accept(l);
      n.close(b);
      const r = n.sendmsg(a, Buffer.from('x'), []);
      // The signal, had there been one, is already pending in libuv's signal pipe.
      setTimeout(() => { console.log('result ' + r + ' signals ' + signals); }, 200);
    `;
    const child = run(process.execPath, ['-e', script]);
    const { code, signal } = await child.exited;
    expect(signal).toBe(null);
    expect(code).toBe(0);
    expect(child.stdout()).toBe('result -32 signals 0\n');
  });

  it('EAGAIN (-11): recvmsg on an empty socket, accept with nothing pending, sendmsg on a full socket', () => {
    const [a, b] = seqpacketPair();
    const buf = Buffer.alloc(2048);
    expect(n.recvmsg(b, buf, 4)).toBe(EAGAIN);
    expect(n.recvmsg(a, buf, 0)).toBe(EAGAIN);
    const [l] = tcpListeners(1);
    expect(n.accept(l!)).toBe(EAGAIN);

    expect(n.setsockoptInt(a, c.SOL_SOCKET, c.SO_SNDBUF, 4096)).toBe(0);
    const payload = randomBytes(1024);
    let sent = 0;
    let r = 0;
    for (let i = 0; i < 1_000_000; i++) {
      r = n.sendmsg(a, payload, []);
      if (r < 0) break;
      expect(r).toBe(1024);
      sent++;
    }
    expect(r).toBe(EAGAIN);
    expect(sent).toBeGreaterThan(0);
    // Still full: EAGAIN again, and every message sent so far is readable, in order, intact.
    expect(n.sendmsg(a, payload, [])).toBe(EAGAIN);
    let read = 0;
    for (;;) {
      const m = n.recvmsg(b, buf, 0);
      if (m === EAGAIN) break;
      if (typeof m === 'number') throw new Error(`recvmsg ${m}`);
      expect(m.bytes).toBe(1024);
      expect(buf.subarray(0, 1024).equals(payload)).toBe(true);
      read++;
    }
    expect(read).toBe(sent);
    expect(n.sendmsg(a, payload, [])).toBe(1024);
    closeAll([l!, a, b]);
  });

  it('Channel queues a send while the socket is full and delivers it once the peer drains', async () => {
    const [a, b] = seqpacketPair();
    expect(n.setsockoptInt(a, c.SOL_SOCKET, c.SO_SNDBUF, 4096)).toBe(0);
    const filler = Buffer.alloc(1024, 1);
    let filled = 0;
    while (n.sendmsg(a, filler, []) === 1024) filled++;
    expect(n.sendmsg(a, filler, [])).toBe(EAGAIN);
    const [l] = tcpListeners(1);
    const tx = new Channel(untrack(a));
    tx.send(Buffer.from('queued'), [l!]); // EAGAIN inside: queued, not thrown
    const rx = new Channel(untrack(b));
    const last = new Promise<{ payload: Buffer; fds: number[] }>((resolve) => {
      let seen = 0;
      rx.on('message', (payload, fds) => {
        fds.forEach(track);
        if (++seen === filled + 1) resolve({ payload, fds });
        else expect(payload.equals(filler)).toBe(true);
      });
    });
    rx.resume();
    const m = await last;
    expect(m.payload.toString()).toBe('queued');
    expectSameSockets([l!], m.fds);
    tx.close();
    rx.close();
    await Promise.all([waitForClose(tx), waitForClose(rx)]);
    closeAll([...m.fds, l!]);
  });

  it('calls on a closed fd return EBADF (-9) rather than throwing', () => {
    const [a, b] = seqpacketPair();
    closeFd(b);
    expect(n.sendmsg(b, Buffer.from('x'), [])).toBe(EBADF);
    expect(n.recvmsg(b, Buffer.alloc(4), 1)).toBe(EBADF);
    expect(n.peercred(b)).toBe(EBADF);
    expect(n.getsockoptInt(b, c.SOL_SOCKET, c.SO_TYPE)).toBe(EBADF);
    expect(n.sockname(b)).toBe(EBADF);
    expect(fdIsOpen(b)).toBe(false);
    expect(n.close(b)).toBe(EBADF);
    closeAll([a]);
  });
});

describe('native: peer credentials', () => {
  it('peercred on both ends of a connected socket is this process', () => {
    const [a, b] = seqpacketPair();
    const me = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };
    expect(n.peercred(a)).toEqual(me);
    expect(n.peercred(b)).toEqual(me);
    closeAll([a, b]);
  });
});

describe('native: Poller and worker threads', () => {
  it('a Poller reports readability from the event loop, without blocking it', async () => {
    const [a, b] = seqpacketPair();
    const events: Array<[number, number]> = [];
    let wake: () => void = () => {};
    const poller = new n.Poller(b, (status, ev) => {
      events.push([status, ev]);
      wake();
    });
    expect(poller.start(c.UV_READABLE)).toBe(0);
    // Nothing to read: the loop keeps turning (timers and immediates run) and no event comes.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 20));
    expect(events).toEqual([]);

    const readable = new Promise<void>((r) => { wake = r; });
    expect(n.sendmsg(a, Buffer.from('ping'), [])).toBe(4);
    expect(events).toEqual([]); // delivered by the loop, never synchronously
    await readable;
    expect(events[0]![0]).toBe(0);
    expect(events[0]![1] & c.UV_READABLE).toBe(c.UV_READABLE);
    const r = recv(b, Buffer.alloc(16), 0);
    expect(r.bytes).toBe(4);

    // Stopped: a further message raises no event.
    expect(poller.stop()).toBe(0);
    const count = events.length;
    expect(n.sendmsg(a, Buffer.from('pong'), [])).toBe(4);
    await new Promise((res) => setTimeout(res, 20));
    expect(events).toHaveLength(count);

    // Restarted: level-triggered, the waiting message is reported.
    const again = new Promise<void>((res) => { wake = res; });
    expect(poller.start(c.UV_READABLE)).toBe(0);
    await again;
    expect(events.length).toBeGreaterThan(count);
    poller.close();
    expect(poller.start(c.UV_READABLE)).toBeLessThan(0); // closed for good
    closeAll([a, b]);
  });

  it('a Poller reports the peer hanging up (UV_DISCONNECT)', async () => {
    const [a, b] = seqpacketPair();
    const got = new Promise<[number, number]>((resolve) => {
      const poller = new n.Poller(b, (status, ev) => {
        poller.close();
        resolve([status, ev]);
      });
      expect(poller.start(c.UV_READABLE | c.UV_DISCONNECT)).toBe(0);
    });
    closeFd(a);
    const [status, ev] = await got;
    expect(status).toBe(0);
    expect(ev & (c.UV_READABLE | c.UV_DISCONNECT)).not.toBe(0);
    const r = recv(b, Buffer.alloc(4), 0);
    expect(r.bytes).toBe(0); // end of stream
    closeAll([b]);
  });

  it('works inside a worker thread: Poller on the worker\'s loop, one fd sent and received', async () => {
    const code = `
      const { parentPort, workerData, threadId } = require('node:worker_threads');
      const fs = require('node:fs');
      const n = require(workerData.ngb)(workerData.root);
      const c = n.constants;
      const p = workerData.sock;
      const l = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
      n.bind(l, { family: 'unix', path: p });
      n.listen(l, 1);
      const a = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
      n.connect(a, { family: 'unix', path: p });
      const b = n.accept(l);
      n.close(l);
      const t = n.socket(c.AF_INET, c.SOCK_STREAM);
      n.bind(t, { family: 'inet', address: '127.0.0.1', port: 0 });
      n.listen(t, 8);
      const poller = new n.Poller(b, (status, events) => {
        poller.stop();
        poller.close();
        const buf = Buffer.alloc(64);
        const r = n.recvmsg(b, buf, 4);
        const fd = r.fds[0];
        parentPort.postMessage({
          threadId, status, readable: (events & c.UV_READABLE) !== 0,
          payload: buf.subarray(0, r.bytes).toString(), nfds: r.fds.length, truncated: r.truncated,
          sameSocket: fs.fstatSync(fd).ino === fs.fstatSync(t).ino,
          cloexec: (parseInt(/^flags:\\s+([0-7]+)$/m.exec(fs.readFileSync('/proc/self/fdinfo/' + fd, 'utf8'))[1], 8) & 0o2000000) !== 0,
          port: n.sockname(fd).port, sentPort: n.sockname(t).port,
          cred: n.peercred(b),
          closed: [fd, t, a, b].map((x) => n.close(x)),
        });
      });
      poller.start(c.UV_READABLE);
      const sent = n.sendmsg(a, Buffer.from('hello from a worker'), [t]);
      if (sent < 0) throw new Error('sendmsg ' + sent);
    `;
    const base = openFds();
    const worker = new Worker(code, {
      eval: true,
      workerData: { ngb: NODE_GYP_BUILD, root: ROOT, sock: path.join(tmpDir(), 'w.sock') },
    });
    // Listen for 'exit' from the start: a worker that posts and exits at once
    // has its message drained and 'exit' emitted in the same tick.
    const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
    const result = await new Promise<Record<string, unknown>>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`worker exited ${code} before reporting`)));
    });
    const exitCode = await exited;
    expect(exitCode).toBe(0); // the closed Poller does not keep the worker alive
    expect(result).toMatchObject({
      status: 0,
      readable: true,
      payload: 'hello from a worker',
      nfds: 1,
      truncated: false,
      sameSocket: true,
      cloexec: true,
      cred: { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() },
      closed: [0, 0, 0, 0],
    });
    expect(result.threadId).toBeGreaterThan(0);
    expect(result.port).toBe(result.sentPort);
    expect(openFds()).toBe(base);
  });

  // Worker termination is checked in a child process: a crash there fails one
  // test instead of taking the test runner down with it.
  it.each([
    ['also loaded by the main thread', true],
    ['loaded by the worker alone', false],
  ])('terminating workers with active Pollers (idle, and mid-callback) does not crash the process: addon %s', async (_label, mainLoads) => {
    const dir = tmpDir();
    const workerCode = `
      const { parentPort, workerData } = require('node:worker_threads');
      const n = require(workerData.ngb)(workerData.root);
      const c = n.constants;
      const p = workerData.sock;
      const l = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
      n.bind(l, { family: 'unix', path: p });
      n.listen(l, 1);
      const a = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
      n.connect(a, { family: 'unix', path: p });
      const b = n.accept(l);
      parentPort.postMessage({ fds: [l, a, b] });
      // Never readable: waits forever.
      const idle = new n.Poller(b, () => {});
      idle.start(c.UV_READABLE);
      if (!workerData.busy) {
        parentPort.postMessage({ ready: true });
      } else {
        // Always writable: its callback runs on every turn of the worker's loop.
        let turns = 0;
        const busy = new n.Poller(a, () => {
          if (++turns === 3) parentPort.postMessage({ ready: true });
        });
        busy.start(c.UV_WRITABLE);
      }
    `;
    const script = `
      const { Worker } = require('node:worker_threads');
      const fs = require('node:fs');
      const path = require('node:path');
      const ngb = ${JSON.stringify(NODE_GYP_BUILD)};
      const root = ${JSON.stringify(ROOT)};
      const n = ${mainLoads ? 'require(ngb)(root)' : 'null'};
      (async () => {
        const codes = [];
        let leftOpen = 0;
        for (const busy of [false, true]) {
          for (let i = 0; i < 3; i++) {
            const sock = path.join(${JSON.stringify(dir)}, 'w' + codes.length + '.sock');
            const w = new Worker(${JSON.stringify(workerCode)}, { eval: true, workerData: { ngb, root, sock, busy } });
            const fds = [];
            await new Promise((resolve, reject) => {
              w.on('message', (m) => { if (m.fds) fds.push(...m.fds); if (m.ready) resolve(); });
              w.once('error', reject);
            });
            codes.push(await w.terminate());
            // The worker's sockets are fds of the process, still open after it is gone.
            for (const fd of fds) { try { fs.fstatSync(fd); leftOpen++; fs.closeSync(fd); } catch {} }
          }
        }
        console.log('done ' + JSON.stringify({ codes, leftOpen }));
      })().catch((e) => { console.log('failed ' + e.stack); process.exit(1); });
    `;
    const child = run(process.execPath, ['-e', script]);
    await child.waitFor(/^done .*$/m, 45_000);
    const { code, signal } = await child.exited;
    expect({ code, signal, stderr: child.stderr() }).toEqual({ code: 0, signal: null, stderr: '' });
    expect(child.stdout()).toBe(`done ${JSON.stringify({ codes: [1, 1, 1, 1, 1, 1], leftOpen: 18 })}\n`);
  });

  it('an exception thrown by a Poller callback is reported as uncaught, and the loop and Poller carry on', async () => {
    // A Channel 'message' listener that throws runs inside exactly such a callback.
    const dir = tmpDir();
    const script = `
      const n = require(${JSON.stringify(NODE_GYP_BUILD)})(${JSON.stringify(ROOT)});
      const c = n.constants;
      const p = ${JSON.stringify(path.join(dir, 'x.sock'))};
      const l = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
      n.bind(l, { family: 'unix', path: p });
      n.listen(l, 1);
      const a = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
      n.connect(a, { family: 'unix', path: p });
      const b = n.accept(l);
      const seen = [];
      process.on('uncaughtException', (e) => { seen.push('uncaught ' + e.message); });
      let calls = 0;
      const poller = new n.Poller(b, () => {
        calls++;
        if (calls === 1) throw new Error('boom');
        // Level-triggered: the unread message is reported again.
        poller.close();
        seen.push('called again');
        setTimeout(() => { seen.push('timer ran'); console.log('done ' + JSON.stringify(seen)); }, 1);
      });
      poller.start(c.UV_READABLE);
      n.sendmsg(a, Buffer.from('x'), []);
      setTimeout(() => {}, 30000).unref();
    `;
    const child = run(process.execPath, ['-e', script]);
    await child.waitFor(/^done .*$/m, 10_000);
    const { code, signal } = await child.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(child.stdout()).toBe(`done ${JSON.stringify(['uncaught boom', 'called again', 'timer ran'])}\n`);
  });

  it('the main thread\'s Pollers keep working after worker threads using the addon have come and gone', async () => {
    const worker = new Worker(`
      const { parentPort, workerData } = require('node:worker_threads');
      const n = require(workerData.ngb)(workerData.root);
      const s = n.socket(n.constants.AF_UNIX, n.constants.SOCK_SEQPACKET);
      const p = new n.Poller(s, () => {});
      p.close();
      parentPort.postMessage(n.close(s));
    `, { eval: true, workerData: { ngb: NODE_GYP_BUILD, root: ROOT } });
    // 'exit' can follow the drained message in the same tick: listen from the start.
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    const closed = await new Promise((resolve) => worker.once('message', resolve));
    expect(closed).toBe(0);
    expect(await exited).toBe(0);
    const [a, b] = seqpacketPair();
    const readable = new Promise<number>((resolve) => {
      const poller = new n.Poller(b, (_s, ev) => { poller.close(); resolve(ev); });
      expect(poller.start(c.UV_READABLE)).toBe(0);
    });
    expect(n.sendmsg(a, Buffer.from('still here'), [])).toBe(10);
    expect((await readable) & c.UV_READABLE).toBe(c.UV_READABLE);
    closeAll([a, b]);
  });
});

describe('native: socket introspection', () => {
  it('sockname and getsockoptInt describe a listening TCP socket on 127.0.0.1', async () => {
    const s = track(n.socket(c.AF_INET, c.SOCK_STREAM));
    expect(n.bind(s, { family: 'inet', address: '127.0.0.1', port: 0 })).toBe(0);
    // Bound but not yet listening.
    expect(n.getsockoptInt(s, c.SOL_SOCKET, c.SO_ACCEPTCONN)).toEqual({ value: 0 });
    expect(n.listen(s, 16)).toBe(0);

    const name = n.sockname(s);
    expect(name).toMatchObject({ family: 'inet', address: '127.0.0.1' });
    const port = (name as { port: number }).port;
    expect(port).toBeGreaterThan(0);
    expect(port).toBeLessThan(65536);
    expect(n.getsockoptInt(s, c.SOL_SOCKET, c.SO_TYPE)).toEqual({ value: c.SOCK_STREAM });
    expect(n.getsockoptInt(s, c.SOL_SOCKET, c.SO_DOMAIN)).toEqual({ value: c.AF_INET });
    expect(n.getsockoptInt(s, c.SOL_SOCKET, c.SO_ACCEPTCONN)).toEqual({ value: 1 });

    // The port sockname reported is the one that accepts connections.
    const client = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => { client.once('connect', resolve); client.once('error', reject); });
    const conn = track(n.accept(s));
    expect(n.getsockoptInt(conn, c.SOL_SOCKET, c.SO_ACCEPTCONN)).toEqual({ value: 0 });
    expect(n.sockname(conn)).toEqual({ family: 'inet', address: '127.0.0.1', port });
    client.destroy();
    closeAll([conn, s]);
  });

  it('sockname and getsockoptInt describe AF_UNIX SOCK_SEQPACKET sockets', () => {
    const p = path.join(tmpDir(), 'named.sock');
    const l = track(n.socket(c.AF_UNIX, c.SOCK_SEQPACKET));
    expect(n.bind(l, { family: 'unix', path: p })).toBe(0);
    expect(n.listen(l, 1)).toBe(0);
    expect(n.sockname(l)).toEqual({ family: 'unix', path: p });
    expect(n.getsockoptInt(l, c.SOL_SOCKET, c.SO_TYPE)).toEqual({ value: c.SOCK_SEQPACKET });
    expect(n.getsockoptInt(l, c.SOL_SOCKET, c.SO_DOMAIN)).toEqual({ value: c.AF_UNIX });
    expect(n.getsockoptInt(l, c.SOL_SOCKET, c.SO_ACCEPTCONN)).toEqual({ value: 1 });
    const a = track(n.socket(c.AF_UNIX, c.SOCK_SEQPACKET));
    expect(n.connect(a, { family: 'unix', path: p })).toBe(0);
    const b = track(n.accept(l));
    expect(n.getsockoptInt(b, c.SOL_SOCKET, c.SO_ACCEPTCONN)).toEqual({ value: 0 });
    expect(n.sockname(b)).toEqual({ family: 'unix', path: p });
    expect(n.sockname(a)).toEqual({ family: 'unix', path: '' }); // unbound client end
    closeAll([a, b, l]);
  });
});

describe('native: pidfd_open and pidfd_getfd', () => {
  it('copies another process\'s listening socket (the same inode, close-on-exec); errors come back as -errno', async () => {
    const n = native();
    const child = run(process.execPath, ['-e', `
      const srv = require('node:net').createServer().listen(0, '127.0.0.1', () => {
        console.log(srv._handle.fd, require('node:fs').fstatSync(srv._handle.fd).ino); setInterval(() => {}, 1000);
      });`]);
    const m = await child.waitFor(/^(\d+) (\d+)$/m);
    const pidfd = n.pidfdOpen(child.pid);
    expect(pidfd).toBeGreaterThan(2);
    try {
      const fd = n.pidfdGetfd(pidfd, Number(m[1]));
      expect(fd).toBeGreaterThan(2);
      expect(fs.fstatSync(fd).ino).toBe(Number(m[2]));
      expect(isCloexec(fd)).toBe(true);
      n.close(fd);
      expect(n.pidfdGetfd(pidfd, 100_000)).toBe(-9); // EBADF: no such fd there
    } finally {
      n.close(pidfd);
    }
    expect(n.pidfdOpen(0x7ffffff0)).toBe(-3); // ESRCH
    expect(fdIsOpen(pidfd)).toBe(false);
    child.kill();
  });
});
