// The broker against hostile, broken, silent, dying and numerous clients.
// Real processes, real sockets, raw protocol where a well-behaved client
// would not go; every check is against the kernel's view (/proc, ss).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../../src/native/binding';
import { adoptListeners } from '../../src/client/adopt';
import { BrokerConnection } from '../../src/client/connection';
import { cleanup, CLI, fdCount, FIXTURES, get, run, sleep, socketInodes, startApp, startBroker, tmpDir, type BrokerProc, type Proc, alive, quietFdCount, rawConnect } from '../helpers';

afterEach(cleanup);

const EAGAIN = -11;
const EPERM = -1;
const ECONNRESET = -104;

/** What a raw client saw until the broker hung up (or the wait ran out). */
interface Outcome {
  messages: Array<Record<string, unknown>>;
  /** fds that came with the messages (closed on arrival). */
  fdsReceived: number;
  end: 'eof' | 'ECONNRESET' | 'timeout' | `errno ${number}`;
}

/** A client that speaks raw SOCK_SEQPACKET to the control socket, through the native layer. */
class RawClient {
  private readonly buf = Buffer.alloc(256 * 1024);
  private closed = false;
  private constructor(readonly fd: number) {}

  static async connect(sockPath: string): Promise<RawClient> {
    return new RawClient(await rawConnect(sockPath));
  }

  /** sendmsg's result: bytes sent or a negative errno. */
  send(payload: Buffer | string | object, fds: number[] = []): number {
    const buf = Buffer.isBuffer(payload) ? payload
      : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload), 'utf8');
    return native().sendmsg(this.fd, buf, fds);
  }

  /** The next message, or how the stream ended. */
  async next(timeoutMs = 5000): Promise<{ msg: Record<string, unknown>; fds: number } | Outcome['end']> {
    const n = native();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = n.recvmsg(this.fd, this.buf, 253);
      if (typeof r === 'number') {
        if (r === EAGAIN) {
          if (Date.now() > deadline) return 'timeout';
          await sleep(5);
          continue;
        }
        return r === ECONNRESET ? 'ECONNRESET' : `errno ${r}`;
      }
      for (const fd of r.fds) n.close(fd);
      if (r.bytes === 0 && r.fds.length === 0) return 'eof';
      return { msg: JSON.parse(this.buf.subarray(0, r.bytes).toString('utf8')) as Record<string, unknown>, fds: r.fds.length };
    }
  }

  /** Reads until the broker hangs up or `timeoutMs` passes. */
  async readAll(timeoutMs = 5000): Promise<Outcome> {
    const deadline = Date.now() + timeoutMs;
    const out: Outcome = { messages: [], fdsReceived: 0, end: 'timeout' };
    for (;;) {
      const r = await this.next(Math.max(0, deadline - Date.now()));
      if (typeof r === 'string') {
        out.end = r;
        return out;
      }
      out.messages.push(r.msg);
      out.fdsReceived += r.fds;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native().close(this.fd);
  }
}

const HELLO = { type: 'hello', versions: [1] };

/** The broker still hands out listeners, and the app still serves on the broker's port. */
async function expectStillServing(broker: BrokerProc, app: Proc): Promise<void> {
  expect(alive(broker.pid)).toBe(true);
  const ls = await adoptListeners(broker.sock, { names: ['http'], timeout: 5000 });
  expect(ls.http!.port).toBe(broker.ports.http);
  expect(ls.http!.fd).toBeGreaterThanOrEqual(0);
  ls.http!.close();
  const res = await get(broker.ports.http!);
  expect(res.status).toBe(200);
  expect(res.body).toBe(`${app.pid} ok\n`);
}

/** Waits (bounded) until `read()` equals `want`; returns the last value read. */
async function settle<T>(read: () => T, want: T, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let v = read();
  while (v !== want && Date.now() < deadline) {
    await sleep(20);
    v = read();
  }
  return v;
}

function inodeOf(pid: number | 'self', fd: number): string {
  const m = fs.readlinkSync(`/proc/${pid}/fd/${fd}`).match(/^socket:\[(\d+)\]$/);
  if (!m) throw new Error(`fd ${fd} of ${pid} is not a socket`);
  return m[1]!;
}

