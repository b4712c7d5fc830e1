// Broker takeover (`fdbroker serve <path> --takeover`): a new broker takes
// the running one's listeners, options and generation table, renames its
// control socket over the path, and the old one moves its generations to it
// and exits. Real brokers, a real generation app (test/fixtures/gen-app.js),
// real HTTP load on 127.0.0.1 with no retries: keep-alive clients and a new
// connection per request at once.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { compareSoftware, mergeOptions, refuseSuccessor, specsToCreate, takeoverRefusal, type TakeoverAsk } from '../../src/takeover/options';
import { parseListenerSpec } from '../../src/broker/spec';
import { BrokerConnection } from '../../src/client/connection';
import { native } from '../../src/native/binding';
import { PROTOCOL_VERSION } from '../../src/protocol/limits';
import { EAGAIN } from '../../src/native/errno';
import { probeUnix } from '../../src/transport/socket-info';
import { listenerPidAt } from '../../src/broker/control-path';
import { VERSION } from '../../src/protocol/version';
import type { ListenerInfo } from '../../src/protocol/messages';
import {
  alive, cleanup, CLI, get, loadLoop, quietFdCount, run, sleep, socketInodes, startApp, startBroker, statusOf, tmpDir, waitText,
  type BrokerProc, type Proc,
} from '../helpers';
import { NOBODY, runAs, sharedCopy, SYSTEM_PYTHON, type SharedCopy } from '../other-user';
import { describeWith, root, setpriv } from '../requirements';

/** The test preload that sets fault-injection pauses from FDBROKER_TEST_* (test/fixtures/seams.js). */
const SEAMS = path.join(__dirname, '..', 'fixtures', 'seams.js');

afterEach(cleanup);

describe('takeover policy (pure)', () => {
  it('orders software versions, a pre-release before its release', () => {
    expect(compareSoftware('0.1.0', '0.1.0')).toBe(0);
    expect(compareSoftware('fdbroker/0.2.0', '0.1.9')).toBeGreaterThan(0);
    expect(compareSoftware('0.1.0', '0.10.0')).toBeLessThan(0);
    expect(compareSoftware('1.0.0-rc.1', '1.0.0')).toBeLessThan(0);
    expect(compareSoftware('banana', '1.0.0')).toBeUndefined();
  });

  it('refuses an older protocol, an older or unreadable software version; accepts the same or newer', () => {
    const mine = { protocol: 2, software: '1.4.0' };
    expect(refuseSuccessor(mine, { protocol: 1, software: '9.0.0' })?.code).toBe('ERR_FDBROKER_VERSION');
    expect(refuseSuccessor(mine, { protocol: 2, software: '1.3.9' })?.code).toBe('ERR_FDBROKER_VERSION');
    expect(refuseSuccessor(mine, { protocol: 2, software: 'x' })?.code).toBe('ERR_FDBROKER_VERSION');
    expect(refuseSuccessor(mine, { protocol: 2, software: '1.4.0' })).toBeUndefined();
    expect(refuseSuccessor(mine, { protocol: 3, software: '2.0.0' })).toBeUndefined();
  });

  it('takeoverRefusal: the grant first, then embedded, the owner\'s refusal, one in flight, paused listeners, the version', () => {
    const ok: TakeoverAsk = { uid: 0, permitted: true, brokerUid: 0, embedded: false, refusal: undefined, inFlightBy: undefined, paused: [],
      mine: { protocol: 2, software: '1.4.0' }, theirs: { protocol: 2, software: '1.4.0' } };
    expect(takeoverRefusal(ok)).toBeUndefined();
    const code = (a: Partial<TakeoverAsk>) => takeoverRefusal({ ...ok, ...a })?.code;
    expect(code({ permitted: false, uid: 7, embedded: true })).toBe('ERR_FDBROKER_NOT_PERMITTED');
    expect(takeoverRefusal({ ...ok, permitted: false, uid: 7 })?.message).toMatch(/^uid 7 may not take over/);
    expect(takeoverRefusal({ ...ok, embedded: true })?.message).toMatch(/embedded in an app/);
    expect(takeoverRefusal({ ...ok, refusal: 'started by systemd with the fd store off' })?.message).toBe('started by systemd with the fd store off');
    expect(code({ inFlightBy: 42, paused: ['http'] })).toBe('ERR_FDBROKER_UPGRADE_IN_PROGRESS');
    expect(takeoverRefusal({ ...ok, paused: ['http', 'admin'] })?.message).toMatch(/listeners are paused \(http, admin\)/);
    expect(code({ theirs: { protocol: 1, software: '9.0.0' } })).toBe('ERR_FDBROKER_VERSION');
  });

  it('flags given to the successor override the handed options; others are kept', () => {
    const merged = mergeOptions({ standbyMs: 1000, mode: 0o660, access: { allowUids: [7] } }, { standbyMs: undefined, mode: 0o600, readyTimeoutMs: 5 });
    expect(merged).toEqual({ standbyMs: 1000, mode: 0o600, access: { allowUids: [7] }, readyTimeoutMs: 5 });
  });

  it('a --listen naming a received listener must match it (port 0 matches any); new names are created', () => {
    const got: ListenerInfo[] = [{ name: 'http', kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: 8080 }];
    expect(specsToCreate(got, [parseListenerSpec('http=tcp://127.0.0.1:8080')])).toEqual([]);
    expect(specsToCreate(got, [parseListenerSpec('http=tcp://127.0.0.1:0')])).toEqual([]);
    expect(specsToCreate(got, [parseListenerSpec('admin=tcp://127.0.0.1:0')]).map((s) => s.name)).toEqual(['admin']);
    expect(() => specsToCreate(got, [parseListenerSpec('http=tcp://127.0.0.1:8081')])).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_BAD_LISTENER' }));
    expect(() => specsToCreate(got, [parseListenerSpec('http=udp://127.0.0.1:8080')])).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_BAD_LISTENER' }));
  });
});

