// Security: who may talk to a broker (SO_PEERCRED uid/gid grants), what a
// refused peer learns (nothing), the audit trail, per-uid and per-client
// limits, where a control socket may live, one broker per path, a holder that
// breaks a shared listener, and the client's fd-headroom check.
//
// Runs as root (here and in CI); without root the tests that switch users or
// chown are skipped visibly (and fail under CI=true: test/requirements.ts).
// Other users are real processes started with `setpriv --reuid --regid
// --clear-groups` (util-linux), running a copy of the built package and the
// fixtures in a world-readable temp dir (test/other-user.ts), since the
// checkout may lie under a 0700 directory such as /root; the control socket is
// made reachable for them with --mode 0666 and a traversable (0711) temp dir.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/binding';
import { adoptListeners } from '../../src/client/adopt';
import { BrokerConnection } from '../../src/client/connection';
import { cleanup, CLI, fdCount, FIXTURES, run, sleep, startApp, startBroker, tmpDir, type BrokerProc, type Proc, waitText, statusOf, Raw } from '../helpers';
import { runAs, secClient as secRun, secClientProc as secProc, sharedCopy, type SecResult, type SharedCopy, sharedDir } from '../other-user';
import { describeWith, python3, root, setpriv, tool } from '../requirements';

afterEach(cleanup);

const NOBODY = 65534;
const OTHER = 12345;
const EAGAIN = -11;
/** Switching users, chown, and audit lines that name uid 0. */
const AS_ROOT = [root('to run clients as other uids with setpriv, chown their directories, and audit uid 0'), setpriv()];

// What other uids run: sec-client.js and the CLI, from a world-readable copy.
let shared: SharedCopy;
beforeAll(() => { shared = sharedCopy(); });
afterAll(() => shared?.remove());


/** Starts `fdbroker serve` in a traversable dir with a control socket everyone can connect to. */
function brokerFor(listen: string[], extra: string[] = []): Promise<BrokerProc> {
  return startBroker(sharedDir(), listen, ['--mode', '0666', ...extra]);
}

/** sec-client.js as uid/gid (other-user.ts), from this file's shared copy. */
const secClientProc = (sock: string, args: string[], uid = NOBODY, gid = NOBODY, env?: NodeJS.ProcessEnv): Proc => secProc(shared, sock, args, uid, gid, env);
const secClient = (sock: string, args: string[], uid = NOBODY, gid = NOBODY, env?: NodeJS.ProcessEnv): Promise<SecResult> => secRun(shared, sock, args, uid, gid, env);

const count = (text: string, needle: string) => text.split('\n').filter((l) => l.includes(needle)).length;

/** One audit line, exactly as the CLI prints it. */
function audit(op: string, c: { pid: number; uid: number; gid: number }, names: string, generation: string | number, result: string): string {
  return `fdbroker: audit op=${op} pid=${c.pid} uid=${c.uid} gid=${c.gid} names=${names} generation=${generation} result=${result}`;
}

/** A raw SOCK_SEQPACKET client through the native layer (no library logic in between). */
const HELLO = { type: 'hello', versions: [1] };