/** Send-Q of the listening TCP socket on 127.0.0.1:port, as `ss -ltn` shows it (its backlog). */
function listenSendQ(port: number): number[] {
  const out = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' });
  return out.trim().split('\n').filter(Boolean).map((line) => {
    const cols = line.trim().split(/\s+/);
    expect(cols[0]).toBe('LISTEN');
    expect(cols[3]).toBe(`127.0.0.1:${port}`);
    return Number(cols[2]);
  });
}

async function brokerAndApp(extra: string[] = []): Promise<{ broker: BrokerProc; app: Proc }> {
  const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], extra);
  const app = await startApp(broker.sock);
  return { broker, app };
}

describe('malformed clients get an error or are dropped; the broker serves on', () => {
  it('garbage that is not JSON: ERR_FDBROKER_PROTOCOL, then hung up', async () => {
    const { broker, app } = await brokerAndApp();
    const payloads = [
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      Buffer.from('{"type":"hello","versions":[1]'), // cut short
      Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28]), // not even UTF-8
    ];
    for (const p of payloads) {
      const c = await RawClient.connect(broker.sock);
      expect(c.send(p)).toBe(p.length);
      const o = await c.readAll();
      c.close();
      expect(o.messages).toHaveLength(1);
      expect(o.messages[0]).toMatchObject({ type: 'error', code: 'ERR_FDBROKER_PROTOCOL' });
      expect(String(o.messages[0]!.message)).toMatch(/not valid JSON/);
      expect(o.end).toBe('eof');
      await expectStillServing(broker, app);
    }
  });

  it('JSON that is not an object: ERR_FDBROKER_PROTOCOL, then hung up', async () => {
    const { broker, app } = await brokerAndApp();
    for (const p of ['[{"type":"hello","versions":[1]}]', '"hello"', '42', 'null', 'true']) {
      const c = await RawClient.connect(broker.sock);
      expect(c.send(p)).toBe(p.length);
      const o = await c.readAll();
      c.close();
      expect(o.messages).toEqual([expect.objectContaining({ type: 'error', code: 'ERR_FDBROKER_PROTOCOL' })]);
      expect(String(o.messages[0]!.message)).toMatch(/not a JSON object/);
      expect(o.end).toBe('eof');
      await expectStillServing(broker, app);
    }
  });

  it('an unknown message type, before and after hello: ERR_FDBROKER_PROTOCOL, then hung up', async () => {
    const { broker, app } = await brokerAndApp();
    // Before hello.
    let c = await RawClient.connect(broker.sock);
    c.send({ type: 'gimme', id: 1 });
    let o = await c.readAll();
    c.close();
    expect(o.messages).toEqual([expect.objectContaining({ type: 'error', code: 'ERR_FDBROKER_PROTOCOL' })]);
    expect(String(o.messages[0]!.message)).toMatch(/unknown message type/);
    expect(o.end).toBe('eof');
    await expectStillServing(broker, app);
    // After a good hello: the welcome, then the error for the unknown type.
    c = await RawClient.connect(broker.sock);
    c.send(HELLO);
    c.send({ type: 'listeners', id: 1, part: 0, last: true, listeners: [] }); // a broker's type, not a client's
    o = await c.readAll();
    c.close();
    expect(o.messages.map((m) => m.type)).toEqual(['welcome', 'error']);
    expect(o.messages[1]).toMatchObject({ code: 'ERR_FDBROKER_PROTOCOL' });
    expect(String(o.messages[1]!.message)).toMatch(/unknown message type/);
    expect(o.end).toBe('eof');
    await expectStillServing(broker, app);
  });

  it('a valid request before hello: ERR_FDBROKER_PROTOCOL, no fds, then hung up', async () => {
    const { broker, app } = await brokerAndApp();
    for (const msg of [{ type: 'adopt', id: 1, names: ['http'] }, { type: 'status', id: 2 }]) {
      const c = await RawClient.connect(broker.sock);
      c.send(msg);
      const o = await c.readAll();
      c.close();
      expect(o.fdsReceived).toBe(0);
      expect(o.messages).toEqual([expect.objectContaining({ type: 'error', code: 'ERR_FDBROKER_PROTOCOL' })]);
      expect(String(o.messages[0]!.message)).toMatch(/before "hello"/);
      expect(o.end).toBe('eof');
      await expectStillServing(broker, app);
    }
  });

  it('an oversized frame (> 64 KiB in one packet) is not taken for a shorter one: the client is dropped', async () => {
    const { broker, app } = await brokerAndApp();
    // A valid hello followed by padding: if the broker read only the first
    // 64 KiB and ignored the truncation, it would see a valid hello and welcome us.
    for (const size of [64 * 1024 + 1, 100_000]) {
      const head = Buffer.from(JSON.stringify(HELLO));
      const p = Buffer.concat([head, Buffer.alloc(size - head.length, 0x20)]);
      expect(p.length).toBe(size);
      const c = await RawClient.connect(broker.sock);
      expect(c.send(p)).toBe(size);
      const o = await c.readAll();
      c.close();
      expect(o.messages.some((m) => m.type === 'welcome')).toBe(false);
      // Dropped without a word (today), or told why; either way hung up.
      if (o.messages.length > 0) {
        expect(o.messages).toEqual([expect.objectContaining({ type: 'error' })]);
        expect(['ERR_FDBROKER_TRUNCATED', 'ERR_FDBROKER_MESSAGE_TOO_LARGE']).toContain(o.messages[0]!.code);
      }
      expect(['eof', 'ECONNRESET']).toContain(o.end);
      await expectStillServing(broker, app);
    }
    // Exactly 64 KiB is still a message the broker reads whole.
    const head = Buffer.from(JSON.stringify(HELLO));
    const c = await RawClient.connect(broker.sock);
    expect(c.send(Buffer.concat([head, Buffer.alloc(64 * 1024 - head.length, 0x20)]))).toBe(64 * 1024);
    const r = await c.next();
    c.close();
    expect(r).toMatchObject({ msg: { type: 'welcome', version: 1 } });
  });
});