/** Keep-alive clients and new-connection clients at once, no retries. */
function twoLoads(port: number) {
  const keep = loadLoop(port, { concurrency: 3, keepAlive: true, maxMs: 60_000, timeoutMs: 5_000 });
  const fresh = loadLoop(port, { concurrency: 3, keepAlive: false, maxMs: 60_000, timeoutMs: 5_000 });
  return {
    keep, fresh,
    ok: () => keep.stats.ok + fresh.stats.ok,
    failed: () => keep.stats.failed + fresh.stats.failed,
    stop: async () => { await keep.stop(); await fresh.stop(); },
  };
}

/** The listener's socket inode: the one both the broker and the app hold. */
function sharedInode(a: number, b: number): string[] {
  const mine = new Set(socketInodes(a));
  return socketInodes(b).filter((i) => mine.has(i));
}

/** Runs `fdbroker serve <sock> --takeover` and waits for its ready line; returns it with the parsed log line. */
async function takeover(sock: string, env?: NodeJS.ProcessEnv, extra: string[] = []): Promise<{ p: Proc; listeners: number; generations: number; from: number; version: string; ms: number; wallMs: number }> {
  const t0 = Date.now();
  const p = run(process.execPath, [CLI, 'serve', sock, '--takeover', ...extra], { env });
  const m = await p.waitFor(/^fdbroker: took over (\d+) listeners? and (\d+) generations? from pid (\d+) \(version (\S+)\) in (\d+) ms$/m);
  // One is singular: "1 listener", "1 generation".
  expect(m[0]).not.toMatch(/\b1 (listeners|generations)\b/);
  await p.waitFor(/^fdbroker: ready on /m);
  return { p, listeners: Number(m[1]), generations: Number(m[2]), from: Number(m[3]), version: m[4]!, ms: Number(m[5]), wallMs: Date.now() - t0 };
}

async function waitRejoined(sock: string, brokerPid: number, appPid: number): Promise<void> {
  for (let t = 0; t < 100; t++) {
    const s = await statusOf(sock);
    if (s.broker.pid === brokerPid && s.clients.some((c) => c.pid === appPid) && s.generations.some((g) => g.pid === appPid && g.clientId !== 0)) return;
    await sleep(50);
  }
  throw new Error(`generation of pid ${appPid} did not rejoin broker ${brokerPid}`);
}