describeWith(AS_ROOT, 'access control on SO_PEERCRED', () => {
  it('uid 65534 is refused by default: ERR_FDBROKER_ACCESS_DENIED, no listener names or ports, a log line and an audit line', async () => {
    const broker = await brokerFor(['secretsvc=tcp://127.0.0.1:0']);
    const port = broker.ports.secretsvc!;
    // Through the library: refused by the broker (not by the file mode: no EACCES cause).
    const adopt = await secClient(broker.sock, ['adopt']);
    expect(adopt.code).toBe('ERR_FDBROKER_ACCESS_DENIED');
    expect(adopt.cause).toBeUndefined();
    const status = await secClient(broker.sock, ['status']);
    expect(status.code).toBe('ERR_FDBROKER_ACCESS_DENIED');
    // Raw: hello, adopt, status and join back to back. Exactly one error comes
    // back, then the broker hangs up; no fds, nothing naming the listener.
    const raw = await secClient(broker.sock, ['raw']);
    expect(raw.fds).toBe(0);
    expect(raw.end).toBe('eof');
    expect(raw.messages).toHaveLength(1);
    expect(JSON.parse(String(raw.messages![0]))).toMatchObject({ type: 'error', code: 'ERR_FDBROKER_ACCESS_DENIED' });
    for (const text of [...raw.messages!.map(String), adopt.message!, status.message!]) {
      expect(text).not.toContain('secretsvc');
      expect(text).not.toContain(String(port));
    }
    // The broker logs the first refusal of a uid on stderr and audits it on
    // stdout; the ones after it within REFUSAL_SUMMARY_INTERVAL_MS are counted
    // and reported as one line (test/broker/refusals.test.ts).
    await waitText(broker.stderr, new RegExp(`^fdbroker: client pid ${adopt.pid} \\(uid ${NOBODY}\\): ERR_FDBROKER_ACCESS_DENIED`, 'm'));
    await waitText(broker.stdout, new RegExp(`^${audit('connect', adopt, '\\*', '-', 'ERR_FDBROKER_ACCESS_DENIED')}$`, 'm'));
    for (const r of [status, raw]) expect(broker.stderr()).not.toContain(`client pid ${r.pid} `);
    // A refused peer never became a client.
    expect((await statusOf(broker.sock)).clients.map((c) => c.uid)).toEqual([0]);
  });

  it('--allow-uid 65534 lets uid 65534 adopt and read status; other uids stay refused', async () => {
    const broker = await brokerFor(['secretsvc=tcp://127.0.0.1:0'], ['--allow-uid', String(NOBODY)]);
    const r = await secClient(broker.sock, ['adopt']);
    expect(r).toMatchObject({ ok: true, names: ['secretsvc'], ports: [broker.ports.secretsvc] });
    await waitText(broker.stdout, new RegExp(`^${audit('adopt', r, 'secretsvc', '-', 'ok')}$`, 'm'));
    expect(await secClient(broker.sock, ['status'])).toMatchObject({ ok: true, listeners: ['secretsvc'] });
    expect(await secClient(broker.sock, ['join'])).toMatchObject({ ok: true, generation: 1 });
    // The grant is for exactly that uid.
    expect((await secClient(broker.sock, ['adopt'], OTHER, NOBODY)).code).toBe('ERR_FDBROKER_ACCESS_DENIED');
  });

  it('--allow-status-uid 65534 lets uid 65534 read status, but adopt and join are refused (no fds)', async () => {
    const broker = await brokerFor(['secretsvc=tcp://127.0.0.1:0'], ['--allow-status-uid', String(NOBODY)]);
    expect(await secClient(broker.sock, ['status'])).toMatchObject({ ok: true, listeners: ['secretsvc'] });
    const adopt = await secClient(broker.sock, ['adopt']);
    expect(adopt.code).toBe('ERR_FDBROKER_NOT_PERMITTED');
    const join = await secClient(broker.sock, ['join']);
    expect(join.code).toBe('ERR_FDBROKER_NOT_PERMITTED');
    // Raw: welcome, adopt refused, status answered, join refused; the connection stays usable, no fd arrives.
    const raw = await secClient(broker.sock, ['raw']);
    const msgs = raw.messages!.map((m) => JSON.parse(String(m)) as Record<string, unknown>);
    expect(msgs.map((m) => [m.type, m.id, m.code])).toEqual([
      ['welcome', undefined, undefined],
      ['error', 1, 'ERR_FDBROKER_NOT_PERMITTED'],
      ['status', 2, undefined],
      ['error', 3, 'ERR_FDBROKER_NOT_PERMITTED'],
    ]);
    expect(raw.fds).toBe(0);
    await waitText(broker.stdout, new RegExp(`^${audit('adopt', adopt, '\\*', '-', 'ERR_FDBROKER_NOT_PERMITTED')}$`, 'm'));
    // The first refusal of a uid and request is audited; the raw client's, within the interval, are counted (grants-uids.test.ts).
    await waitText(broker.stdout, new RegExp(`^${audit('join', join, '\\*', '-', 'ERR_FDBROKER_NOT_PERMITTED')}$`, 'm'));
    await waitText(broker.stderr, new RegExp(`^fdbroker: client pid ${adopt.pid} \\(uid ${NOBODY}\\): ERR_FDBROKER_NOT_PERMITTED`, 'm'));
  });

  it('--allow-gid 65534 lets a peer whose gid is 65534 adopt (any uid); --allow-status-gid gives status only', async () => {
    let broker = await brokerFor(['secretsvc=tcp://127.0.0.1:0'], ['--allow-gid', String(NOBODY)]);
    expect(await secClient(broker.sock, ['adopt'], OTHER, NOBODY)).toMatchObject({ ok: true, names: ['secretsvc'], ports: [broker.ports.secretsvc] });
    expect(await secClient(broker.sock, ['status'], OTHER, NOBODY)).toMatchObject({ ok: true });
    // Same uid, another gid: refused.
    expect((await secClient(broker.sock, ['adopt'], OTHER, OTHER)).code).toBe('ERR_FDBROKER_ACCESS_DENIED');
    broker.kill();
    await broker.exited;
    broker = await brokerFor(['secretsvc=tcp://127.0.0.1:0'], ['--allow-status-gid', String(NOBODY)]);
    expect(await secClient(broker.sock, ['status'], OTHER, NOBODY)).toMatchObject({ ok: true, listeners: ['secretsvc'] });
    expect((await secClient(broker.sock, ['adopt'], OTHER, NOBODY)).code).toBe('ERR_FDBROKER_NOT_PERMITTED');
  });

  it('a broker running as uid 65534 lets its own uid and root adopt by default, and refuses uid 65533', async () => {
    const dir = sharedDir();
    const own = path.join(dir, 'own');
    fs.mkdirSync(own, { mode: 0o755 });
    fs.chownSync(own, NOBODY, NOBODY);
    const sock = path.join(own, 'b.sock');
    const broker = runAs(NOBODY, NOBODY, shared.root, process.execPath, [shared.cli,
      'serve', sock, '--listen', 'http=tcp://127.0.0.1:0', '--mode', '0666']);
    const port = Number((await broker.waitFor(/http=tcp:\/\/127\.0\.0\.1:(\d+)/))[1]);
    expect(fs.statSync(sock).uid).toBe(NOBODY);
    expect(await secClient(sock, ['adopt'])).toMatchObject({ ok: true, ports: [port] });
    // Root is allowed by the broker, but by default a client trusts only a
    // broker of its own uid or root: it refuses this one before asking anything.
    await expect(adoptListeners(sock, { names: ['http'] })).rejects.toMatchObject({
      code: 'ERR_FDBROKER_UNTRUSTED_BROKER', message: expect.stringMatching(/runs as uid 65534, which is not trusted/),
    });
    const ls = await adoptListeners(sock, { names: ['http'], trustUids: [NOBODY] });
    expect(ls.http!.port).toBe(port);
    ls.http!.close();
    // uid 65533, trusting this broker, is refused by the broker (a log line names it).
    const other = await secClient(sock, ['adopt'], NOBODY - 1, NOBODY - 1, { TRUST_UIDS: String(NOBODY) });
    expect(other.code).toBe('ERR_FDBROKER_ACCESS_DENIED');
    expect(other.message).toMatch(/uid 65533 \(gid 65533\) may not use this broker/);
    await waitText(broker.stderr, new RegExp(`^fdbroker: client pid ${other.pid} \\(uid ${NOBODY - 1}\\): ERR_FDBROKER_ACCESS_DENIED`, 'm'));
  });
});