describe('handshake timeout', () => {
  it('a client that says nothing is dropped after --handshake-timeout; others are served meanwhile', async () => {
    const { broker, app } = await brokerAndApp(['--handshake-timeout', '300']);
    const t0 = Date.now();
    const silent = await RawClient.connect(broker.sock);
    // One that says hello and then nothing: the handshake timer must not drop it.
    const greeted = await RawClient.connect(broker.sock);
    greeted.send(HELLO);
    expect(await greeted.next()).toMatchObject({ msg: { type: 'welcome' } });
    // Meanwhile another client is served at once.
    const ls = await adoptListeners(broker.sock, { names: ['http'] });
    expect(ls.http!.port).toBe(broker.ports.http);
    ls.http!.close();
    // ...while the silent one was still waiting: no reply yet, not hung up.
    expect(await silent.next(0)).toBe('timeout');
    expect(Date.now() - t0).toBeLessThan(300);
    const o = await silent.readAll(4000);
    const elapsed = Date.now() - t0;
    silent.close();
    expect(o.messages).toEqual([expect.objectContaining({ type: 'error', code: 'ERR_FDBROKER_TIMEOUT' })]);
    expect(o.end).toBe('eof');
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(3000);
    // The greeted client is still connected, well past the handshake timeout.
    await sleep(300);
    expect(await greeted.next(50)).toBe('timeout');
    const conn = await BrokerConnection.connect(broker.sock);
    const s = await conn.status();
    conn.close();
    expect(s.clients.map((c) => c.pid)).toEqual([process.pid, process.pid]); // `greeted` and this one
    greeted.close();
    await expectStillServing(broker, app);
  });

  it('--handshake-timeout rejects a value that is not a positive number of ms', async () => {
    for (const bad of ['0', '-5', 'abc', '1.5']) {
      const p = run(process.execPath, [CLI, 'serve', path.join(tmpDir(), 'b.sock'), '--listen', 'http=tcp://127.0.0.1:0', '--handshake-timeout', bad]);
      expect((await p.exited).code).toBe(2);
      expect(p.stderr()).toMatch(/--handshake-timeout/);
    }
  });
});