describe('fdbroker serve --takeover', () => {
  it('under load: twice in a row, 0 failed, same listener socket, the generation rejoins unnoticed; then a deploy through the new broker retires it', async () => {
    const dir = tmpDir();
    const b1: BrokerProc = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--standby', '1000', '--ready-timeout', '20000']);
    const port = b1.ports.http!;
    const app = await startApp(b1.sock, {}, 'gen-app.js');
    expect(app.stdout()).toMatch(/^ready \d+ gen 1$/m);
    const inode = sharedInode(b1.pid, app.pid);
    expect(inode).toHaveLength(1);
    const load = twoLoads(port);
    const durations: string[] = [];
    /** Requests answered and failed from the successor's start to the old broker's exit. */
    const during = (mark: { ok: number; failed: number }) => `${load.ok() - mark.ok} ok / ${load.failed() - mark.failed} failed`;
    try {
      await sleep(500);
      // First takeover: b1 -> b2.
      let mark = { ok: load.ok(), failed: load.failed() };
      const t1 = await takeover(b1.sock);
      expect(t1).toMatchObject({ listeners: 1, generations: 1, from: b1.pid });
      await b1.waitFor(/^fdbroker: taken over by pid \d+ .*exiting$/m);
      expect(await b1.exited).toEqual({ code: 0, signal: null });
      durations.push(`#1 ${t1.ms} ms (CLI start to ready ${t1.wallMs} ms; requests meanwhile ${during(mark)})`);
      await waitRejoined(b1.sock, t1.p.pid, app.pid);
      let s = await statusOf(b1.sock);
      expect(s.listeners.map((l) => [l.name, l.port])).toEqual([['http', port]]);
      expect(s.generations).toMatchObject([{ number: 1, pid: app.pid, state: 'ready' }]);
      expect(sharedInode(t1.p.pid, app.pid)).toEqual(inode);
      await sleep(500);
      // Second takeover: b2 -> b3.
      mark = { ok: load.ok(), failed: load.failed() };
      const t2 = await takeover(b1.sock);
      expect(t2).toMatchObject({ listeners: 1, generations: 1, from: t1.p.pid });
      expect(await t1.p.exited).toEqual({ code: 0, signal: null });
      durations.push(`#2 ${t2.ms} ms (CLI start to ready ${t2.wallMs} ms; requests meanwhile ${during(mark)})`);
      await waitRejoined(b1.sock, t2.p.pid, app.pid);
      s = await statusOf(b1.sock);
      expect(s.generations).toMatchObject([{ number: 1, pid: app.pid, state: 'ready' }]);
      expect(sharedInode(t2.p.pid, app.pid)).toEqual(inode);
      // What b3 would hand on: b1's options (never given to b2 or b3), the table, numbering from 2. Asked raw, then
      // abandoned without commit: b3 serves on.
      const conn = await BrokerConnection.connect(b1.sock);
      const raw = await conn.takeover(PROTOCOL_VERSION, VERSION);
      for (const l of raw.listeners) native().close(l.fd);
      conn.close();
      expect(raw.handoff.options).toEqual({ standbyMs: 1000, readyTimeoutMs: 20_000 });
      expect(raw.handoff.nextGeneration).toBe(2);
      expect(raw.handoff.broker.pid).toBe(t2.p.pid);
      expect(raw.handoff.generations).toMatchObject([{ number: 1, pid: app.pid, state: 'ready' }]);
      expect(raw.listeners.map((l) => [l.info.name, l.info.port])).toEqual([['http', port]]);
      await waitText(() => t2.p.stderr(), /failed before commit .*serving on, unchanged/);
      expect((await statusOf(b1.sock)).broker.pid).toBe(t2.p.pid);
      await sleep(500);
      // The app noticed nothing but the rejoins: no loss, no retire, no drain.
      await waitText(() => app.stdout(), /^rejoin \d+ gen 1 ready$[^]*^rejoin \d+ gen 1 ready$/m);
      expect(app.stdout().match(/^rejoin \d+ gen 1 ready$/gm)).toHaveLength(2);
      expect(app.stdout()).not.toMatch(/^(lost|retire|drained) /m);
      expect(alive(app.pid)).toBe(true);
      // A normal deploy through the new broker: numbering continues (2) and the old generation retires and exits.
      const gen2 = await startApp(b1.sock, {}, 'gen-app.js');
      expect(gen2.stdout()).toMatch(/^ready \d+ gen 2$/m);
      await app.waitFor(/^retire \d+ by 2$/m);
      await app.waitFor(/^drained \d+ forced 0$/m, 15_000);
      expect((await app.exited).code).toBe(0);
      await waitText(() => JSON.stringify(load.fresh.stats.servedBy), new RegExp(`"${gen2.pid}"`), 10_000);
      await sleep(300);
    } finally {
      await load.stop();
    }
    console.info(`takeover x2 under load: keep-alive ${JSON.stringify(load.keep.stats)}, new-connection ${JSON.stringify(load.fresh.stats)}, takeovers: ${durations.join('; ')}`);
    expect(load.failed()).toBe(0);
    expect(load.keep.stats.ok).toBeGreaterThan(0);
    expect(load.fresh.stats.ok).toBeGreaterThan(0);
  }, 60_000);

  it('10 takeovers in a row under load: 0 failed, the generation stays #1 and ready throughout', async () => {
    const b1 = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const app = await startApp(b1.sock, {}, 'gen-app.js');
    const load = twoLoads(b1.ports.http!);
    const ms: number[] = [];
    const t0 = Date.now();
    const ok0 = load.ok();
    const probe = probeLoop(b1.sock);
    try {
      let prev: Proc = b1;
      for (let i = 0; i < 10; i++) {
        const t = await takeover(b1.sock);
        expect(t.from).toBe(prev.pid);
        expect((await prev.exited).code).toBe(0);
        await waitRejoined(b1.sock, t.p.pid, app.pid);
        ms.push(t.ms);
        prev = t.p;
      }
    } finally {
      await load.stop();
      await probe.stop();
    }
    const sorted = [...ms].sort((a, b) => a - b);
    console.info(`10 takeovers under load in ${Date.now() - t0} ms: ${load.ok() - ok0} requests ok, ${load.failed()} failed; `
      + `takeover ms min ${sorted[0]} median ${sorted[5]} max ${sorted[9]}; control path probes ${probe.seen.ok} ok, ${probe.seen.failed} failed`);
    expect(load.failed()).toBe(0);
    expect(probe.seen.failed).toBe(0);
    expect((await statusOf(b1.sock)).generations).toMatchObject([{ number: 1, pid: app.pid, state: 'ready' }]);
    for (let t = 0; t < 100 && (app.stdout().match(/^rejoin \d+ gen 1 ready$/gm) ?? []).length < 10; t++) await sleep(20);
    expect(app.stdout().match(/^rejoin \d+ gen 1 ready$/gm)).toHaveLength(10);
    expect(app.stdout()).not.toMatch(/^(lost|retire|drained) /m);
  }, 60_000);

  it('a successor SIGKILLed after its rename, before its commit: the old broker binds the path again and serves on (0 failed, same generations)', async () => {
    const b1 = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const app = await startApp(b1.sock, {}, 'gen-app.js');
    const ino = fs.statSync(b1.sock).ino;
    const load = twoLoads(b1.ports.http!);
    try {
      await sleep(300);
      // FDBROKER_TEST_TAKEOVER_COMMIT_DELAY_MS (test-only) holds the successor after its rename, before it commits.
      const doomed = run(process.execPath, ['-r', SEAMS, CLI, 'serve', b1.sock, '--takeover'], { env: { FDBROKER_TEST_TAKEOVER_COMMIT_DELAY_MS: '20000' } });
      const owner = `${b1.sock}.owner`;
      for (let t = 0; t < 250 && (fs.statSync(b1.sock).ino === ino || listenerPidAt(owner) !== doomed.pid); t++) await sleep(20);
      expect(fs.statSync(b1.sock).ino).not.toBe(ino); // the path is the successor's socket now, PATH.owner too
      expect(listenerPidAt(owner)).toBe(doomed.pid);
      expect((await statusOf(b1.sock)).broker.pid).toBe(doomed.pid);
      process.kill(doomed.pid, 'SIGKILL');
      await doomed.exited;
      await waitText(() => b1.stderr(), /failed before commit .*serving on, unchanged/);
      expect(listenerPidAt(owner)).toBe(b1.pid); // bound again, like the path
      const s = await statusOf(b1.sock);
      expect(s.broker.pid).toBe(b1.pid);
      expect(s.generations).toMatchObject([{ number: 1, pid: app.pid, state: 'ready' }]);
      await sleep(300);
    } finally {
      await load.stop();
    }
    expect(load.failed()).toBe(0);
    expect(app.stdout()).not.toMatch(/^(lost|rejoin|retire) /m);
  }, 30_000);

  it('flags given to the successor override the handed options; --listen adds a listener or must match one (else exit 1, the old broker serves on)', async () => {
    const b1 = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--standby', '1000', '--ready-timeout', '20000']);
    const port = b1.ports.http!;
    const app = await startApp(b1.sock, {}, 'gen-app.js');
    const before = await quietFdCount(b1.pid);
    // A --listen that names "http" but another port: refused before the successor binds anything.
    const bad = run(process.execPath, [CLI, 'serve', b1.sock, '--takeover', '--listen', `http=tcp://127.0.0.1:${port === 65535 ? port - 1 : port + 1}`]);
    expect((await bad.exited).code).toBe(1);
    expect(bad.stderr()).toMatch(/ERR_FDBROKER_BAD_LISTENER: listener "http" of the running broker is bound to port/);
    await waitText(() => b1.stderr(), /failed before commit/);
    expect((await statusOf(b1.sock)).broker.pid).toBe(b1.pid);
    expect(await quietFdCount(b1.pid)).toBe(before);
    // Matching "http" (port 0 matches), a new "admin", and --standby 0 in place of 1000.
    const p = run(process.execPath, [CLI, 'serve', b1.sock, '--takeover', '--listen', 'http=tcp://127.0.0.1:0', '--listen', 'admin=tcp://127.0.0.1:0', '--standby', '0']);
    const m = await p.waitFor(/^fdbroker: ready on .*$/m);
    expect(m[0]).toContain(`http=tcp://127.0.0.1:${port}`);
    expect(m[0]).toMatch(/admin=tcp:\/\/127\.0\.0\.1:\d+/);
    expect((await b1.exited).code).toBe(0);
    await waitRejoined(b1.sock, p.pid, app.pid);
    const conn = await BrokerConnection.connect(b1.sock);
    const raw = await conn.takeover(PROTOCOL_VERSION, VERSION);
    for (const l of raw.listeners) native().close(l.fd);
    conn.close();
    expect(raw.handoff.options).toEqual({ standbyMs: 0, readyTimeoutMs: 20_000 });
    expect(raw.listeners.map((l) => l.info.name).sort()).toEqual(['admin', 'http']);
  }, 30_000);

  it('with --config: a successor gets the grants a reload set; the listeners the file names stay the configuration\'s after a takeover (a reload adds and removes them)', async () => {
    const dir = tmpDir();
    const conf = path.join(dir, 'broker.toml');
    fs.writeFileSync(conf, '[listeners]\nhttp = "tcp://127.0.0.1:0"\n[access]\nallow-uid = [4242]\n[limits]\nmax-clients = 50\n');
    const b1 = await startBroker(dir, [], ['--config', conf]);
    const app = await startApp(b1.sock, {}, 'gen-app.js');
    // A reload changes the grants and limits: a successor gets them as they are now, not as the broker started.
    fs.writeFileSync(conf, '[listeners]\nhttp = "tcp://127.0.0.1:0"\n[access]\nallow-uid = [4343]\n');
    expect((await run(process.execPath, [CLI, 'reload', b1.sock]).exited).code).toBe(0);
    const conn = await BrokerConnection.connect(b1.sock);
    const raw = await conn.takeover(PROTOCOL_VERSION, VERSION);
    for (const l of raw.listeners) native().close(l.fd);
    conn.close();
    expect(raw.handoff.options).toEqual({ access: { allowUids: [4343] } });
    await waitText(() => b1.stderr(), /failed before commit/);
    const t = await takeover(b1.sock, undefined, ['--config', conf]);
    expect(t.listeners).toBe(1);
    await waitRejoined(b1.sock, t.p.pid, app.pid);
    fs.writeFileSync(conf, '[listeners]\nadmin = "tcp://127.0.0.1:0"\n');
    const r = run(process.execPath, [CLI, 'reload', b1.sock]);
    expect((await r.exited).code).toBe(0);
    const s = await statusOf(b1.sock);
    expect(s.broker.pid).toBe(t.p.pid);
    expect(s.listeners.filter((l) => !l.removed).map((l) => l.name)).toEqual(['admin']);
    await waitText(() => t.p.stdout(), /listener http=tcp:\/\/127\.0\.0\.1:\d+ removed/);
    expect(alive(app.pid)).toBe(true); // it keeps its copy and serves on
  }, 30_000);

  it('without --config: the successor reads the file the old broker names and reloads it; a file it cannot read is a warning, and reloads are refused (ERR_FDBROKER_NO_CONFIG) saying how to fix it', async () => {
    const dir = tmpDir();
    const conf = path.join(dir, 'broker.toml');
    fs.writeFileSync(conf, '[listeners]\nhttp = "tcp://127.0.0.1:0"\n');
    const b1 = await startBroker(dir, [], ['--config', conf]);
    const t = await takeover(b1.sock);
    expect(t.p.stdout()).toContain(`fdbroker: read ${conf}, the old broker's configuration (not given here): reloads re-read it`);
    expect((await b1.exited).code).toBe(0);
    fs.writeFileSync(conf, '[listeners]\nhttp = "tcp://127.0.0.1:0"\nadmin = "tcp://127.0.0.1:0"\n');
    const r = run(process.execPath, [CLI, 'reload', b1.sock]);
    expect((await r.exited).code).toBe(0);
    expect(r.stdout()).toMatch(/added admin; removed -; changed -/);
    // http stays the file's: removing it from the file removes it.
    fs.writeFileSync(conf, '[listeners]\nadmin = "tcp://127.0.0.1:0"\n');
    expect((await run(process.execPath, [CLI, 'reload', b1.sock]).exited).code).toBe(0);
    expect((await statusOf(b1.sock)).listeners.filter((l) => !l.removed).map((l) => l.name)).toEqual(['admin']);

    // The next successor finds the file gone (moved away): it warns, serves, and refuses reloads.
    fs.renameSync(conf, `${conf}.moved`);
    const t2 = await takeover(b1.sock);
    expect((await t.p.exited).code).toBe(0);
    await waitText(() => t2.p.stderr(), /could not be read here/); // stderr, another pipe than the ready line
    expect(t2.p.stderr()).toContain(`--takeover --config ${conf}`);
    const r2 = run(process.execPath, [CLI, 'reload', b1.sock]);
    expect((await r2.exited).code).toBe(1);
    expect(r2.stderr()).toMatch(/ERR_FDBROKER_NO_CONFIG: this broker took over from pid \d+ without its configuration/);
    // SIGHUP: the same refusal, printed by the broker, which serves on.
    t2.p.kill('SIGHUP');
    await waitText(() => t2.p.stderr(), /reload failed, nothing changed.*ERR_FDBROKER_NO_CONFIG/);
    expect((await statusOf(b1.sock)).broker.pid).toBe(t2.p.pid);
    // Given --config again, the next successor reloads.
    fs.renameSync(`${conf}.moved`, conf);
    const t3 = await takeover(b1.sock, undefined, ['--config', conf]);
    expect(t3.p.stderr()).not.toMatch(/could not be read/);
    expect((await run(process.execPath, [CLI, 'reload', b1.sock]).exited).code).toBe(0);
  }, 30_000);

  it('a successor whose NOTIFY_SOCKET or WATCHDOG_USEC is malformed is refused before it takes anything (exit 1, ERR_FDBROKER_SYSTEMD): the old broker serves on', async () => {
    const b1 = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const app = await startApp(b1.sock, {}, 'gen-app.js');
    for (const env of [{ NOTIFY_SOCKET: 'not-a-path' }, { NOTIFY_SOCKET: '/nonexistent/notify', WATCHDOG_USEC: 'soon' }]) {
      const p = run(process.execPath, [CLI, 'serve', b1.sock, '--takeover'], { env });
      expect((await p.exited).code).toBe(1);
      expect(p.stderr()).toMatch(/ERR_FDBROKER_SYSTEMD/);
      expect(p.stdout()).not.toMatch(/took over/);
    }
    expect(b1.stderr()).not.toMatch(/takeover by pid/);
    const s = await statusOf(b1.sock);
    expect(s.broker.pid).toBe(b1.pid);
    expect(s.generations).toMatchObject([{ pid: app.pid, state: 'ready' }]);
    expect(alive(b1.pid)).toBe(true);
  }, 30_000);

  it('a broker with no listeners (a library broker) is taken over, not closed by the successor after its commit', async () => {
    const sock = path.join(tmpDir(), 'lib.sock');
    const lib = run(process.execPath, ['-e', `
      const { Broker } = require('./dist/entry/broker');
      const b = Broker.start({ controlPath: ${JSON.stringify(sock)}, inherit: false });
      b.on('takenOver', () => { console.log('taken over'); process.exit(0); });
      console.log('ready');
      setInterval(() => {}, 1000);`]);
    await lib.waitFor(/^ready$/m);
    const p = run(process.execPath, [CLI, 'serve', sock, '--takeover']);
    await lib.waitFor(/^taken over$/m);
    await p.waitFor(/^fdbroker: ready on /m);
    expect((await statusOf(sock)).broker.pid).toBe(p.pid);
    expect(alive(p.pid)).toBe(true);
  }, 30_000);

  it('with --metrics: the metrics socket is handed over like a listener (another uid racing to bind the port never gets it); at another address the new one binds it, retrying while it is taken', async () => {
    const dir = tmpDir();
    fs.chmodSync(dir, 0o755);
    const b1 = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--metrics', 'tcp://127.0.0.1:0']);
    const url = b1.stdout().match(/metrics on (http:\/\/127\.0\.0\.1:(\d+)\/metrics)/);
    expect(url).not.toBeNull();
    // uid 65534 tries to bind the metrics port as fast as it can, with and without SO_REUSEADDR/SO_REUSEPORT.
    const racer = run('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', SYSTEM_PYTHON, '-c', `
import socket, sys, time
port = int(sys.argv[1]); tries = 0; end = time.time() + 20
print("racing", flush=True)
while time.time() < end:
    for opt in (None, socket.SO_REUSEADDR, socket.SO_REUSEPORT):
        s = socket.socket()
        if opt is not None: s.setsockopt(socket.SOL_SOCKET, opt, 1)
        try:
            s.bind(("127.0.0.1", port)); s.listen(1)
            print("won", tries, flush=True); time.sleep(5); sys.exit(0)
        except OSError:
            tries += 1
        finally:
            s.close()
    if tries % 3000 == 0: print("tries", tries, flush=True)`, url![2]!]);
    await racer.waitFor(/^racing$/m);
    const t = await takeover(b1.sock, undefined, ['--metrics', `tcp://127.0.0.1:${url![2]}`]);
    expect((await b1.exited).code).toBe(0); // its metrics endpoint does not keep it alive
    await t.p.waitFor(/^fdbroker: ready on .*; metrics on http:/m);
    await sleep(300);
    racer.kill();
    await racer.exited;
    expect(racer.stdout()).not.toMatch(/^won/m);
    expect(racer.stdout()).toMatch(/^tries \d+/m); // it really raced
    const res = await fetch(url![1]);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^fdbroker_handovers_total /m);
    // Again, with the address held by someone else for 1 s after the takeover starts: the new broker serves the path meanwhile and binds it once free.
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as net.AddressInfo).port;
    const p3 = run(process.execPath, [CLI, 'serve', b1.sock, '--takeover', '--metrics', `tcp://127.0.0.1:${port}`]);
    await p3.waitFor(/^fdbroker: took over /m);
    expect((await t.p.exited).code).toBe(0);
    await sleep(1000);
    expect(p3.stdout()).not.toMatch(/ready on/); // still retrying the metrics address
    expect((await statusOf(b1.sock)).broker.pid).toBe(p3.pid); // and serving the path
    await new Promise((r) => blocker.close(r));
    await p3.waitFor(new RegExp(`^fdbroker: ready on .*; metrics on http://127\\.0\\.0\\.1:${port}/metrics$`, 'm'), 6_000);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
    expect(p3.stderr()).not.toMatch(/no metrics endpoint/);
    // The old address is closed (p3 was given another one), and a successor without --metrics closes what it was handed: refused, never a hang.
    await expect(fetch(url![1])).rejects.toThrow();
    const p4 = run(process.execPath, [CLI, 'serve', b1.sock, '--takeover']);
    await p4.waitFor(/^fdbroker: ready on /m);
    expect((await p3.exited).code).toBe(0);
    const refused = await new Promise<string>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.destroy(); resolve('connected'); });
      c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  }, 30_000);

  it('an app that is its own broker (embedded) is not taken over: ERR_FDBROKER_NOT_PERMITTED, exit 1; the app serves on', async () => {
    const sock = path.join(tmpDir(), 'self.sock');
    const app = run(process.execPath, [path.join(__dirname, '..', 'fixtures', 'self-app.js')], { env: { FDBROKER_SOCK: sock } });
    const m = await app.waitFor(/^ready \d+ gen 1 port (\d+) broker self$/m);
    const p = run(process.execPath, [CLI, 'serve', sock, '--takeover']);
    expect((await p.exited).code).toBe(1);
    expect(p.stderr()).toMatch(/ERR_FDBROKER_NOT_PERMITTED: this broker is embedded in an app/);
    expect((await statusOf(sock)).broker.pid).toBe(app.pid);
    expect((await get(Number(m[1]))).status).toBe(200);
  }, 30_000);

  it('refused by version: a successor claiming an older version exits 1 with ERR_FDBROKER_VERSION; the old broker serves on unchanged, fds at baseline', async () => {
    const b1 = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const app = await startApp(b1.sock, {}, 'gen-app.js');
    const before = await quietFdCount(b1.pid);
    const load = twoLoads(b1.ports.http!);
    try {
      await sleep(300);
      // FDBROKER_TEST_TAKEOVER_SOFTWARE (test-only) makes the successor claim another version.
      const old = run(process.execPath, ['-r', SEAMS, CLI, 'serve', b1.sock, '--takeover'], { env: { FDBROKER_TEST_TAKEOVER_SOFTWARE: '0.0.1' } });
      const ex = await old.exited;
      expect(ex.code).toBe(1);
      expect(old.stderr()).toMatch(/ERR_FDBROKER_VERSION: fdbroker 0\.0\.1 is older than this broker/);
      await sleep(300);
    } finally {
      await load.stop();
    }
    expect(load.failed()).toBe(0);
    const s = await statusOf(b1.sock);
    expect(s.broker.pid).toBe(b1.pid);
    expect(s.generations).toMatchObject([{ number: 1, pid: app.pid, state: 'ready' }]);
    await waitText(() => b1.stdout(), /op=takeover .* result=ERR_FDBROKER_VERSION/);
    expect(await quietFdCount(b1.pid)).toBe(before);
    expect(app.stdout()).not.toMatch(/^(lost|rejoin|retire) /m);
  }, 30_000);

  it('a successor SIGKILLed after it received the fds: the old broker serves on unchanged (0 failed, fds at baseline); a second one meanwhile is refused; a later takeover works', async () => {
    const b1 = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const app = await startApp(b1.sock, {}, 'gen-app.js');
    const before = await quietFdCount(b1.pid);
    const load = twoLoads(b1.ports.http!);
    try {
      await sleep(300);
      // FDBROKER_TEST_TAKEOVER_DELAY_MS (test-only) holds the successor after it received everything, before it binds.
      const doomed = run(process.execPath, ['-r', SEAMS, CLI, 'serve', b1.sock, '--takeover'], { env: { FDBROKER_TEST_TAKEOVER_DELAY_MS: '20000' } });
      await b1.waitFor(new RegExp(`^fdbroker: takeover by pid ${doomed.pid} .*handed 1 listeners and 1 generations`, 'm'));
      // It holds the listener now, received (and the old broker still does).
      const listenerInode = sharedInode(b1.pid, app.pid)[0]!;
      for (let t = 0; t < 100 && !socketInodes(doomed.pid).includes(listenerInode); t++) await sleep(20);
      expect(socketInodes(doomed.pid)).toContain(listenerInode);
      // One takeover at a time.
      const second = run(process.execPath, [CLI, 'serve', b1.sock, '--takeover']);
      expect((await second.exited).code).toBe(1);
      expect(second.stderr()).toContain('ERR_FDBROKER_UPGRADE_IN_PROGRESS');
      process.kill(doomed.pid, 'SIGKILL');
      expect((await doomed.exited).signal).toBe('SIGKILL');
      await waitText(() => b1.stderr(), /takeover by pid \d+ failed before commit .*serving on, unchanged/);
      await sleep(500);
      expect(load.failed()).toBe(0);
      const s = await statusOf(b1.sock);
      expect(s.broker.pid).toBe(b1.pid);
      expect(s.generations).toMatchObject([{ number: 1, pid: app.pid, state: 'ready' }]);
      expect(await quietFdCount(b1.pid)).toBe(before);
      // The slot is free again: a healthy successor takes over.
      const t = await takeover(b1.sock);
      expect(t.from).toBe(b1.pid);
      expect((await b1.exited).code).toBe(0);
      await waitRejoined(b1.sock, t.p.pid, app.pid);
      await sleep(300);
    } finally {
      await load.stop();
    }
    console.info(`failed takeover under load: ${load.ok()} ok, ${load.failed()} failed`);
    expect(load.failed()).toBe(0);
    expect(app.stdout()).not.toMatch(/^(lost|retire|drained) /m);
  }, 60_000);
});

