// The fdbroker command line, as a real process: ready line, socket modes,
// never taking over a live broker's path, signals, bad specs and usage,
// `status`, and systemd socket activation.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { adoptListeners, BrokerConnection, type StatusMessage } from '../../src';
import { cleanup, CLI, get, run, sleep, startApp, startBroker, tmpDir, type Proc } from '../helpers';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) {
    try { await c(); } catch { /* already closed */ }
  }
  await cleanup();
});

const SYSTEMD_SOCKET_ACTIVATE = '/usr/bin/systemd-socket-activate';
const READY = /^fdbroker: ready on /m;

function cli(args: string[], env?: NodeJS.ProcessEnv): Proc {
  return run(process.execPath, [CLI, ...args], { env });
}

/** Runs the CLI to completion (with a deadline) and returns its exit status and output. */
async function cliDone(args: string[], timeoutMs = 15_000): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const p = cli(args);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`fdbroker ${args.join(' ')} did not exit within ${timeoutMs} ms; stdout:\n${p.stdout()}\nstderr:\n${p.stderr()}`));
    }, timeoutMs);
  });
  try {
    const { code, signal } = await Promise.race([p.exited, deadline]);
    return { code, signal, stdout: p.stdout(), stderr: p.stderr() };
  } finally {
    clearTimeout(timer);
  }
}

const modeOf = (p: string) => fs.statSync(p).mode & 0o777;

