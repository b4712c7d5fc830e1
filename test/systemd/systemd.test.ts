// The broker and an app under a REAL systemd user manager (test/systemd/manager.ts),
// with the unit files shipped in examples/systemd/ (paths and ports replaced):
// Type=notify readiness and STATUS=, crash survival through the fd store
// under load, the app@ swap, and the socket-activated variant.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CLI, FIXTURES, ROOT, cleanup, get, loadLoop, run, sleep, socketInodes, statusOf, type Proc } from '../helpers';
import { describeWith, python3Command, ss } from '../requirements';
import { managerNeeds, UserManager } from './manager';
import type { StatusMessage } from '../../src/protocol/messages';

const EXAMPLES = path.join(ROOT, 'examples', 'systemd');
const FDBROKER = `${process.execPath} ${CLI}`;

/** A free tcp port on 127.0.0.1 (bound and closed again). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A shipped unit with each [from, to] replaced; every `from` must be in it (the test follows the example). */
function unitFromExample(name: string, replace: Array<[string, string]>, serviceLines: string[] = []): string {
  let text = fs.readFileSync(path.join(EXAMPLES, name), 'utf8');
  for (const [from, to] of replace) {
    if (!text.includes(from)) throw new Error(`examples/systemd/${name} no longer has "${from}"`);
    text = text.split(from).join(to);
  }
  if (serviceLines.length) text = text.replace('[Service]\n', `[Service]\n${serviceLines.join('\n')}\n`);
  return text;
}