describeWith(AS_ROOT, 'audit', () => {
  it('every handout gives one audit line (pid, uid, gid, names, generation); refusals give one with the error code', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0', 'other=tcp://127.0.0.1:0']);
    const me = { pid: process.pid, uid: 0, gid: 0 };
    for (let i = 0; i < 3; i++) Object.values(await adoptListeners(broker.sock, { names: ['http'] })).forEach((l) => l.close());
    Object.values(await adoptListeners(broker.sock)).forEach((l) => l.close());
    await expect(adoptListeners(broker.sock, { names: ['nope'] })).rejects.toMatchObject({ code: 'ERR_FDBROKER_UNKNOWN_LISTENER' });
    // A generation: join and ready, from another process.
    const app = await startApp(broker.sock, {}, 'gen-app.js');
    const gen = { pid: app.pid, uid: 0, gid: 0 };
    // ready from a connection that never joined: refused.
    const raw = await Raw.connect(broker.sock);
    raw.send(HELLO);
    expect((await raw.next())?.msg.type).toBe('welcome');
    raw.send({ type: 'ready', id: 9 });
    expect((await raw.next())?.msg).toMatchObject({ type: 'error', id: 9, code: 'ERR_FDBROKER_READY_REFUSED' });
    raw.close();
    const expected: Array<[string, number]> = [
      [audit('adopt', me, 'http', '-', 'ok'), 3],
      [audit('adopt', me, 'http,other', '-', 'ok'), 1],
      [audit('adopt', me, 'nope', '-', 'ERR_FDBROKER_UNKNOWN_LISTENER'), 1],
      [audit('join', gen, 'http', 1, 'ok'), 1],
      [audit('ready', gen, '*', 1, 'ok'), 1],
      [audit('ready', me, '*', '-', 'ERR_FDBROKER_READY_REFUSED'), 1],
    ];
    const last = expected.at(-1)![0];
    await waitText(broker.stdout, new RegExp(`^${last.replace(/[*]/g, '\\*')}$`, 'm'));
    const out = broker.stdout();
    for (const [line, n] of expected) expect(out.split('\n').filter((l) => l === line), line).toHaveLength(n);
    // Nothing else was audited: 8 handouts and refusals, 8 lines.
    expect(count(out, 'fdbroker: audit ')).toBe(8);
  });
});