/** A port that was free a moment ago on 127.0.0.1. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

describe('fdbroker serve', () => {
  it('prints exactly one ready line naming its pid and listeners', async () => {
    const dir = tmpDir();
    const broker = await startBroker(dir, ['web=tcp://127.0.0.1:0', 'dns=udp://127.0.0.1:0', `local=unix:${dir}/app.sock`]);
    await sleep(200);
    const lines = broker.stdout().split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe(`fdbroker: ready on ${broker.sock} (pid ${broker.pid}): `
      + `web=tcp://127.0.0.1:${broker.ports.web} dns=udp://127.0.0.1:${broker.ports.dns} local=unix:${dir}/app.sock`);
    expect(broker.ports.web).toBeGreaterThan(0);
    expect(broker.ports.dns).toBeGreaterThan(0);
    expect(broker.stderr()).toBe('');
  });

  it('creates the control socket with mode 0600 by default', async () => {
    const broker = await startBroker(tmpDir(), ['web=tcp://127.0.0.1:0']);
    expect(fs.statSync(broker.sock).isSocket()).toBe(true);
    expect(modeOf(broker.sock).toString(8)).toBe('600');
  });

  it('--mode 0660 sets the control socket mode', async () => {
    const broker = await startBroker(tmpDir(), ['web=tcp://127.0.0.1:0'], ['--mode', '0660']);
    expect(modeOf(broker.sock).toString(8)).toBe('660');
    // Still a working broker.
    const { web } = await adoptListeners(broker.sock, { names: ['web'], timeout: 5000 });
    web!.close();
  });

  it('a unix listener with ?mode=0660 gets that mode', async () => {
    const dir = tmpDir();
    const appSock = path.join(dir, 'app.sock');
    await startBroker(dir, [`local=unix:${appSock}?mode=0660`]);
    expect(fs.statSync(appSock).isSocket()).toBe(true);
    expect(modeOf(appSock).toString(8)).toBe('660');
  });

  it('never takes over a path a live broker answers on: the second serve exits 1 with ERR_FDBROKER_BROKER_RUNNING', async () => {
    const first = await startBroker(tmpDir(), ['web=tcp://127.0.0.1:0']);
    const inode = fs.statSync(first.sock).ino;
    const second = await cliDone(['serve', first.sock, '--listen', 'other=tcp://127.0.0.1:0']);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/ERR_FDBROKER_BROKER_RUNNING/);
    expect(second.stdout).not.toMatch(READY);
    // The first broker keeps its path and keeps working.
    expect(fs.statSync(first.sock).ino).toBe(inode);
    const conn = await BrokerConnection.connect(first.sock, { timeout: 5000 });
    expect(conn.brokerPid).toBe(first.pid);
    conn.close();
    const { web } = await adoptListeners(first.sock, { names: ['web'], timeout: 5000 });
    expect(web!.port).toBe(first.ports.web);
    web!.close();
    expect(first.child.exitCode).toBeNull();
  });

  it('replaces a stale control socket left by a SIGKILLed broker', async () => {
    const dir = tmpDir();
    const old = await startBroker(dir, ['web=tcp://127.0.0.1:0']);
    old.kill('SIGKILL');
    await old.exited;
    expect(fs.lstatSync(old.sock).isSocket()).toBe(true); // left behind
    const fresh = await startBroker(dir, ['web=tcp://127.0.0.1:0']);
    expect(fresh.sock).toBe(old.sock);
    const conn = await BrokerConnection.connect(fresh.sock, { timeout: 5000 });
    expect(conn.brokerPid).toBe(fresh.pid);
    conn.close();
  });

  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    it(`${sig}: exits 0 and removes the control socket path`, async () => {
      const broker = await startBroker(tmpDir(), ['web=tcp://127.0.0.1:0']);
      expect(fs.existsSync(broker.sock)).toBe(true);
      broker.kill(sig);
      const { code, signal } = await broker.exited;
      expect({ code, signal }).toEqual({ code: 0, signal: null });
      expect(fs.existsSync(broker.sock)).toBe(false);
      // The listeners went with it: the port refuses now.
      await expect(get(broker.ports.web!)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    });
  }
});

describe('fdbroker serve: bad specs and usage', () => {
  const cases: Array<{ what: string; args: (dir: string) => string[]; code: number; stderr: RegExp }> = [
    { what: '--listen foo (no NAME=)', args: () => ['--listen', 'foo'], code: 1, stderr: /ERR_FDBROKER_INVALID_SPEC.*"foo"/ },
    { what: '--listen x=tcp://nohost:1 (not an IP)', args: () => ['--listen', 'x=tcp://nohost:1'], code: 1, stderr: /ERR_FDBROKER_INVALID_SPEC.*nohost/ },
    { what: '--listen x=tcp://127.0.0.1:99999 (port out of range)', args: () => ['--listen', 'x=tcp://127.0.0.1:99999'], code: 1, stderr: /ERR_FDBROKER_INVALID_SPEC.*PORT/ },
    { what: '--listen x=ftp://127.0.0.1:21 (unknown scheme)', args: () => ['--listen', 'x=ftp://127.0.0.1:21'], code: 1, stderr: /ERR_FDBROKER_INVALID_SPEC/ },
    { what: '--listen x=udp://127.0.0.1:0?backlog=5 (udp takes no options)', args: () => ['--listen', 'x=udp://127.0.0.1:0?backlog=5'], code: 1, stderr: /ERR_FDBROKER_INVALID_SPEC/ },
    { what: '--listen x=unix:PATH?mode=999 (bad mode)', args: (d) => ['--listen', `x=unix:${d}/a.sock?mode=999`], code: 1, stderr: /ERR_FDBROKER_INVALID_SPEC/ },
    { what: 'two listeners with the same name', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--listen', 'a=tcp://127.0.0.1:0'], code: 1, stderr: /ERR_FDBROKER_DUPLICATE_NAME/ },
    { what: 'no --listen at all', args: () => [], code: 2, stderr: /no listeners/ },
    { what: 'an unknown option', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--bogus'], code: 2, stderr: /unknown option --bogus/ },
    { what: '--mode that is not octal', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--mode', '999'], code: 2, stderr: /--mode/ },
    { what: '--backlog 0', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--backlog', '0'], code: 2, stderr: /--backlog/ },
  ];
  for (const c of cases) {
    it(`${c.what}: exits ${c.code} with a clear message, no ready line, no control socket`, async () => {
      const dir = tmpDir();
      const sock = path.join(dir, 'broker.sock');
      const r = await cliDone(['serve', sock, ...c.args(dir)]);
      expect(r.code).toBe(c.code);
      expect(r.stderr).toMatch(c.stderr);
      expect(r.stdout).not.toMatch(READY);
      expect(fs.existsSync(sock)).toBe(false);
    });
  }

  it('serve without a control socket path is a usage error (exit 2)', async () => {
    const r = await cliDone(['serve', '--listen', 'a=tcp://127.0.0.1:0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/control socket path/);
    expect(r.stdout).not.toMatch(READY);
  });

  it('a port already in use: exits 1 with EADDRINUSE, no ready line, no control socket', async () => {
    const busy = net.createServer();
    closers.push(() => new Promise((r) => busy.close(r)));
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as net.AddressInfo).port;
    const dir = tmpDir();
    const sock = path.join(dir, 'broker.sock');
    const r = await cliDone(['serve', sock, '--listen', 'ok=tcp://127.0.0.1:0', '--listen', `web=tcp://127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/EADDRINUSE/);
    expect(r.stderr).toContain(`127.0.0.1:${port}`);
    expect(r.stdout).not.toMatch(READY);
    expect(fs.existsSync(sock)).toBe(false);
  });
});

describe('fdbroker status', () => {
  async function brokerWithClient() {
    const dir = tmpDir();
    const appSock = path.join(dir, 'app.sock');
    const broker = await startBroker(dir, ['web=tcp://127.0.0.1:0?backlog=64', 'dns=udp://127.0.0.1:0', `local=unix:${appSock}`]);
    // A client that adopts and stays connected.
    const conn = await BrokerConnection.connect(broker.sock, { timeout: 5000 });
    closers.push(() => conn.close());
    const got = await conn.adopt(['web', 'local'], 5000);
    expect(got.map((g) => g.info.name)).toEqual(['web', 'local']);
    const { native } = await import('../../src/native/binding');
    for (const g of got) native().close(g.fd);
    return { broker, appSock };
  }

  it('--json lists listeners (name, kind, address, port/path, backlog) and connected clients (pid, uid, adopted)', async () => {
    const { broker, appSock } = await brokerWithClient();
    const r = await cliDone(['status', broker.sock, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout) as StatusMessage;
    expect(s.broker.pid).toBe(broker.pid);
    expect(s.broker.controlPath).toBe(broker.sock);
    const byName = Object.fromEntries(s.listeners.map((l) => [l.name, l]));
    expect(Object.keys(byName).sort()).toEqual(['dns', 'local', 'web']);
    expect(byName.web).toEqual({ name: 'web', kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: broker.ports.web, backlog: 64 });
    expect(byName.dns).toEqual({ name: 'dns', kind: 'udp', family: 'IPv4', address: '127.0.0.1', port: broker.ports.dns });
    expect(byName.local).toEqual({ name: 'local', kind: 'unix', family: 'unix', path: appSock, backlog: 511 });
    const me = s.clients.filter((c) => c.pid === process.pid);
    expect(me).toHaveLength(1);
    expect(me[0]).toMatchObject({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!(), adopted: ['web', 'local'] });
  });

  it('without --json prints the same facts as text', async () => {
    const { broker, appSock } = await brokerWithClient();
    const r = await cliDone(['status', broker.sock]);
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).toContain(`broker pid ${broker.pid} on ${broker.sock}`);
    expect(out).toContain('listeners (3):');
    expect(out).toMatch(new RegExp(`^ +web +tcp://127\\.0\\.0\\.1:${broker.ports.web}  backlog 64$`, 'm'));
    expect(out).toMatch(new RegExp(`^ +dns +udp://127\\.0\\.0\\.1:${broker.ports.dns}$`, 'm'));
    expect(out).toMatch(new RegExp(`^ +local +unix:${appSock.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}  backlog 511$`, 'm'));
    expect(out).toMatch(new RegExp(`^  pid ${process.pid} uid ${process.getuid!()} .* adopted: web, local$`, 'm'));
  });

  it('against no broker exits 1 with ERR_FDBROKER_NO_BROKER', async () => {
    const r = await cliDone(['status', path.join(tmpDir(), 'none.sock')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_FDBROKER_NO_BROKER/);
    expect(r.stdout).toBe('');
  });
});

describe('systemd socket activation', () => {
  it('the broker takes the inherited socket as listener "web"; an app adopts it and serves HTTP', async (ctx) => {
    if (!fs.existsSync(SYSTEMD_SOCKET_ACTIVATE)) ctx.skip(`${SYSTEMD_SOCKET_ACTIVATE} is not installed`);
    const dir = tmpDir();
    const sock = path.join(dir, 'broker.sock');
    const port = await freePort();
    const sa = run(SYSTEMD_SOCKET_ACTIVATE, ['-l', `127.0.0.1:${port}`, '--fdname=web', '--', process.execPath, CLI, 'serve', sock]);
    // Without --accept, systemd-socket-activate execs the service on the first
    // connection: that first request triggers it and waits in the queue.
    let first: Promise<{ status: number; body: string }> | undefined;
    for (let i = 0; i < 100 && !first; i++) {
      const up = await new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
        s.once('error', () => resolve(false));
      });
      if (up) first = get(port, '/first');
      else await sleep(50);
    }
    expect(first, 'systemd-socket-activate never listened').toBeDefined();
    const m = await sa.waitFor(/^fdbroker: ready on .*$/m);
    expect(m[0]).toBe(`fdbroker: ready on ${sock} (pid ${sa.pid}): web=tcp://127.0.0.1:${port}`);
    const app = await startApp(sock, { NAMES: 'web' });
    expect(await first).toEqual({ status: 200, body: `${app.pid} ok\n` });
    expect(await get(port)).toEqual({ status: 200, body: `${app.pid} ok\n` });
    const conn = await BrokerConnection.connect(sock, { timeout: 5000 });
    closers.push(() => conn.close());
    const st = await conn.status();
    expect(st.listeners).toHaveLength(1);
    expect(st.listeners[0]).toMatchObject({ name: 'web', kind: 'tcp', address: '127.0.0.1', port });
  });
});