/** The inode of the socket listening on 127.0.0.1:port, from ss (one socket, however many processes hold it). */
function listeningInodes(port: number): string[] {
  // stderr: ss -e says "Failed to open cgroup2 by ID" for sockets of the manager's cgroups; the inode is there anyway.
  const out = execFileSync('ss', ['-Hltne', `sport = :${port}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return [...out.matchAll(/ino:(\d+)/g)].map((m) => m[1]!);
}

async function tryStatus(sock: string): Promise<StatusMessage | undefined> {
  try { return await statusOf(sock); } catch { return undefined; }
}

/** Polls until `f` returns a value (not undefined), or throws after `ms`. */
async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 10_000, every = 10): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

describeWith([...managerNeeds(), ss()], 'under a real systemd user manager', () => {
  let m: UserManager;
  let sock: string;
  let logDir: string;
  const log = (unit: string) => [`StandardOutput=append:${logDir}/${unit}.log`, `StandardError=append:${logDir}/${unit}.log`];
  const logOf = (unit: string) => { try { return fs.readFileSync(`${logDir}/${unit}.log`, 'utf8'); } catch { return ''; } };
  /** examples/systemd/fdbroker.toml with http on `port` and `extra` lines under [listeners], written where the unit reads it. */
  const writeConfig = (port: number, extra: string[] = []) => {
    const text = fs.readFileSync(path.join(EXAMPLES, 'fdbroker.toml'), 'utf8');
    if (!text.includes('http = "tcp://0.0.0.0:8080"')) throw new Error('examples/systemd/fdbroker.toml no longer has http = "tcp://0.0.0.0:8080"');
    fs.writeFileSync(configFile, text.replace('http = "tcp://0.0.0.0:8080"', [`http = "tcp://127.0.0.1:${port}"`, ...extra].join('\n')));
  };
  /** examples/systemd/fdbroker.service, reading `configFile`. */
  const brokerUnit = (unit: string, replace: Array<[string, string]> = []) => unitFromExample('fdbroker.service', [
    ['/usr/bin/fdbroker', FDBROKER], ['%E/fdbroker/fdbroker.toml', configFile], ...replace,
  ], log(unit));
  let configFile: string;

  beforeAll(async () => {
    m = await UserManager.start();
    sock = path.join(m.runtimeDir, 'fdbroker', 'control.sock');
    logDir = path.join(m.runtimeDir, 'logs');
    fs.mkdirSync(logDir);
    configFile = path.join(logDir, 'fdbroker.toml');
  }, 30_000);
  afterAll(async () => { await m?.stop(); }, 30_000);
  afterEach(async () => { await cleanup(); });

  it('Type=notify: start returns after READY=1, StatusText summarises, the watchdog is fed, SIGKILL under load loses no request, '
    + 'the listener comes back from the fd store and a running generation re-joins', async () => {
    const port = await freePort();
    const unixPath = path.join(logDir, 'admin.sock');
    // A unix listener too: its socket file stays, and its fd comes back from the store like the tcp one.
    writeConfig(port, [`admin = "unix:${unixPath}"`]);
    await m.install({
      'fdbroker.service': brokerUnit('fdbroker', [['WatchdogSec=10s', 'WatchdogSec=1s']]),
    });
    const t0 = Date.now();
    await m.systemctl('start', 'fdbroker.service');
    const startMs = Date.now() - t0;
    // (a) READY=1 came after the control socket answered: it answers now, at the first try.
    expect(await m.show('fdbroker.service', 'ActiveState')).toBe('active');
    const st = await statusOf(sock);
    const brokerPid = Number(await m.show('fdbroker.service', 'MainPID'));
    expect(st.broker.pid).toBe(brokerPid);
    expect(st.listeners.map((l) => [l.name, l.port ?? l.path])).toEqual([['http', port], ['admin', unixPath]]);
    expect(await m.show('fdbroker.service', 'StatusText')).toBe('2 listeners, 0 generations, no generation ready');
    // RuntimeDirectory=fdbroker, RuntimeDirectoryMode=0755; the socket --mode 0660 --group 0.
    expect(fs.statSync(path.dirname(sock)).mode & 0o7777).toBe(0o755);
    expect([fs.statSync(sock).mode & 0o7777, fs.statSync(sock).gid]).toEqual([0o660, 0]);
    const unixIno = fs.statSync(unixPath).ino;

    // A running generation (a Node app: startGeneration), started outside systemd.
    const app = run(process.execPath, [path.join(FIXTURES, 'gen-app.js')], { env: { FDBROKER_SOCK: sock } });
    const ready = await app.waitFor(/^ready (\d+) gen (\d+)/m, 15_000);
    const gen = Number(ready[2]);
    await until('StatusText with the generation', async () => {
      const s = await m.show('fdbroker.service', 'StatusText');
      return s === `2 listeners, 1 generation, serving: generation ${gen} (pid ${app.pid})` ? s : undefined;
    });
    // WatchdogSec=1s: still the same process well past a watchdog period.
    await sleep(2500);
    expect(Number(await m.show('fdbroker.service', 'MainPID'))).toBe(brokerPid);
    expect(await m.show('fdbroker.service', 'NRestarts')).toBe('0');

    // (b) Under load (a new connection per request, no retries), SIGKILL the broker.
    const inodes = listeningInodes(port);
    expect(inodes).toHaveLength(1);
    expect(socketInodes(brokerPid)).toContain(inodes[0]);
    const load = loadLoop(port, { concurrency: 4, keepAlive: false, maxMs: 30_000 });
    await sleep(1000);
    const before = load.stats.ok;
    const tKill = Date.now();
    await m.systemctl('kill', '--signal=SIGKILL', '--kill-whom=main', 'fdbroker.service');
    const back = await until('the restarted broker answering', async () => {
      const s = await tryStatus(sock);
      return s && s.broker.pid !== brokerPid ? s : undefined;
    }, 15_000);
    const gapMs = Date.now() - tKill;
    const rejoined = await until('the generation to re-join', async () => {
      const s = await tryStatus(sock);
      const g = s?.generations.find((x) => x.pid === app.pid);
      return g?.state === 'ready' ? s : undefined;
    }, 10_000, 50);
    await sleep(1000);
    const stats = await load.stop();
    const newPid = Number(await m.show('fdbroker.service', 'MainPID'));
    console.log(`systemd SIGKILL under load: ${stats.ok + stats.failed} requests, ${stats.failed} failed ${JSON.stringify(stats.byKind)}, `
      + `restart gap ${gapMs} ms (kill to the new broker answering), start ${startMs} ms, ${before} requests before the kill`);
    expect(stats.failed).toBe(0);
    expect(stats.byKind).toEqual({});
    expect(stats.ok).toBeGreaterThan(before);
    expect(newPid).toBe(back.broker.pid);
    expect(await m.show('fdbroker.service', 'NRestarts')).toBe('1');
    expect(await m.show('fdbroker.service', 'ActiveState')).toBe('active');
    // The same listener: name, spec, port, and the very socket (inode) systemd kept in its fd store.
    expect(back.listeners.map((l) => [l.name, l.kind, l.address ?? l.path, l.port])).toEqual([['http', 'tcp', '127.0.0.1', port], ['admin', 'unix', unixPath, undefined]]);
    // The unix one: the same socket file, still accepting (a connection is queued on the stored socket).
    expect(fs.statSync(unixPath).ino).toBe(unixIno);
    await new Promise<void>((resolve, reject) => { const c = net.connect(unixPath, () => { c.destroy(); resolve(); }); c.on('error', reject); });
    expect(listeningInodes(port)).toEqual(inodes);
    expect(socketInodes(newPid)).toContain(inodes[0]);
    expect(logOf('fdbroker')).not.toMatch(/came back from the service manager but/);
    // The generation that outlived the broker joined the new one and is reported as serving.
    expect(app.stdout()).toMatch(new RegExp(`^rejoin ${app.pid} gen \\d+ ready$`, 'm'));
    const g = rejoined.generations.find((x) => x.pid === app.pid)!;
    await until('StatusText after the restart', async () => {
      const s = await m.show('fdbroker.service', 'StatusText');
      return s === `2 listeners, 1 generation, serving: generation ${g.number} (pid ${app.pid})` ? s : undefined;
    });

    // The accept queue survives too: with no app at all, a connection made while no
    // broker runs is queued on the stored socket and served by the app started after.
    app.kill('SIGKILL');
    await app.exited;
    const pid2 = newPid;
    await m.systemctl('kill', '--signal=SIGKILL', '--kill-whom=main', 'fdbroker.service');
    const early = get(port);
    await until('the third broker', async () => {
      const s = await tryStatus(sock);
      return s && s.broker.pid !== pid2 ? s : undefined;
    }, 15_000);
    const late = run(process.execPath, [path.join(FIXTURES, 'http-app.js')], { env: { FDBROKER_SOCK: sock } });
    await late.waitFor(/^ready \d+/m);
    const r = await early;
    expect(r.status).toBe(200);
    expect(r.body).toMatch(new RegExp(`^${late.pid}\\b`));
    expect(listeningInodes(port)).toEqual(inodes);

    // `systemctl restart` keeps the store too (a restart job: the unit never goes inactive for good).
    late.kill('SIGKILL');
    await late.exited;
    await m.systemctl('restart', 'fdbroker.service');
    expect(listeningInodes(port)).toEqual(inodes);
    // SIGTERM (systemctl stop): a clean exit, and systemd empties the store: the port is closed.
    await m.systemctl('stop', 'fdbroker.service');
    expect(await m.show('fdbroker.service', 'Result')).toBe('success');
    await until('the port closed', () => (listeningInodes(port).length === 0 ? true : undefined), 5_000, 50);
  }, 90_000);

  it('app@.service: `systemctl start app@v2` swaps versions with 0 failed requests; MainPID is each version\'s generation; '
    + 'exec re-joins a restarted broker, so the next deploy retires it; a version never ready fails its start and retires nobody', async () => {
    const port = await freePort();
    const py = python3Command();
    writeConfig(port);
    await m.install({
      'fdbroker.service': brokerUnit('fdbroker'),
      'app@.service': unitFromExample('app@.service', [
        ['/usr/bin/fdbroker', FDBROKER], ['/opt/app/%i/server', `${py} ${path.join(ROOT, 'examples', 'python_server.py')}`],
      ], log('app')),
    });
    await m.systemctl('start', 'fdbroker.service');
    await m.systemctl('start', 'app@v1.service');
    // start returned: v1 is ready (ExecStartPost's `fdbroker wait --until ready`).
    const st1 = await statusOf(sock);
    const v1Pid = Number(await m.show('app@v1.service', 'MainPID'));
    expect(st1.generations.filter((g) => g.state === 'ready').map((g) => [g.pid, g.label])).toEqual([[v1Pid, 'v1']]);
    expect((await get(port)).status).toBe(200);

    const load = loadLoop(port, { concurrency: 4, keepAlive: false, maxMs: 30_000 });
    await sleep(1000);
    const t0 = Date.now();
    await m.systemctl('start', 'app@v2.service');
    const swapMs = Date.now() - t0;
    const v2Pid = Number(await m.show('app@v2.service', 'MainPID'));
    const st2 = await statusOf(sock);
    expect(st2.generations.find((g) => g.state === 'ready')?.pid).toBe(v2Pid);
    // v1 was retired by the broker, drained and went inactive by itself, cleanly.
    await until('app@v1 inactive', async () => ((await m.show('app@v1.service', 'ActiveState')) === 'inactive' ? true : undefined), 20_000, 100);
    expect(await m.show('app@v1.service', 'Result')).toBe('success');
    await sleep(500);
    const stats = await load.stop();
    console.log(`app@ swap under load: ${stats.ok + stats.failed} requests, ${stats.failed} failed ${JSON.stringify(stats.byKind)}; `
      + `systemctl start app@v2 took ${swapMs} ms`);
    expect(stats.failed).toBe(0);
    expect(stats.byKind).toEqual({});
    expect(await m.show('app@v2.service', 'ActiveState')).toBe('active');
    expect(Number(await m.show('app@v2.service', 'MainPID'))).toBe(v2Pid);
    const st3 = await statusOf(sock);
    expect(st3.generations.map((g) => [g.pid, g.state, g.label])).toEqual([[v2Pid, 'ready', 'v2']]);
    // Both versions served during the run.
    expect(Object.keys(stats.servedBy).length).toBeGreaterThanOrEqual(2);

    // The broker crashes: exec re-joins the restarted broker, so the next deploy still retires v2.
    const load2 = loadLoop(port, { concurrency: 4, keepAlive: false, maxMs: 30_000 });
    const brokerPid = Number(await m.show('fdbroker.service', 'MainPID'));
    await m.systemctl('kill', '--signal=SIGKILL', '--kill-whom=main', 'fdbroker.service');
    await until('v2 re-joined the restarted broker', async () => {
      const s = await tryStatus(sock);
      return s && s.broker.pid !== brokerPid && s.generations.some((g) => g.pid === v2Pid && g.state === 'ready') ? true : undefined;
    }, 15_000, 50);
    expect(logOf('app')).toMatch(/fdbroker exec: re-joined the broker as generation \d+ \(ready\)/);
    await m.systemctl('start', 'app@v3.service');
    const v3Pid = Number(await m.show('app@v3.service', 'MainPID'));
    await until('app@v2 inactive', async () => ((await m.show('app@v2.service', 'ActiveState')) === 'inactive' ? true : undefined), 20_000, 100);
    expect(await m.show('app@v2.service', 'Result')).toBe('success');
    await sleep(500);
    const stats2 = await load2.stop();
    console.log(`broker SIGKILL between deploys, then app@v3: ${stats2.ok + stats2.failed} requests, ${stats2.failed} failed ${JSON.stringify(stats2.byKind)}`);
    expect(stats2.failed).toBe(0);
    const st4 = await statusOf(sock);
    expect(st4.generations.map((g) => [g.pid, g.state, g.label])).toEqual([[v3Pid, 'ready', 'v3']]);

    // A version that never becomes ready: `systemctl start` fails, that version is stopped, v3 serves on.
    fs.mkdirSync(path.join(m.unitDir, 'app@bad.service.d'));
    fs.writeFileSync(path.join(m.unitDir, 'app@bad.service.d', 'never-ready.conf'), [
      '[Service]', 'ExecStart=', `ExecStart=${FDBROKER} exec ${sock} --label bad -- /bin/sleep 60`,
      'ExecStartPost=', `ExecStartPost=${FDBROKER} wait ${sock} --pid $MAINPID --until ready --timeout 1500`, '',
    ].join('\n'));
    await m.systemctl('daemon-reload');
    const load3 = loadLoop(port, { concurrency: 4, keepAlive: false, maxMs: 30_000 });
    const bad = await m.run('systemctl', ['--user', 'start', 'app@bad.service']);
    expect(bad.code).not.toBe(0);
    expect(await m.show('app@bad.service', 'ActiveState')).toMatch(/^(failed|inactive)$/);
    const stats3 = await load3.stop();
    expect(stats3.failed).toBe(0);
    const st5 = await statusOf(sock);
    expect(st5.generations.map((g) => [g.pid, g.state, g.label])).toEqual([[v3Pid, 'ready', 'v3']]);
    expect(await m.show('app@v3.service', 'ActiveState')).toBe('active');
    await m.systemctl('stop', 'app@v3.service', 'fdbroker.service');
  }, 90_000);

  it('a listener whose port changed in the file while the broker was down: the stored socket is closed and removed from the store, the new one stored', async () => {
    const portA = await freePort();
    const portB = await freePort();
    writeConfig(portA);
    await m.install({ 'fdbroker.service': brokerUnit('changed') });
    await m.systemctl('start', 'fdbroker.service');
    expect(listeningInodes(portA)).toHaveLength(1);
    const restart = async () => {
      const pid = Number(await m.show('fdbroker.service', 'MainPID'));
      await m.systemctl('kill', '--signal=SIGKILL', '--kill-whom=main', 'fdbroker.service');
      return until('the restarted broker', async () => {
        const s = await tryStatus(sock);
        return s && s.broker.pid !== pid ? s : undefined;
      }, 15_000);
    };
    writeConfig(portB);
    const st = await restart();
    expect(st.listeners.map((l) => [l.name, l.port])).toEqual([['http', portB]]);
    expect(logOf('changed')).toMatch(new RegExp(`listener "http" came back from the service manager but it is bound to port ${portA}, the spec says ${portB}`));
    // FDSTOREREMOVE=1: systemd closed its copy too, so nothing listens on the old port.
    await until('port A closed', () => (listeningInodes(portA).length === 0 ? true : undefined), 5_000, 50);
    const inodesB = listeningInodes(portB);
    expect(inodesB).toHaveLength(1);
    // The new socket is the one in the store now: the next restart adopts it, without a warning.
    const st2 = await restart();
    expect(st2.listeners.map((l) => [l.name, l.port])).toEqual([['http', portB]]);
    expect(listeningInodes(portB)).toEqual(inodesB);
    expect(logOf('changed').match(/came back from the service manager but/g)).toHaveLength(1);
    await m.systemctl('stop', 'fdbroker.service');
  }, 60_000);

  it('`systemctl reload` (ExecReload=fdbroker reload): an added listener goes to the fd store and survives a SIGKILL, '
    + 'a removed one leaves it; a bad file fails the reload and changes nothing', async () => {
    const port = await freePort();
    const extraPort = await freePort();
    writeConfig(port);
    await m.install({ 'fdbroker.service': brokerUnit('reload') });
    await m.systemctl('start', 'fdbroker.service');
    const app = run(process.execPath, [path.join(FIXTURES, 'gen-app.js')], { env: { FDBROKER_SOCK: sock } });
    await app.waitFor(/^ready \d+/m, 15_000);
    const load = loadLoop(port, { concurrency: 4, keepAlive: false, maxMs: 30_000 });
    const restart = async () => {
      const pid = Number(await m.show('fdbroker.service', 'MainPID'));
      await m.systemctl('kill', '--signal=SIGKILL', '--kill-whom=main', 'fdbroker.service');
      return until('the restarted broker', async () => {
        const s = await tryStatus(sock);
        return s && s.broker.pid !== pid && s.generations.some((g) => g.pid === app.pid && g.state === 'ready') ? s : undefined;
      }, 15_000);
    };

    // Add a listener: created, pushed to the store, kept across a crash.
    writeConfig(port, [`extra = "tcp://127.0.0.1:${extraPort}"`]);
    await m.systemctl('reload', 'fdbroker.service');
    expect((await statusOf(sock)).listeners.map((l) => [l.name, l.port])).toEqual([['http', port], ['extra', extraPort]]);
    expect(await m.show('fdbroker.service', 'StatusText')).toMatch(/^2 listeners, 1 generation, serving: /);
    const extraInodes = listeningInodes(extraPort);
    expect(extraInodes).toHaveLength(1);
    const st = await restart();
    expect(st.listeners.map((l) => [l.name, l.port])).toEqual([['http', port], ['extra', extraPort]]);
    expect(listeningInodes(extraPort)).toEqual(extraInodes);

    // A bad file: `systemctl reload` fails, the broker serves on unchanged (same process).
    const pid = st.broker.pid;
    fs.writeFileSync(configFile, '[listeners\n');
    const bad = await m.run('systemctl', ['--user', 'reload', 'fdbroker.service']);
    expect(bad.code).not.toBe(0);
    expect(logOf('reload')).toMatch(/ERR_FDBROKER_INVALID_CONFIG/);
    expect(await m.show('fdbroker.service', 'ActiveState')).toBe('active');
    expect(Number(await m.show('fdbroker.service', 'MainPID'))).toBe(pid);

    // The bad reload still answered READY=1: systemd takes the next reload.
    // The file (with "extra") names the same listeners as the restarted broker, taken from the store: nothing to do.
    writeConfig(port, [`extra = "tcp://127.0.0.1:${extraPort}"`]);
    await m.systemctl('reload', 'fdbroker.service');
    expect(logOf('reload')).toMatch(/reloaded .*: added -; removed -; changed -/);

    // Remove it: the broker closes its copy and FDSTOREREMOVE drops systemd's, so after a crash it stays gone.
    writeConfig(port);
    await m.systemctl('reload', 'fdbroker.service');
    const st2 = await restart();
    expect(st2.listeners.map((l) => [l.name, l.port])).toEqual([['http', port]]);
    await until('nothing listens on the removed port', () => (listeningInodes(extraPort).length === 0 ? true : undefined), 5_000, 50);
    const stats = await load.stop();
    console.log(`systemctl reload (add, bad, remove) with 2 broker SIGKILLs under load: ${stats.ok + stats.failed} requests, ${stats.failed} failed ${JSON.stringify(stats.byKind)}`);
    expect(stats.failed).toBe(0);
    await m.systemctl('stop', 'fdbroker.service');
  }, 90_000);

  it('`fdbroker serve --takeover` of the unit\'s broker is refused (ERR_FDBROKER_NOT_PERMITTED, exit 1): the service stays active with the same MainPID', async () => {
    const port = await freePort();
    writeConfig(port);
    await m.install({ 'fdbroker.service': brokerUnit('takeover') });
    await m.systemctl('start', 'fdbroker.service');
    const pid = Number(await m.show('fdbroker.service', 'MainPID'));
    const env = { NOTIFY_SOCKET: '', XDG_RUNTIME_DIR: m.runtimeDir };
    const p = run(process.execPath, [CLI, 'serve', sock, '--takeover'], { env });
    expect((await p.exited).code).toBe(1);
    expect(p.stderr()).toMatch(/ERR_FDBROKER_NOT_PERMITTED: this broker runs under a service manager .*systemctl restart/);
    expect(await m.show('fdbroker.service', 'ActiveState')).toBe('active');
    expect(Number(await m.show('fdbroker.service', 'MainPID'))).toBe(pid);
    expect((await statusOf(sock)).broker.pid).toBe(pid);
    await m.systemctl('stop', 'fdbroker.service');
  }, 60_000);

  it('socket activation: fdbroker.socket + fdbroker-activated.service; the socket unit\'s listener survives a SIGKILL, not doubled by the store', async () => {
    const port = await freePort();
    await m.install({
      'fdbroker.socket': unitFromExample('fdbroker.socket', [['ListenStream=0.0.0.0:8080', `ListenStream=127.0.0.1:${port}`]]),
      'fdbroker-activated.service': unitFromExample('fdbroker-activated.service', [['/usr/bin/fdbroker', FDBROKER]], log('activated')),
    });
    await m.systemctl('start', 'fdbroker.socket');
    const inodes = listeningInodes(port);
    expect(inodes).toHaveLength(1);
    // The first connection starts the broker (Type=notify); it is queued until an app accepts.
    const first = get(port);
    const st = await until('the activated broker', () => tryStatus(sock), 15_000, 50);
    expect(st.listeners.map((l) => [l.name, l.port])).toEqual([['http', port]]);
    expect(await m.show('fdbroker-activated.service', 'ActiveState')).toBe('active');
    const app: Proc = run(process.execPath, [path.join(FIXTURES, 'gen-app.js')], { env: { FDBROKER_SOCK: sock } });
    await app.waitFor(/^ready \d+/m, 15_000);
    expect((await first).status).toBe(200);

    const load = loadLoop(port, { concurrency: 4, keepAlive: false, maxMs: 30_000 });
    await sleep(500);
    const pid = Number(await m.show('fdbroker-activated.service', 'MainPID'));
    await m.systemctl('kill', '--signal=SIGKILL', '--kill-whom=main', 'fdbroker-activated.service');
    const back = await until('the restarted broker', async () => {
      const s = await tryStatus(sock);
      return s && s.broker.pid !== pid ? s : undefined;
    }, 15_000);
    await until('the generation to re-join', async () => {
      const s = await tryStatus(sock);
      return s?.generations.some((g) => g.pid === app.pid && g.state === 'ready') ? true : undefined;
    }, 10_000, 50);
    const stats = await load.stop();
    console.log(`socket-activated SIGKILL under load: ${stats.ok + stats.failed} requests, ${stats.failed} failed ${JSON.stringify(stats.byKind)}`);
    expect(stats.failed).toBe(0);
    // One listener named by FileDescriptorName=, the socket unit's own socket.
    expect(back.listeners.map((l) => [l.name, l.port])).toEqual([['http', port]]);
    expect(listeningInodes(port)).toEqual(inodes);
    expect(socketInodes(back.broker.pid)).toContain(inodes[0]);
    await m.systemctl('stop', 'fdbroker-activated.service', 'fdbroker.socket');
  }, 90_000);
});