describeWith(AS_ROOT, 'limits', () => {
  it('--max-clients-per-uid 5: uid 65534 gets 5 connections, the 6th ERR_FDBROKER_UID_LIMIT; root is served meanwhile and not limited', async () => {
    const broker = await brokerFor(['http=tcp://127.0.0.1:0'], ['--max-clients-per-uid', '5', '--allow-uid', String(NOBODY)]);
    const holder = secClientProc(broker.sock, ['hold', '6']);
    await holder.waitFor(/^held$/m, 15_000);
    const lines = holder.stdout().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as SecResult);
    expect(lines.slice(0, 5).map((l) => l.ok)).toEqual([true, true, true, true, true]);
    expect(lines[5]).toMatchObject({ i: 5, code: 'ERR_FDBROKER_UID_LIMIT' });
    await waitText(broker.stdout, new RegExp(`^${audit('connect', lines[5]!, '\\*', '-', 'ERR_FDBROKER_UID_LIMIT')}$`, 'm'));
    // Meanwhile root: 8 connections at once (more than 5), each adopts.
    const conns = await Promise.all(Array.from({ length: 8 }, () => BrokerConnection.connect(broker.sock, { timeout: 5000 })));
    try {
      for (const c of conns) {
        const got = await c.adopt(['http'], 5000);
        expect(got.map((g) => g.info.port)).toEqual([broker.ports.http]);
        for (const g of got) native().close(g.fd);
      }
      const s = await statusOf(broker.sock);
      expect(s.clients.filter((c) => c.uid === NOBODY)).toHaveLength(5);
    } finally {
      for (const c of conns) c.close();
    }
    // The limit counts connected clients: once the holder is gone, uid 65534 is served again.
    holder.kill('SIGKILL');
    await holder.exited;
    const deadline = Date.now() + 5000;
    while ((await statusOf(broker.sock)).clients.some((c) => c.uid === NOBODY) && Date.now() < deadline) await sleep(20);
    expect(await secClient(broker.sock, ['adopt'])).toMatchObject({ ok: true });
  });

  it('one unread handout per client: a second adopt before reading the first gets ERR_FDBROKER_UNREAD_REPLY; others are served meanwhile', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const c = await Raw.connect(broker.sock);
    // hello and two adopts back to back, nothing read.
    c.send(HELLO);
    c.send({ type: 'adopt', id: 1, names: ['http'] });
    c.send({ type: 'adopt', id: 2, names: ['http'] });
    await waitText(broker.stdout, /result=ERR_FDBROKER_UNREAD_REPLY$/m);
    // A well-behaved client is served while that one sits on its reply.
    const ls = await adoptListeners(broker.sock, { names: ['http'] });
    expect(ls.http!.port).toBe(broker.ports.http);
    ls.http!.close();
    // Now read: the welcome, the first handout (one fd), then the refusal.
    const got = [await c.next(), await c.next(), await c.next()];
    expect(got.map((g) => [g?.msg.type, g?.msg.id, g?.msg.code, g?.fds])).toEqual([
      ['welcome', undefined, undefined, 0],
      ['listeners', 1, undefined, 1],
      ['error', 2, 'ERR_FDBROKER_UNREAD_REPLY', 0],
    ]);
    // The connection stays open; with everything read, the next adopt is served.
    c.send({ type: 'adopt', id: 3, names: ['http'] });
    expect(await c.next()).toMatchObject({ msg: { type: 'listeners', id: 3 }, fds: 1 });
    c.close();
    const out = broker.stdout();
    expect(count(out, `pid=${process.pid} uid=0 gid=0 names=http generation=- result=ERR_FDBROKER_UNREAD_REPLY`)).toBe(1);
  });

  it('a generation with an unread notice (not handout) behind what it read may adopt again: a resume read before the retire queued behind it', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--standby', '5000']);
    const a = await Raw.connect(broker.sock);
    a.send(HELLO);
    a.send({ type: 'join', id: 1, names: ['http'], standby: 5000 });
    expect(await a.next()).toMatchObject({ msg: { type: 'welcome' } });
    expect(await a.next()).toMatchObject({ msg: { type: 'listeners', id: 1 }, fds: 1 });
    a.send({ type: 'ready', id: 2 });
    expect(await a.next()).toMatchObject({ msg: { type: 'ack', id: 2 } });
    // A newer generation is ready: A is told to retire (standing by); A does not read it yet.
    const b = await BrokerConnection.connect(broker.sock, { timeout: 5000 });
    try {
      const j = await b.join(['http']);
      for (const l of j.listeners) native().close(l.fd);
      await b.ready();
      // The retire notice sits unread in A's socket; A asks for its listeners again (as a resume does),
      // and is slow to read on (a loaded machine: it lost the CPU right after its send).
      a.send({ type: 'adopt', id: 3, names: ['http'] });
      await sleep(300);
      expect(await a.next()).toMatchObject({ msg: { type: 'retire' } });
      expect(await a.next()).toMatchObject({ msg: { type: 'listeners', id: 3 }, fds: 1 });
    } finally {
      b.close();
      a.close();
    }
  });

  it('300 clients sitting on unread handouts do not slow a well-behaved client down (< 2 s)', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const before = fdCount(broker.pid);
    const stalled: Raw[] = [];
    try {
      for (let i = 0; i < 300; i++) {
        const c = await Raw.connect(broker.sock);
        stalled.push(c);
        c.send(HELLO);
        c.send({ type: 'adopt', id: 1, names: ['http'] });
        c.send({ type: 'adopt', id: 2, names: ['http'] });
      }
      // Every one of them holds a handout in flight and got refused the second.
      await waitText(() => String(count(broker.stdout(), 'result=ERR_FDBROKER_UNREAD_REPLY')), /^300$/, 15_000);
      const t0 = Date.now();
      const ls = await adoptListeners(broker.sock, { names: ['http'], timeout: 5000 });
      const ms = Date.now() - t0;
      ls.http!.close();
      console.info(`adopt with 300 stalled clients: ${ms} ms`);
      expect(ms).toBeLessThan(2000);
      // And the stalled ones got exactly what they should: one fd, one refusal each.
      let fds = 0;
      for (const c of stalled) {
        const got = [await c.next(), await c.next(), await c.next()];
        expect(got.map((g) => g?.msg.type)).toEqual(['welcome', 'listeners', 'error']);
        fds += got.reduce((a, g) => a + (g?.fds ?? 0), 0);
      }
      expect(fds).toBe(300);
    } finally {
      for (const c of stalled) c.close();
    }
    const deadline = Date.now() + 5000;
    while (fdCount(broker.pid) !== before && Date.now() < deadline) await sleep(20);
    expect(fdCount(broker.pid)).toBe(before);
  });
});