/** Connects to `sock` every ~2 ms until stopped; counts connects no broker answered (anything but success or a full queue). */
function probeLoop(sock: string) {
  const seen = { ok: 0, failed: 0, errors: new Set<number>() };
  let stopping = false;
  const done = (async () => {
    while (!stopping) {
      const r = probeUnix(sock, native().constants.SOCK_SEQPACKET);
      if (r === 0 || r === EAGAIN) seen.ok++;
      else { seen.failed++; seen.errors.add(r); }
      await sleep(2);
    }
  })();
  return { seen, stop: async () => { stopping = true; await done; return seen; } };
}

describe('fdbroker serve --takeover: the path, many listeners, a generation standing by', () => {
  it('300 listeners (more than 253 fds: in parts) move with their ports; connect() to the path never fails during the takeover', async () => {
    const dir = tmpDir();
    const specs = Array.from({ length: 300 }, (_, i) => `l${i}=tcp://127.0.0.1:0`);
    const b1 = await startBroker(dir, specs, ['--quiet']);
    expect(Object.keys(b1.ports)).toHaveLength(300);
    const probe = probeLoop(b1.sock);
    let t: Awaited<ReturnType<typeof takeover>>;
    try {
      await sleep(200);
      t = await takeover(b1.sock);
      expect((await b1.exited).code).toBe(0);
      await sleep(200);
    } finally {
      await probe.stop();
    }
    console.info(`300-listener takeover: ${t.ms} ms (CLI start to ready line ${t.wallMs} ms); control path probes ${probe.seen.ok} ok, ${probe.seen.failed} failed`);
    expect(probe.seen.failed).toBe(0);
    expect(probe.seen.ok).toBeGreaterThan(10);
    expect(t.listeners).toBe(300);
    const s = await statusOf(b1.sock);
    expect(s.broker.pid).toBe(t.p.pid);
    expect(Object.fromEntries(s.listeners.map((l) => [l.name, l.port]))).toEqual(b1.ports);
  }, 60_000);

  it('a generation standing by keeps its window across the takeover: released by the new broker, it drains and exits; 0 failed', async () => {
    const dir = tmpDir();
    const b1 = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--standby', '3000']);
    const v1 = await startApp(b1.sock, {}, 'gen-app.js');
    const load = twoLoads(b1.ports.http!);
    try {
      await sleep(300);
      const v2 = await startApp(b1.sock, {}, 'gen-app.js');
      await v1.waitFor(/^retire \d+ by 2$/m);
      expect((await statusOf(b1.sock)).generations.map((g) => [g.number, g.state])).toEqual([[1, 'standby'], [2, 'ready']]);
      const t = await takeover(b1.sock);
      expect(t.generations).toBe(2);
      await waitRejoined(b1.sock, t.p.pid, v1.pid);
      await waitRejoined(b1.sock, t.p.pid, v2.pid);
      const s = await statusOf(b1.sock);
      expect(s.generations.map((g) => [g.number, g.state])).toEqual([[1, 'standby'], [2, 'ready']]);
      // Released by the new broker when the window (3 s from v2's ready) ends: v1 drains and exits.
      await waitText(() => t.p.stdout(), /generation 1: standby over, draining/, 6_000);
      await v1.waitFor(/^drained \d+ forced 0$/m, 10_000);
      expect((await v1.exited).code).toBe(0);
      expect(v1.stdout()).not.toMatch(/^(lost|resume) /m);
      expect(v2.stdout()).not.toMatch(/^(lost|retire) /m);
      expect((await statusOf(b1.sock)).generations.map((g) => [g.number, g.state])).toEqual([[2, 'ready']]);
      await sleep(300);
    } finally {
      await load.stop();
    }
    expect(load.failed()).toBe(0);
  }, 60_000);
});