describe('fds sent to the broker are never kept', () => {
  /** A TCP listener on 127.0.0.1:0 owned by the test process, and its inode. */
  function tcpListener(): { fd: number; inode: string } {
    const n = native();
    const c = n.constants;
    const fd = n.socket(c.AF_INET, c.SOCK_STREAM);
    expect(fd).toBeGreaterThanOrEqual(0);
    expect(n.bind(fd, { family: 'inet', address: '127.0.0.1', port: 0 })).toBe(0);
    expect(n.listen(fd, 16)).toBe(0);
    return { fd, inode: inodeOf('self', fd) };
  }

  /** Samples the broker's socket inodes for `ms`; returns whether `inode` was ever among them. */
  async function everHeld(pid: number, inode: string, ms = 500): Promise<boolean> {
    const deadline = Date.now() + ms;
    do {
      if (socketInodes(pid).includes(inode)) return true;
      await sleep(10);
    } while (Date.now() < deadline);
    return false;
  }

  const WHEN = [
    'with hello, straight after connect',
    'with hello, before the broker even accepted the connection (broker stopped)',
    'with a request after the welcome',
  ] as const;
  for (const when of WHEN) {
    it(`a fd sent ${when} is refused or closed, and the broker serves on`, async () => {
      const { broker, app } = await brokerAndApp();
      const before = await quietFdCount(broker.pid);
      // Sanity: socketInodes sees what the broker does hold (its listener, via the app's copy).
      const appFd = Number(app.stdout().match(/fd (\d+)/)![1]);
      expect(socketInodes(broker.pid)).toContain(inodeOf(app.pid, appFd));
      const l = tcpListener();
      let r: number;
      let c: RawClient;
      if (when !== 'with a request after the welcome') {
        const stop = when !== 'with hello, straight after connect';
        // Stopped, the broker cannot accept: the connection and the message
        // wait in its control socket's queue, before any per-connection setup.
        if (stop) process.kill(broker.pid, 'SIGSTOP');
        try {
          c = await RawClient.connect(broker.sock);
          r = c.send(HELLO, [l.fd]);
        } finally {
          if (stop) process.kill(broker.pid, 'SIGCONT');
        }
      } else {
        c = await RawClient.connect(broker.sock);
        c.send(HELLO);
        expect(await c.next()).toMatchObject({ msg: { type: 'welcome' } });
        r = c.send({ type: 'status', id: 7 }, [l.fd, l.fd]);
      }
      // Either the kernel refused the fds (SO_PASSRIGHTS=0 on the broker's
      // socket, Linux >= 6.16) or they reached the broker, which must close
      // them and drop this client.
      expect(r === EPERM || r > 0, `sendmsg returned ${r}`).toBe(true);
      if (r === EPERM) {
        // Nothing was sent: the connection is intact and works normally.
        c.send(when !== 'with a request after the welcome' ? HELLO : { type: 'status', id: 8 });
        const m = await c.next();
        expect(m).toMatchObject({ msg: { type: when !== 'with a request after the welcome' ? 'welcome' : 'status' } });
      } else {
        const o = await c.readAll();
        expect(o.messages.some((m) => m.type === 'welcome' || m.type === 'status')).toBe(false);
        if (o.messages.length > 0) {
          expect(o.messages).toEqual([expect.objectContaining({ type: 'error' })]);
          expect(['ERR_FDBROKER_PROTOCOL', 'ERR_FDBROKER_TRUNCATED']).toContain(o.messages[0]!.code);
        }
        expect(['eof', 'ECONNRESET']).toContain(o.end);
      }
      console.info(`fd sent ${when}: sendmsg returned ${r}`);
      expect(await everHeld(broker.pid, l.inode)).toBe(false);
      c.close();
      expect(await settle(() => fdCount(broker.pid), before)).toBe(before);
      expect(await everHeld(broker.pid, l.inode, 100)).toBe(false);
      native().close(l.fd);
      await expectStillServing(broker, app);
    });
  }
});