describeWith(AS_ROOT, 'control socket location and mode', () => {
  /** Runs `serve` with the control socket at `sock`; resolves when it is ready (then stops it) or exits. */
  async function tryServe(sock: string, extra: string[] = []): Promise<{ ready: boolean; code: number | null; stderr: string; mode?: number; gid?: number }> {
    const p = run(process.execPath, [CLI, 'serve', sock, '--listen', 'http=tcp://127.0.0.1:0', ...extra]);
    const r = await Promise.race([p.waitFor(/^fdbroker: ready on /m, 10_000).then(() => true, () => false), p.exited.then(() => false)]);
    let st: fs.Stats | undefined;
    if (r) {
      st = fs.statSync(sock);
      expect(st.isSocket()).toBe(true);
      p.kill('SIGTERM');
    }
    const { code } = await p.exited;
    return { ready: r, code, stderr: p.stderr(), mode: st && st.mode & 0o7777, gid: st?.gid };
  }

  it('a world-writable directory without the sticky bit is refused with ERR_FDBROKER_INSECURE_PATH; --insecure-dir overrides', async () => {
    const d = path.join(tmpDir(), 'ww');
    fs.mkdirSync(d);
    fs.chmodSync(d, 0o777);
    const r = await tryServe(path.join(d, 'b.sock'));
    expect(r.ready).toBe(false);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_FDBROKER_INSECURE_PATH/);
    expect(fs.existsSync(path.join(d, 'b.sock'))).toBe(false);
    // Group-writable is refused too.
    fs.chmodSync(d, 0o770);
    expect(await tryServe(path.join(d, 'b.sock'))).toMatchObject({ ready: false, code: 1, stderr: expect.stringMatching(/ERR_FDBROKER_INSECURE_PATH/) });
    fs.chmodSync(d, 0o777);
    expect(await tryServe(path.join(d, 'b.sock'), ['--insecure-dir'])).toMatchObject({ ready: true, code: 0 });
  });

  it('a directory reached through a symlink is refused with ERR_FDBROKER_INSECURE_PATH', async () => {
    const base = tmpDir();
    fs.mkdirSync(path.join(base, 'real'), { mode: 0o700 });
    fs.symlinkSync(path.join(base, 'real'), path.join(base, 'link'));
    const r = await tryServe(path.join(base, 'link', 'b.sock'));
    expect(r).toMatchObject({ ready: false, code: 1 });
    expect(r.stderr).toMatch(/ERR_FDBROKER_INSECURE_PATH.*symlink/);
    expect(fs.existsSync(path.join(base, 'real', 'b.sock'))).toBe(false);
    // The real path itself is fine.
    expect(await tryServe(path.join(base, 'real', 'b.sock'))).toMatchObject({ ready: true, code: 0 });
  });

  it('a directory owned by another (non-root) user is refused', async () => {
    const d = path.join(tmpDir(), 'theirs');
    fs.mkdirSync(d, { mode: 0o755 });
    fs.chownSync(d, NOBODY, NOBODY);
    expect(await tryServe(path.join(d, 'b.sock'))).toMatchObject({ ready: false, code: 1, stderr: expect.stringMatching(/ERR_FDBROKER_INSECURE_PATH/) });
  });

  it('a sticky world-writable directory (1777, like /tmp) is accepted', async () => {
    const d = path.join(tmpDir(), 'sticky');
    fs.mkdirSync(d);
    fs.chmodSync(d, 0o1777);
    expect(await tryServe(path.join(d, 'b.sock'))).toMatchObject({ ready: true, code: 0 });
  });

  it('the control socket is 0600 by default; --group G --mode 0660 gives group G access (the file mode still applies)', async () => {
    const dir = sharedDir();
    expect(await tryServe(path.join(dir, 'a.sock'))).toMatchObject({ ready: true, mode: 0o600, gid: 0 });
    const sock = path.join(dir, 'g.sock');
    const broker = run(process.execPath, [CLI, 'serve', sock, '--listen', 'http=tcp://127.0.0.1:0',
      '--group', String(NOBODY), '--mode', '0660', '--allow-gid', String(NOBODY), '--allow-uid', String(OTHER)]);
    await broker.waitFor(/^fdbroker: ready on /m);
    const st = fs.statSync(sock);
    expect([st.mode & 0o7777, st.gid, st.uid]).toEqual([0o660, NOBODY, 0]);
    // In group 65534: the file lets it connect, the broker's grant lets it adopt.
    expect(await secClient(sock, ['adopt'], OTHER, NOBODY)).toMatchObject({ ok: true, names: ['http'] });
    // uid 12345 in another group has a grant, but the file mode keeps it out (EACCES at connect).
    const r = await secClient(sock, ['adopt'], OTHER, OTHER);
    expect(r).toMatchObject({ code: 'ERR_FDBROKER_ACCESS_DENIED', cause: 'EACCES' });
    // The fix is named on both levels: the socket file's mode/group, and the broker's grants.
    expect(r.message).toMatch(/--mode 0660 --group GID/);
    expect(r.message).toMatch(/--allow-uid or --allow-gid/);
  });
});

