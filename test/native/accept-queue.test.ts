// Accept-queue reading on real sockets: tcp (TCP_INFO) and unix (sock_diag)
// listeners nobody accepts on, real connections queued in the kernel, the
// backlog in force after a second listen(), clear errors for sockets that do
// not listen, and no fd left behind by the netlink socket.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../../src/native/binding';
import { acceptQueue, acceptQueues } from '../../src/transport/accept-queue';
import { cleanup, tmpDir } from '../helpers';

const n = native();
const c = n.constants;
const EBADF = -9;
const EINVAL = -22;
const ENOTSOCK = -88;
/** The backlog the tests listen with: distinct from any default (511, 128, 4096). */
const BACKLOG = 7;
/** Connections queued in the tests: fewer than BACKLOG, so none waits in SYN retries. */
const QUEUED = 5;
/** Upper bound on the wait for loopback handshakes to land in the accept queue. */
const QUEUE_WAIT_MS = 5_000;
const CALLS = 1_000;

const openFds = () => fs.readdirSync('/proc/self/fd').length;

/** The native answer for one fd: { queued, backlog } or its -errno. */
function rawQueue(fd: number): { queued: number; backlog: number } | number {
  const [status, queued, backlog] = n.acceptQueues([fd]);
  return status! < 0 ? status! : { queued: queued!, backlog: backlog! };
}

const opened = new Set<number>();
const clients = new Set<net.Socket>();
function track(fd: number): number {
  expect(fd).toBeGreaterThanOrEqual(0);
  opened.add(fd);
  return fd;
}

afterEach(async () => {
  for (const s of clients) s.destroy();
  clients.clear();
  for (const fd of opened) n.close(fd);
  opened.clear();
  await cleanup();
});

type Kind = 'tcp' | 'tcp6' | 'unix' | 'seqpacket';

/** A listening socket of `kind` nobody accepts on; the address to reach it. */
function listener(kind: Kind, backlog = BACKLOG): { fd: number; connect: () => net.Socket | number } {
  if (kind === 'tcp' || kind === 'tcp6') {
    const v6 = kind === 'tcp6';
    const fd = track(n.socket(v6 ? c.AF_INET6 : c.AF_INET, c.SOCK_STREAM));
    const address = v6 ? '::1' : '127.0.0.1';
    expect(n.bind(fd, { family: v6 ? 'inet6' : 'inet', address, port: 0 })).toBe(0);
    expect(n.listen(fd, backlog)).toBe(0);
    const name = n.sockname(fd);
    if (typeof name === 'number' || name.family === 'unix' || name.family === 'other') throw new Error(`sockname: ${JSON.stringify(name)}`);
    return { fd, connect: () => net.connect({ host: address, port: name.port }) };
  }
  const p = path.join(tmpDir(), 'l.sock');
  const type = kind === 'unix' ? c.SOCK_STREAM : c.SOCK_SEQPACKET;
  const fd = track(n.socket(c.AF_UNIX, type));
  expect(n.bind(fd, { family: 'unix', path: p })).toBe(0);
  expect(n.listen(fd, backlog)).toBe(0);
  if (kind === 'unix') return { fd, connect: () => net.connect(p) };
  // Node has no seqpacket client: a raw one (a unix connect() completes at once).
  return {
    fd,
    connect: () => {
      const s = track(n.socket(c.AF_UNIX, c.SOCK_SEQPACKET));
      expect(n.connect(s, { family: 'unix', path: p })).toBe(0);
      return s;
    },
  };
}

function connectMany(l: { connect: () => net.Socket | number }, count: number): void {
  for (let i = 0; i < count; i++) {
    const s = l.connect();
    if (typeof s !== 'number') {
      s.on('error', () => { /* reset at cleanup */ });
      clients.add(s);
    }
  }
}

/** Polls (bounded) until the queue of `fd` holds `want`: handshakes land asynchronously. */
async function queuedReaches(fd: number, want: number): Promise<number> {
  const deadline = Date.now() + QUEUE_WAIT_MS;
  let q = acceptQueue(fd).queued;
  while (q !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
    q = acceptQueue(fd).queued;
  }
  return q;
}