describe('fdbroker serve --takeover with fdbroker exec', () => {
  it('a generation run by fdbroker exec rejoins the new broker with its number and state; the next deploy retires it; 0 failed', async () => {
    const b1 = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--standby', '0']);
    const prog = [process.execPath, path.join(__dirname, '..', 'fixtures', 'exec-listen-fds.js')];
    const exec1 = run(process.execPath, [CLI, 'exec', b1.sock, '--ready', 'immediate', '--', ...prog]);
    await exec1.waitFor(/^serving \d+$/m);
    await waitText(() => b1.stdout(), /generation 1 \(pid \d+\) ready/);
    const load = twoLoads(b1.ports.http!);
    try {
      await sleep(300);
      const t = await takeover(b1.sock);
      expect((await b1.exited).code).toBe(0);
      await waitText(() => exec1.stderr(), /re-joined the broker as generation 1 \(ready\)/);
      await waitRejoined(b1.sock, t.p.pid, exec1.pid);
      expect((await statusOf(b1.sock)).generations).toMatchObject([{ number: 1, pid: exec1.pid, state: 'ready' }]);
      expect(exec1.stderr()).not.toMatch(/lost the broker/);
      await sleep(300);
      const exec2 = run(process.execPath, [CLI, 'exec', b1.sock, '--ready', 'immediate', '--', ...prog]);
      await exec2.waitFor(/^serving \d+$/m);
      const ex1 = await exec1.exited;
      expect(ex1.code).toBe(0);
      expect((await statusOf(b1.sock)).generations).toMatchObject([{ number: 2, pid: exec2.pid, state: 'ready' }]);
      await sleep(300);
    } finally {
      await load.stop();
    }
    expect(load.failed()).toBe(0);
  }, 40_000);
});