describe('one broker per path', () => {
  it('two brokers started at the same instant on a fresh path, 100 rounds: exactly one wins, the other exits 1 with ERR_FDBROKER_BROKER_RUNNING', async () => {
    const ROUNDS = 100;
    const PARALLEL = 4;
    const dir = tmpDir();
    const why: Record<string, number> = {};
    const round = async (i: number) => {
      const sock = path.join(dir, `r${i}.sock`);
      const env = { START_AT: String(Date.now() + 600) };
      const args = ['-r', path.join(FIXTURES, 'sec-start-at.js'), CLI, 'serve', sock, '--listen', 'http=tcp://127.0.0.1:0'];
      const ps = [run(process.execPath, args, { env }), run(process.execPath, args, { env })];
      const outcome = await Promise.all(ps.map((p) => Promise.race([
        p.waitFor(/^fdbroker: ready on /m, 15_000).then(() => 'ready' as const, () => 'no-ready' as const),
        p.exited.then(() => 'exited' as const),
      ])));
      const winners = ps.filter((_, k) => outcome[k] === 'ready');
      const losers = ps.filter((_, k) => outcome[k] !== 'ready');
      expect(winners, `round ${i}: ${outcome.join(', ')}; ${ps.map((p) => p.stderr()).join(' | ')}`).toHaveLength(1);
      const loser = losers[0]!;
      expect((await loser.exited).code).toBe(1);
      expect(loser.stderr()).toMatch(/^fdbroker: ERR_FDBROKER_BROKER_RUNNING: /m);
      expect(loser.stdout()).not.toMatch(/ready on/);
      const reason = /holds .*\.lock/.test(loser.stderr()) ? 'lock' : 'live path';
      why[reason] = (why[reason] ?? 0) + 1;
      // The winner's path answers, and it is the winner who answers.
      const s = await statusOf(sock);
      expect(s.broker.pid).toBe(winners[0]!.pid);
      winners[0]!.kill('SIGTERM');
      expect((await winners[0]!.exited).code).toBe(0);
    };
    for (let i = 0; i < ROUNDS; i += PARALLEL) {
      await Promise.all(Array.from({ length: Math.min(PARALLEL, ROUNDS - i) }, (_, k) => round(i + k)));
    }
    console.info(`start race, ${ROUNDS} rounds: the loser was stopped by ${JSON.stringify(why)}`);
  }, 240_000);

  it('a path that still answers is never unlinked by a second broker (a live broker, a foreign listener, a full queue)', async () => {
    // A live broker.
    const first = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const ino = fs.statSync(first.sock).ino;
    const second = run(process.execPath, [CLI, 'serve', first.sock, '--listen', 'x=tcp://127.0.0.1:0']);
    expect((await second.exited).code).toBe(1);
    expect(second.stderr()).toMatch(/ERR_FDBROKER_BROKER_RUNNING/);
    expect(fs.statSync(first.sock).ino).toBe(ino);
    expect((await statusOf(first.sock)).broker.pid).toBe(first.pid);

    // Something else that answers on the path and holds no lock file.
    const n = native();
    const c = n.constants;
    const sock = path.join(tmpDir(), 'foreign.sock');
    const lfd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
    const pending: number[] = [];
    try {
      expect(n.bind(lfd, { family: 'unix', path: sock })).toBe(0);
      expect(n.listen(lfd, 0)).toBe(0);
      const fino = fs.statSync(sock).ino;
      for (const fullQueue of [false, true]) {
        if (fullQueue) {
          // Fill its accept queue until connect() says EAGAIN (bounded).
          for (let k = 0; k < 16; k++) {
            const fd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
            const r = n.connect(fd, { family: 'unix', path: sock });
            pending.push(fd);
            if (r === EAGAIN) break;
            expect(r).toBe(0);
          }
          const extra = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
          pending.push(extra);
          expect(n.connect(extra, { family: 'unix', path: sock })).toBe(EAGAIN);
        }
        const p = run(process.execPath, [CLI, 'serve', sock, '--listen', 'x=tcp://127.0.0.1:0']);
        expect((await p.exited).code).toBe(1);
        expect(p.stderr()).toMatch(/ERR_FDBROKER_BROKER_RUNNING/);
        expect(fs.statSync(sock).ino).toBe(fino);
      }
      // Still ours: queued connections are there to accept.
      const a = n.accept(lfd);
      expect(a).toBeGreaterThanOrEqual(0);
      n.close(a);
    } finally {
      for (const fd of pending) n.close(fd);
      n.close(lfd);
    }
  });
});