describe('acceptQueue: a listener nobody accepts on', () => {
  it.each<Kind>(['tcp', 'tcp6', 'unix', 'seqpacket'])('%s: queued counts the waiting connections, backlog is the one in force', async (kind) => {
    const l = listener(kind);
    expect(acceptQueue(l.fd)).toEqual({ queued: 0, backlog: BACKLOG });
    // The raw native call agrees.
    expect(rawQueue(l.fd)).toEqual({ queued: 0, backlog: BACKLOG });

    connectMany(l, QUEUED);
    expect(await queuedReaches(l.fd, QUEUED)).toBe(QUEUED);
    expect(acceptQueue(l.fd)).toEqual({ queued: QUEUED, backlog: BACKLOG });

    track(n.accept(l.fd));
    expect(acceptQueue(l.fd)).toEqual({ queued: QUEUED - 1, backlog: BACKLOG });
    track(n.accept(l.fd));
    expect(acceptQueue(l.fd).queued).toBe(QUEUED - 2);
  });

  it.each<Kind>(['tcp', 'unix'])('%s: a second listen() changes the backlog in force, and it is read back', (kind) => {
    const l = listener(kind);
    expect(acceptQueue(l.fd).backlog).toBe(BACKLOG);
    expect(n.listen(l.fd, 3)).toBe(0);
    expect(acceptQueue(l.fd).backlog).toBe(3);
    // A backlog above net.core.somaxconn is capped by the kernel: the cap is what is reported.
    const somaxconn = Number(fs.readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
    expect(n.listen(l.fd, somaxconn + 1000)).toBe(0);
    expect(acceptQueue(l.fd).backlog).toBe(somaxconn);
  });

  it('a full unix queue holds backlog + 1 connections, and the next connect gets EAGAIN', () => {
    const l = listener('seqpacket', 2);
    connectMany(l, 3);
    expect(acceptQueue(l.fd)).toEqual({ queued: 3, backlog: 2 });
    const s = track(n.socket(c.AF_UNIX, c.SOCK_SEQPACKET));
    const name = n.sockname(l.fd);
    if (typeof name === 'number' || name.family !== 'unix') throw new Error('no path');
    expect(n.connect(s, { family: 'unix', path: name.path })).toBe(-11);
    expect(acceptQueue(l.fd).queued).toBe(3);
  });
});

describe('acceptQueue: what is not a listener', () => {
  it('a tcp socket that does not listen, a bound unix socket, udp and unix datagram sockets: EINVAL, saying so', () => {
    const tcp = track(n.socket(c.AF_INET, c.SOCK_STREAM));
    const unix = track(n.socket(c.AF_UNIX, c.SOCK_STREAM));
    expect(n.bind(unix, { family: 'unix', path: path.join(tmpDir(), 'bound.sock') })).toBe(0);
    const udp = track(n.socket(c.AF_INET, c.SOCK_DGRAM));
    expect(n.bind(udp, { family: 'inet', address: '127.0.0.1', port: 0 })).toBe(0);
    const dgram = track(n.socket(c.AF_UNIX, c.SOCK_DGRAM));
    for (const fd of [tcp, unix, udp, dgram]) {
      expect(rawQueue(fd)).toBe(EINVAL);
      expect(() => acceptQueue(fd)).toThrow(expect.objectContaining({ code: 'EINVAL', errno: EINVAL, message: expect.stringContaining(`fd ${fd} is not a listening socket`) }));
    }
  });

  it('an accepted (connected) socket: EINVAL', async () => {
    const l = listener('unix');
    connectMany(l, 1);
    const conn = track(n.accept(l.fd));
    expect(rawQueue(conn)).toBe(EINVAL);
  });

  it('a file: ENOTSOCK; a closed fd, or what is not an fd: EBADF', () => {
    const file = fs.openSync(__filename, 'r');
    try {
      expect(rawQueue(file)).toBe(ENOTSOCK);
      expect(() => acceptQueue(file)).toThrow(expect.objectContaining({ code: 'ENOTSOCK', syscall: 'getsockopt' }));
    } finally {
      fs.closeSync(file);
    }
    expect(rawQueue(file)).toBe(EBADF);
    expect(() => acceptQueue(file)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    expect(Array.from(n.acceptQueues([-1, Number.NaN, 2 ** 32]))).toEqual([EBADF, 0, 0, 0, EBADF, 0, 0, 0, EBADF, 0, 0, 0]);
  });
});

describe('acceptQueues: many fds in one call', () => {
  it('gives each fd the answer acceptQueue gives it, errors in place, and names the interface that answered', async () => {
    const tcp = listener('tcp');
    const unix = listener('unix', 4);
    const seq = listener('seqpacket', 9);
    connectMany(unix, 2);
    connectMany(seq, 3);
    expect(await queuedReaches(unix.fd, 2)).toBe(2);
    const notListening = track(n.socket(c.AF_INET, c.SOCK_STREAM));
    const fds = [tcp.fd, unix.fd, notListening, seq.fd, 2 ** 31 - 1];
    const out = acceptQueues(fds);
    expect(out[0]).toEqual({ queued: 0, backlog: BACKLOG });
    expect(out[1]).toEqual({ queued: 2, backlog: 4 });
    expect(out[2]).toMatchObject({ code: 'EINVAL' });
    expect(out[3]).toEqual({ queued: 3, backlog: 9 });
    expect(out[4]).toMatchObject({ code: 'EBADF' });
    for (const [i, fd] of fds.entries()) {
      const single = rawQueue(fd);
      if (typeof single === 'number') expect((out[i] as { errno: number }).errno).toBe(single);
      else expect(out[i]).toEqual(single);
    }
    // Raw rows: source 1 = TCP_INFO, 2 = sock_diag, 0 = failed before either.
    const raw = n.acceptQueues([tcp.fd, unix.fd, notListening, -1]);
    expect(Array.from(raw)).toEqual([0, 0, BACKLOG, 1, 0, 2, 4, 2, EINVAL, 0, 0, 0, EBADF, 0, 0, 0]);
    expect(acceptQueues([])).toEqual([]);
    expect(() => n.acceptQueues('3' as unknown as number[])).toThrow(TypeError);
  });
});

describe('acceptQueue: no leak', () => {
  it(`${CALLS} calls, single and batched, on unix and tcp listeners leave the fd count unchanged`, () => {
    const unix = listener('unix');
    const tcp = listener('tcp');
    const notSocket = fs.openSync(__filename, 'r');
    try {
      const base = openFds();
      for (let i = 0; i < CALLS; i++) {
        expect(rawQueue(unix.fd)).toEqual({ queued: 0, backlog: BACKLOG });
        expect(rawQueue(tcp.fd)).toEqual({ queued: 0, backlog: BACKLOG });
        const rows = n.acceptQueues([unix.fd, tcp.fd, unix.fd, notSocket]);
        expect(rows[12]).toBe(ENOTSOCK);
        // A failing unix query must close its netlink socket too.
        expect(() => acceptQueue(notSocket)).toThrow();
      }
      expect(openFds()).toBe(base);
    } finally {
      fs.closeSync(notSocket);
    }
  });
});