describe('fdbroker serve --takeover during a deploy', () => {
  /** b1 + v1 (ready) under load; a successor held 3 s after it received everything (FDBROKER_TEST_TAKEOVER_DELAY_MS, test-only). */
  async function setup(v2env?: NodeJS.ProcessEnv) {
    const b1 = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--standby', '500']);
    const v1 = await startApp(b1.sock, {}, 'gen-app.js');
    const load = twoLoads(b1.ports.http!);
    await sleep(300);
    // v2 before the takeover (its ready() comes during it), or none yet.
    const v2early = v2env ? run(process.execPath, [path.join(__dirname, '..', 'fixtures', 'gen-app.js')], { env: { FDBROKER_SOCK: b1.sock, ...v2env } }) : undefined;
    if (v2early) await waitText(() => b1.stdout(), new RegExp(`op=join pid=${v2early.pid} .*result=ok`));
    const successor = run(process.execPath, ['-r', SEAMS, CLI, 'serve', b1.sock, '--takeover'], { env: { FDBROKER_TEST_TAKEOVER_DELAY_MS: '3000' } });
    await b1.waitFor(/^fdbroker: takeover by pid \d+ /m);
    return { b1, v1, load, v2early, successor };
  }

  it('a new generation that joins while the takeover is in flight waits, is sent on to the new broker, gets the next number and retires the old one; 0 failed', async () => {
    const { b1, v1, load, successor } = await setup();
    try {
      const v2 = run(process.execPath, [path.join(__dirname, '..', 'fixtures', 'gen-app.js')], { env: { FDBROKER_SOCK: b1.sock } });
      await successor.waitFor(/^fdbroker: ready on /m);
      await v2.waitFor(/^ready \d+ gen 2$/m, 10_000);
      expect((await b1.exited).code).toBe(0);
      await v1.waitFor(/^retire \d+ by 2$/m);
      await v1.waitFor(/^drained \d+ forced 0$/m, 10_000);
      expect((await v1.exited).code).toBe(0);
      const s = await statusOf(b1.sock);
      expect(s.broker.pid).toBe(successor.pid);
      expect(s.generations.map((g) => [g.number, g.pid, g.state])).toEqual([[2, v2.pid, 'ready']]);
      await sleep(300);
    } finally {
      await load.stop();
    }
    expect(load.failed()).toBe(0);
  }, 40_000);

  it('a ready() sent while the takeover is in flight is committed by the new broker (after the rejoin); the old generation retires; 0 failed', async () => {
    // v2 says ready 1.5 s after it serves: after the takeover started (checked below), before the successor commits.
    const { b1, v1, load, v2early, successor } = await setup({ READY_DELAY_MS: '1500' });
    const v2 = v2early!;
    try {
      await successor.waitFor(/^fdbroker: ready on /m);
      await v2.waitFor(/^ready \d+ gen 2$/m, 10_000);
      expect(v2.stdout()).toMatch(/^rejoin \d+ gen 2 ready$/m);
      // The old broker never carried the ready out: it was held, then carried by the rejoin.
      expect(b1.stdout()).not.toMatch(new RegExp(`op=ready pid=${v2.pid}`));
      await successor.waitFor(new RegExp(`^fdbroker: generation 2 \\(pid ${v2.pid}\\) ready; retiring 1$`, 'm'));
      await v1.waitFor(/^drained \d+ forced 0$/m, 10_000);
      expect((await v1.exited).code).toBe(0);
      expect((await statusOf(b1.sock)).generations.map((g) => [g.number, g.state])).toEqual([[2, 'ready']]);
      await sleep(300);
    } finally {
      await load.stop();
    }
    expect(load.failed()).toBe(0);
  }, 40_000);
});