describeWith([python3()], 'a holder that breaks a shared listener', () => {
  it('shutdown() in an app is reported within ~2 s: a stderr line once, and broken: true in status', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0', 'other=tcp://127.0.0.1:0']);
    expect((await statusOf(broker.sock)).listeners.every((l) => !('broken' in l))).toBe(true);
    const py = run('python3', [path.join(FIXTURES, 'sec_shutdown.py'), broker.sock, 'http']);
    await py.waitFor(/^shut \d+$/m);
    const t0 = Date.now();
    await waitText(broker.stderr, /^fdbroker: listener "http" \(tcp:\/\/127\.0\.0\.1:\d+\) no longer listens/m, 3000);
    const ms = Date.now() - t0;
    console.info(`broken listener reported after ${ms} ms`);
    expect(ms).toBeLessThan(2000);
    const s = await statusOf(broker.sock);
    expect(s.listeners.find((l) => l.name === 'http')).toMatchObject({ broken: true, port: broker.ports.http });
    expect(s.listeners.find((l) => l.name === 'other')).not.toHaveProperty('broken');
    // Reported once, not on every check.
    await sleep(700);
    expect(count(broker.stderr(), 'no longer listens')).toBe(1);
  });
});

describeWith([tool('prlimit', ['--version'], 'prlimit (util-linux)', 'apt-get install util-linux')], 'fd headroom', () => {
  const headroom = (sock: string, env: NodeJS.ProcessEnv) => {
    const p = run('prlimit', ['--nofile=80:80', process.execPath, path.join(FIXTURES, 'sec-headroom.js')], { env: { FDBROKER_SOCK: sock, ...env } });
    return p.exited.then(({ code }) => {
      expect(code, p.stderr()).toBe(0);
      return { pid: p.pid, ...(JSON.parse(p.stdout().trim()) as { open: number; limit: number; ok?: boolean; port?: number; code?: string }) };
    });
  };

  it('an app near RLIMIT_NOFILE gets ERR_FDBROKER_FD_HEADROOM before asking the broker; with fdHeadroom: 0 it adopts', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    // 30 of 80 fds open: 30 + 1 + 64 (the default headroom) > 80.
    const refused = await headroom(broker.sock, { FILL_TO: '30' });
    expect(refused).toMatchObject({ open: 30, limit: 80, code: 'ERR_FDBROKER_FD_HEADROOM' });
    const adopted = await headroom(broker.sock, { FILL_TO: '30', FD_HEADROOM: '0' });
    expect(adopted).toMatchObject({ open: 30, limit: 80, ok: true, port: broker.ports.http });
    const small = await headroom(broker.sock, { FILL_TO: '30', FD_HEADROOM: '20' });
    expect(small).toMatchObject({ ok: true, port: broker.ports.http });
    // The refusal was local: the broker never heard from that process.
    await waitText(broker.stdout, new RegExp(`pid=${small.pid} .*result=ok`, 'm'));
    expect(broker.stdout()).not.toContain(`pid=${refused.pid} `);
    expect(broker.stdout()).toContain(`pid=${adopted.pid} `);
  });
});