describe('no leaks, no inheritance, no lost backlog', () => {
  it('1,000 adopt cycles leave the broker\'s and the test process\'s fd counts unchanged', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0', 'other=tcp://127.0.0.1:0']);
    // Warm up once so lazily opened things (the addon, epoll) are already there.
    Object.values(await adoptListeners(broker.sock)).forEach((l) => l.close());
    const brokerBefore = await quietFdCount(broker.pid);
    const selfBefore = await quietFdCount(process.pid);
    for (let i = 0; i < 1000; i++) {
      const ls = await adoptListeners(broker.sock, i % 2 ? { names: ['http'] } : {});
      expect(Object.keys(ls).sort()).toEqual(i % 2 ? ['http'] : ['http', 'other']);
      for (const l of Object.values(ls)) l.close();
    }
    expect(await settle(() => fdCount(broker.pid), brokerBefore)).toBe(brokerBefore);
    expect(await settle(() => fdCount(process.pid), selfBefore)).toBe(selfBefore);
    const conn = await BrokerConnection.connect(broker.sock);
    const s = await conn.status();
    conn.close();
    expect(s.clients).toHaveLength(1); // only this status connection
    expect(alive(broker.pid)).toBe(true);
  });

  it('the broker\'s --backlog 4096 survives an app\'s attach(); a plain listen({ fd }) would reset it to 511', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--backlog', '4096']);
    const port = broker.ports.http!;
    expect(listenSendQ(port)).toEqual([4096]);
    const app = await startApp(broker.sock);
    expect(listenSendQ(port)).toEqual([4096]);
    expect((await get(port)).body).toBe(`${app.pid} ok\n`);
    // The check can fail: Node's listen({ fd }) without a backlog calls
    // listen(2) again with 511, on the very socket the broker holds.
    const plain = run(process.execPath, [path.join(FIXTURES, 'robust-plain-listen.js')], { env: { FDBROKER_SOCK: broker.sock } });
    await plain.waitFor(/^ready \d+/m);
    expect(listenSendQ(port)).toEqual([511]);
    plain.kill('SIGKILL');
    await plain.exited;
    // An app that attach()es after that sets the broker's backlog back.
    await startApp(broker.sock);
    expect(listenSendQ(port)).toEqual([4096]);
  });

  it('a child spawned by an adopting app does not hold the listener', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const app = await startApp(broker.sock, { SPAWN_CHILD: '1' });
    const childPid = Number((await app.waitFor(/^child (\d+)/m))[1]);
    const appFd = Number(app.stdout().match(/^ready \d+ fd (\d+)/m)![1]);
    const inode = inodeOf(app.pid, appFd);
    // It is the broker's listener: the broker holds the same socket.
    expect(socketInodes(broker.pid)).toContain(inode);
    expect(alive(childPid)).toBe(true);
    expect(fs.readlinkSync(`/proc/${childPid}/exe`)).toMatch(/sleep$/);
    expect(socketInodes(childPid)).not.toContain(inode);
    expect((await get(broker.ports.http!)).body).toBe(`${app.pid} ok\n`);
  });
});

describe('many and dying clients', () => {
  it('200 clients adopting at once all succeed', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const app = await startApp(broker.sock);
    const before = await quietFdCount(broker.pid);
    const results = await Promise.allSettled(Array.from({ length: 200 }, () => adoptListeners(broker.sock, { names: ['http'] })));
    const failed = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
    expect(failed).toEqual([]);
    const fds = new Set<number>();
    for (const r of results) {
      const l = (r as PromiseFulfilledResult<Awaited<ReturnType<typeof adoptListeners>>>).value.http!;
      expect(l.port).toBe(broker.ports.http);
      fds.add(l.fd);
    }
    expect(fds.size).toBe(200); // 200 distinct live duplicates in this process
    for (const r of results) (r as PromiseFulfilledResult<Awaited<ReturnType<typeof adoptListeners>>>).value.http!.close();
    expect(await settle(() => fdCount(broker.pid), before)).toBe(before);
    await expectStillServing(broker, app);
  });

  it('50 clients SIGKILLed right after sending adopt leave the broker alive with its fd count unchanged', async () => {
    const { broker, app } = await brokerAndApp();
    const before = await quietFdCount(broker.pid);
    for (let i = 0; i < 50; i++) {
      const p = run(process.execPath, [path.join(FIXTURES, 'robust-adopt-then-die.js')],
        { env: { FDBROKER_SOCK: broker.sock, ...(i % 2 ? { WAIT_WELCOME: '1' } : {}) } });
      await p.waitFor(/^sent$/m);
      p.kill('SIGKILL');
      expect((await p.exited).signal).toBe('SIGKILL');
    }
    expect(alive(broker.pid)).toBe(true);
    expect(await settle(() => fdCount(broker.pid), before)).toBe(before);
    const conn = await BrokerConnection.connect(broker.sock);
    const s = await conn.status();
    conn.close();
    expect(s.clients.map((c) => c.pid)).toEqual([process.pid]);
    await expectStillServing(broker, app);
  });
});