describeWith([root('to run the successor as uid 65534'), setpriv()], 'takeover by another uid', () => {
  let shared: SharedCopy;
  beforeAll(() => { shared = sharedCopy(); });
  afterAll(() => shared?.remove());

  it('uid 65534, even with --allow-uid 65534 (adopt and status), may not take over: ERR_FDBROKER_NOT_PERMITTED, exit 1; the broker serves on', async () => {
    const dir = tmpDir();
    fs.chmodSync(dir, 0o711);
    const b1 = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--mode', '0666', '--allow-uid', String(NOBODY)]);
    const app = await startApp(b1.sock, {}, 'gen-app.js');
    const before = await quietFdCount(b1.pid);
    const other = runAs(NOBODY, NOBODY, shared.root, process.execPath, [shared.cli, 'serve', b1.sock, '--takeover']);
    expect((await other.exited).code).toBe(1);
    expect(other.stderr()).toMatch(/ERR_FDBROKER_NOT_PERMITTED: uid 65534 may not take over this broker/);
    await waitText(() => b1.stdout(), /op=takeover pid=\d+ uid=65534 .*result=ERR_FDBROKER_NOT_PERMITTED/);
    const s = await statusOf(b1.sock);
    expect(s.broker.pid).toBe(b1.pid);
    expect(s.generations).toMatchObject([{ number: 1, pid: app.pid, state: 'ready' }]);
    expect(await quietFdCount(b1.pid)).toBe(before);
    expect(fs.existsSync(path.join(dir, 'broker.sock'))).toBe(true);
  }, 30_000);
});
