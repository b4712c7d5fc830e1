// The fdbroker command line, as a real process: ready line, socket modes,
// never taking over a live broker's path, signals, bad specs and usage,
// `status`, and systemd socket activation.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { adoptListeners, BrokerConnection, type StatusMessage } from '../../src';
import { cleanup, CLI, get, ROOT, run, sleep, startApp, startBroker, tmpDir, type Proc } from '../helpers';
import { file, needOrSkip } from '../requirements';

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

/** A usage error's stderr: exactly one line "fdbroker: ..." matching `re`, then the hint to the command's --help (or the whole --help). */
function expectUsageError(stderr: string, re: RegExp, command?: string): void {
  const lines = stderr.split('\n').filter(Boolean);
  expect(lines, stderr).toHaveLength(2);
  expect(lines[0]).toMatch(/^fdbroker: /);
  expect(lines[0]).toMatch(re);
  expect(lines[1]).toBe(`Run \`fdbroker ${command ? `${command} ` : ''}--help\` for usage.`);
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
  // Every one is a usage error: exit 2, one line naming the problem, then the --help hint.
  const cases: Array<{ what: string; args: (dir: string) => string[]; stderr: RegExp }> = [
    { what: '--listen foo (no NAME=)', args: () => ['--listen', 'foo'], stderr: /ERR_FDBROKER_INVALID_SPEC.*"foo"/ },
    { what: '--listen x=tcp://nohost:1 (not an IP)', args: () => ['--listen', 'x=tcp://nohost:1'], stderr: /ERR_FDBROKER_INVALID_SPEC.*nohost/ },
    { what: '--listen x=tcp://127.0.0.1:99999 (port out of range)', args: () => ['--listen', 'x=tcp://127.0.0.1:99999'], stderr: /ERR_FDBROKER_INVALID_SPEC.*PORT/ },
    { what: '--listen x=ftp://127.0.0.1:21 (unknown scheme)', args: () => ['--listen', 'x=ftp://127.0.0.1:21'], stderr: /ERR_FDBROKER_INVALID_SPEC.*unknown scheme "ftp"/ },
    { what: '--listen x=udp://127.0.0.1:0?backlog=5 (udp takes no options)', args: () => ['--listen', 'x=udp://127.0.0.1:0?backlog=5'], stderr: /ERR_FDBROKER_INVALID_SPEC.*backlog=5/ },
    { what: '--listen x=unix:PATH?mode=999 (bad mode)', args: (d) => ['--listen', `x=unix:${d}/a.sock?mode=999`], stderr: /ERR_FDBROKER_INVALID_SPEC.*mode must be octal/ },
    { what: '--listen=foo (the --opt=value form)', args: () => ['--listen=foo'], stderr: /ERR_FDBROKER_INVALID_SPEC.*"foo"/ },
    { what: 'a bad spec after a good one', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--listen', 'b=tcp://127.0.0.1'], stderr: /ERR_FDBROKER_INVALID_SPEC.*missing :PORT/ },
    { what: 'two listeners with the same name', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--listen', 'a=tcp://127.0.0.1:0'], stderr: /ERR_FDBROKER_DUPLICATE_NAME.*"a"/ },
    { what: 'no --listen at all', args: () => [], stderr: /no listeners: give at least one --listen/ },
    { what: 'an unknown option', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--bogus'], stderr: /unknown option --bogus for serve/ },
    { what: 'an unknown option in --opt=value form', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--bogus=1'], stderr: /unknown option --bogus for serve/ },
    { what: 'an unknown short option', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '-x'], stderr: /unknown option -x for serve/ },
    { what: '--listen with no value (last argument)', args: () => ['--listen'], stderr: /--listen needs a value/ },
    { what: '--backlog followed by another option instead of a value', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--backlog', '--quiet'], stderr: /--backlog needs a value, not "--quiet"/ },
    { what: 'a value given to a flag (--quiet=yes)', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--quiet=yes'], stderr: /--quiet takes no value/ },
    { what: '--mode that is not octal', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--mode', '999'], stderr: /--mode must be octal/ },
    { what: '--mode=999 (the --opt=value form)', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--mode=999'], stderr: /--mode must be octal/ },
    { what: '--backlog 0', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--backlog', '0'], stderr: /--backlog must be a whole number from 1 to 65535/ },
    { what: '--ready-timeout that is not a number', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--ready-timeout', 'soon'], stderr: /--ready-timeout must be a whole number of milliseconds/ },
    { what: '--allow-uid that is not numeric', args: () => ['--listen', 'a=tcp://127.0.0.1:0', '--allow-uid', '1000,bob'], stderr: /--allow-uid takes numeric ids.*"bob"/ },
    { what: 'two control socket paths', args: (d) => [`${d}/other.sock`, '--listen', 'a=tcp://127.0.0.1:0'], stderr: /serve takes one control socket path, got 2/ },
  ];
  for (const c of cases) {
    it(`${c.what}: exits 2 with a one-line message and the --help hint, no ready line, no control socket`, async () => {
      const dir = tmpDir();
      const sock = path.join(dir, 'broker.sock');
      const r = await cliDone(['serve', sock, ...c.args(dir)]);
      expect(r.code).toBe(2);
      expectUsageError(r.stderr, c.stderr, 'serve');
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

describe('fdbroker: argument forms, --help and usage errors of every command', () => {
  it('--opt=value works like --opt value, and HOST localhost means 127.0.0.1', async () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'broker.sock');
    const p = cli(['serve', sock, '--listen=web=tcp://localhost:0?backlog=32', '--mode=0660', '--backlog=64', `--listen=local=unix:${dir}/a.sock`]);
    const m = await p.waitFor(/^fdbroker: ready on .*$/m);
    expect(m[0]).toMatch(new RegExp(`^fdbroker: ready on ${sock.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(pid ${p.pid}\\): web=tcp://127\\.0\\.0\\.1:\\d+ local=unix:`));
    expect(modeOf(sock).toString(8)).toBe('660');
    const conn = await BrokerConnection.connect(sock, { timeout: 5000 });
    closers.push(() => conn.close());
    const st = await conn.status();
    expect(st.listeners.find((l) => l.name === 'web')).toMatchObject({ kind: 'tcp', address: '127.0.0.1', backlog: 32 });
    expect(st.listeners.find((l) => l.name === 'local')).toMatchObject({ kind: 'unix', backlog: 64 });
  });

  it('--help exits 0 and says HOST may be localhost; COMMAND --help prints that command\'s part only', async () => {
    const top = await cliDone(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/HOST: an IPv4 address, localhost \(127\.0\.0\.1\)/);
    expect(top.stderr).toBe('');
    const sub = await cliDone(['serve', '--help']);
    expect(sub.code).toBe(0);
    expect(sub.stdout).toMatch(/HOST: an IPv4 address, localhost \(127\.0\.0\.1\)/);
    expect(sub.stdout).toMatch(/^  fdbroker serve <control-socket> --takeover/m);
    // Only serve's: no other command's usage line or section.
    for (const other of ['wait', 'exec', 'reload', 'status']) expect(sub.stdout).not.toMatch(new RegExp(`^  fdbroker ${other} `, 'm'));
    expect(sub.stdout).not.toMatch(/^exec: joins/m);
    expect(sub.stdout.split('\n').length).toBeLessThan(top.stdout.split('\n').length);
    for (const cmd of ['wait', 'exec', 'reload', 'status']) {
      const r = await cliDone([cmd, '--help']);
      expect(r.code, cmd).toBe(0);
      const usage = r.stdout.split('\n').filter((l) => /^  fdbroker \w+ /.test(l));
      expect(usage.length, cmd).toBeGreaterThan(0);
      expect(usage.every((l) => l.startsWith(`  fdbroker ${cmd} `)), `${cmd}: ${usage.join(' | ')}`).toBe(true);
      expect(r.stdout).not.toMatch(/^serve options:/m);
    }
    const w = await cliDone(['wait', '--help']);
    expect(w.stdout).toMatch(/exit 6 {2}that generation was ready/);
  });

  it('a mistyped command or option: did you mean the nearest one', async () => {
    const cases: Array<[string[], RegExp, string | undefined]> = [
      [['sevre'], /unknown command "sevre": did you mean "serve"\?/, undefined],
      [['stauts', '/x.sock'], /unknown command "stauts": did you mean "status"\?/, undefined],
      [['reloda'], /did you mean "reload"\?/, undefined],
      [['status', '/x.sock', '--jsn'], /unknown option --jsn for status: did you mean --json\?/, 'status'],
      [['serve', '/x.sock', '--lisen', 'a=tcp://127.0.0.1:0'], /unknown option --lisen for serve: did you mean --listen\?/, 'serve'],
      [['serve', '/x.sock', '--take-over'], /did you mean --takeover\?/, 'serve'],
      [['exec', '/x.sock', '--nmaes', 'a', '--', 'true'], /unknown option --nmaes for exec: did you mean --names\?/, 'exec'],
      [['wait', '/x.sock', '--tiemout', '5'], /did you mean --timeout\?/, 'wait'],
    ];
    for (const [args, re, cmd] of cases) {
      const r = await cliDone(args);
      expect(r.code, args.join(' ')).toBe(2);
      expectUsageError(r.stderr, re, cmd);
    }
    // Nothing near: no guess.
    const far = await cliDone(['frobnicate']);
    expect(far.code).toBe(2);
    expect(far.stderr).not.toMatch(/did you mean/);
    expect(far.stderr).toMatch(/unknown command "frobnicate" \(commands: serve, run, deploy, reload, status, wait, exec, pause, resume\)/);
  });

  it('--json: errors are one JSON line on stdout too (status, reload, wait), usage errors included', async () => {
    const none = path.join(tmpDir(), 'none.sock');
    for (const cmd of ['status', 'reload']) {
      const r = await cliDone([cmd, none, '--json']);
      expect(r.code, cmd).toBe(1);
      expect(JSON.parse(r.stdout.trim()), cmd).toEqual({ error: { code: 'ERR_FDBROKER_NO_BROKER', message: expect.stringContaining(none), usage: false } });
      expect(r.stderr).toMatch(/^fdbroker: ERR_FDBROKER_NO_BROKER: /);
    }
    const u = await cliDone(['status', none, '--json', '--jsn']);
    expect(u.code).toBe(2);
    expect(JSON.parse(u.stdout.trim())).toEqual({ error: { code: null, message: 'unknown option --jsn for status: did you mean --json?', usage: true } });
    const w = await cliDone(['wait', none, '--json', '--until', 'soon']);
    expect(w.code).toBe(2);
    expect(JSON.parse(w.stdout.trim()).error).toMatchObject({ usage: true, message: expect.stringMatching(/--until is "handover" or "ready"/) });
    // wait's own verdicts stay what they were: no broker is {"result":"broker"}, exit 3.
    const wb = await cliDone(['wait', none, '--json']);
    expect(wb.code).toBe(3);
    expect(JSON.parse(wb.stdout.trim())).toMatchObject({ result: 'broker' });
    // Without --json, nothing on stdout.
    const plain = await cliDone(['status', none]);
    expect(plain.stdout).toBe('');
  });

  it('exec passes --help after -- to the program instead of printing usage', async () => {
    // No broker at the path: exec fails to connect (exit 1) and prints no usage.
    const r = await cliDone(['exec', path.join(tmpDir(), 'none.sock'), '--', process.execPath, '--help']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_FDBROKER_NO_BROKER/);
    expect(r.stdout).toBe('');
  });

  const cases: Array<{ what: string; args: string[]; stderr: RegExp }> = [
    { what: 'no command', args: [], stderr: /no command given: serve, run, deploy, reload, status, wait, exec/ },
    { what: 'an unknown command', args: ['sevre'], stderr: /unknown command "sevre"/ },
    { what: 'status without a path', args: ['status'], stderr: /status needs a control socket path/ },
    { what: 'status with an unknown option', args: ['status', '/x.sock', '--jsn'], stderr: /unknown option --jsn for status/ },
    { what: 'status --json=yes', args: ['status', '/x.sock', '--json=yes'], stderr: /--json takes no value/ },
    { what: 'wait --pid with no value', args: ['wait', '/x.sock', '--pid'], stderr: /--pid needs a value/ },
    { what: 'wait --pid=abc', args: ['wait', '/x.sock', '--pid=abc'], stderr: /--pid must be a whole number/ },
    { what: 'wait --until=soon', args: ['wait', '/x.sock', '--until=soon'], stderr: /--until is "handover" or "ready", not "soon"/ },
    { what: 'wait --timeout 0', args: ['wait', '/x.sock', '--timeout', '0'], stderr: /--timeout must be a whole number of milliseconds/ },
    { what: 'exec without --', args: ['exec', '/x.sock', 'node', 'app.js', '--port', '1'], stderr: /exec needs the program after --/ },
    { what: 'exec with nothing after --', args: ['exec', '/x.sock', '--'], stderr: /exec needs the program after --/ },
    { what: 'exec without a path', args: ['exec', '--', 'true'], stderr: /exec needs a control socket path before --/ },
    { what: 'exec --ready=later', args: ['exec', '/x.sock', '--ready=later', '--', 'true'], stderr: /--ready is "notify" or "immediate", not "later"/ },
    { what: 'exec --retire-signal SIGNOPE', args: ['exec', '/x.sock', '--retire-signal', 'SIGNOPE', '--', 'true'], stderr: /--retire-signal: unknown signal SIGNOPE/ },
    { what: 'exec with an unknown option', args: ['exec', '/x.sock', '--nmaes', 'a', '--', 'true'], stderr: /unknown option --nmaes for exec/ },
  ];
  for (const c of cases) {
    it(`${c.what}: exits 2 with a one-line message and the --help hint`, async () => {
      const r = await cliDone(c.args);
      expect(r.code).toBe(2);
      const command = ['status', 'wait', 'exec', 'serve', 'reload'].includes(c.args[0] ?? '') ? c.args[0] : undefined;
      expectUsageError(r.stderr, c.stderr, command);
      expect(r.stdout).toBe('');
    });
  }
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
    // It keeps its copies (so status lists it as a holder) until the test ends.
    const { native } = await import('../../src/native/binding');
    closers.push(() => { for (const g of got) native().close(g.fd); });
    await new Promise((r) => setTimeout(r, 300)); // the broker has sampled the accept queues by then
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
    // Read from the sockets: the queue, the backlog in force, and who holds a copy (this test process adopted web and local).
    const me_ = { pid: process.pid, comm: expect.any(String) };
    expect(byName.web).toEqual({ name: 'web', kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: broker.ports.web, backlog: 64,
      queued: 0, backlogInForce: 64, holders: [me_] });
    expect(byName.dns).toEqual({ name: 'dns', kind: 'udp', family: 'IPv4', address: '127.0.0.1', port: broker.ports.dns, holders: [] });
    expect(byName.local).toEqual({ name: 'local', kind: 'unix', family: 'unix', path: appSock, backlog: 511,
      queued: 0, backlogInForce: 511, holders: [me_] });
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
    const held = `held by ${process.pid}\\([^,]+, not a generation\\)`;
    expect(out).toMatch(new RegExp(`^ +web +tcp://127\\.0\\.0\\.1:${broker.ports.web}  backlog 64  queued 0  ${held}$`, 'm'));
    expect(out).toMatch(new RegExp(`^ +dns +udp://127\\.0\\.0\\.1:${broker.ports.dns}  held by nobody else$`, 'm'));
    expect(out).toMatch(new RegExp(`^ +local +unix:${appSock.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}  backlog 511  queued 0  ${held}$`, 'm'));
    expect(out).toMatch(new RegExp(`^  pid ${process.pid} uid ${process.getuid!()} .* adopted: web, local$`, 'm'));
  });

  it('prints "retiring since" once, with the retiring time, and "ready since" with the ready time', async () => {
    const broker = await startBroker(tmpDir(), ['web=tcp://127.0.0.1:0']);
    const { native } = await import('../../src/native/binding');
    const gens: BrokerConnection[] = [];
    for (const label of ['old', 'new']) {
      const conn = await BrokerConnection.connect(broker.sock, { timeout: 5000 });
      closers.push(() => conn.close());
      const j = await conn.join(['web'], { label, timeout: 5000 });
      for (const l of j.listeners) native().close(l.fd);
      await conn.ready(5000);
      gens.push(conn);
      // Far enough apart that the two time stamps differ.
      await sleep(20);
    }
    const json = await cliDone(['status', broker.sock, '--json']);
    expect(json.code).toBe(0);
    const s = JSON.parse(json.stdout) as StatusMessage;
    const [g1, g2] = s.generations;
    expect(g1).toMatchObject({ state: 'retiring', label: 'old' });
    expect(g2).toMatchObject({ state: 'ready', label: 'new' });
    expect(g1!.retiringSince).toBeDefined();
    expect(g1!.retiringSince).not.toBe(g1!.readyAt);
    const text = await cliDone(['status', broker.sock]);
    expect(text.code).toBe(0);
    const line1 = text.stdout.split('\n').find((l) => l.startsWith(`  #${g1!.number} `))!;
    const line2 = text.stdout.split('\n').find((l) => l.startsWith(`  #${g2!.number} `))!;
    expect(line1.match(/retiring since/g)).toHaveLength(1);
    expect(line1).toContain(`retiring since ${g1!.retiringSince} (ready since ${g1!.readyAt})`);
    expect(line2).toContain(`ready since ${g2!.readyAt}`);
    expect(line2).not.toContain('retiring');
  });

  it('on a regular file exits 1 with ERR_FDBROKER_NOT_A_BROKER, says it is not a socket, and does not suggest fdbroker serve', async () => {
    const file = path.join(tmpDir(), 'app.sock');
    fs.writeFileSync(file, 'not a socket\n');
    const r = await cliDone(['status', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_FDBROKER_NOT_A_BROKER/);
    expect(r.stderr).toContain(`${file} is not a socket but a regular file`);
    expect(r.stderr).toMatch(/give the control socket path the broker was started with/);
    expect(r.stderr).not.toMatch(/fdbroker serve/);
    expect(r.stdout).toBe('');
    // wait says the same (exit 3: no broker there), and exec (exit 1, nothing started).
    const w = await cliDone(['wait', file, '--timeout', '1000']);
    expect(w.code).toBe(3);
    expect(w.stderr).toMatch(/ERR_FDBROKER_NOT_A_BROKER.*not a socket but a regular file/);
    expect(w.stderr).not.toMatch(/fdbroker serve/);
    const e = await cliDone(['exec', file, '--ready', 'immediate', '--', process.execPath, '-e', '']);
    expect(e.code).toBe(1);
    expect(e.stderr).toMatch(/ERR_FDBROKER_NOT_A_BROKER.*not a socket but a regular file/);
    // A directory too.
    const d = await cliDone(['status', path.dirname(file)]);
    expect(d.code).toBe(1);
    expect(d.stderr).toMatch(/ERR_FDBROKER_NOT_A_BROKER.*not a socket but a directory/);
  });

  it('on a stale socket nobody listens on still suggests fdbroker serve (which replaces it)', async () => {
    const dir = tmpDir();
    const old = await startBroker(dir, ['web=tcp://127.0.0.1:0']);
    old.kill('SIGKILL');
    await old.exited;
    const r = await cliDone(['status', old.sock]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_FDBROKER_NO_BROKER.*ECONNREFUSED.*fdbroker serve/);
  });

  it('against no broker exits 1 with ERR_FDBROKER_NO_BROKER', async () => {
    const r = await cliDone(['status', path.join(tmpDir(), 'none.sock')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_FDBROKER_NO_BROKER/);
    expect(r.stdout).toBe('');
  });
});

describe('fdbroker wait --pid for a pid that never joined', () => {
  it('a pid that is not running and never joined: exit 4, says it has not joined and what to check', async () => {
    const broker = await startBroker(tmpDir(), ['web=tcp://127.0.0.1:0']);
    const gone = run(process.execPath, ['-e', '']);
    expect((await gone.exited).code).toBe(0);
    const r = await cliDone(['wait', broker.sock, '--pid', String(gone.pid), '--timeout', '10000']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`pid ${gone.pid} has not joined as a generation of the broker at ${broker.sock} and is not running`);
    expect(r.stderr).toMatch(/check that --pid is the app's pid or that of a wrapper it runs under .* and that the app connects to /);
    expect(r.stderr).not.toMatch(/left, was retired or missed its ready timeout/);
  });

  it('a running pid that never joins: exit 1 at the deadline, says it has not joined and what to check', async () => {
    const broker = await startBroker(tmpDir(), ['web=tcp://127.0.0.1:0']);
    // Alive for longer than the wait, never connects to the broker; cleanup() ends it.
    const idle = run(process.execPath, ['-e', 'setTimeout(() => {}, 20000)']);
    const r = await cliDone(['wait', broker.sock, '--pid', String(idle.pid), '--timeout', '400']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`timed out after 400 ms: pid ${idle.pid} has not joined as a generation of the broker at ${broker.sock}; it is running`);
    expect(r.stderr).toMatch(/check that --pid is the app's pid or that of a wrapper it runs under/);
  });

  it('a pid that joined and then died before ready still reports "left" (exit 4)', async () => {
    const broker = await startBroker(tmpDir(), ['web=tcp://127.0.0.1:0']);
    // Joins, then exits 1.5 s later without saying ready: wait sees it join first.
    const script = `const { BrokerConnection } = require(${JSON.stringify(path.join(ROOT, 'dist', 'client', 'connection.js'))});
      BrokerConnection.connect(process.argv[1], { timeout: 5000 }).then((c) => c.join(['web'], 'doomed', 5000))
        .then(() => { console.log('joined'); setTimeout(() => process.exit(0), 1500); });`;
    const doomed = run(process.execPath, ['-e', script, broker.sock]);
    await doomed.waitFor(/^joined/m);
    const r = await cliDone(['wait', broker.sock, '--pid', String(doomed.pid), '--timeout', '10000']);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(new RegExp(`generation of pid ${doomed.pid} left, was retired or missed its ready timeout`));
  });
});

describe('systemd socket activation', () => {
  it('the broker takes the inherited socket as listener "web"; an app adopts it and serves HTTP', async (ctx) => {
    needOrSkip(ctx, [file(SYSTEMD_SOCKET_ACTIVATE, 'systemd-socket-activate', 'apt-get install systemd')]);
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

describe('the first five minutes: errors that say what to do', () => {
  it('a control socket in a directory that does not exist: ERR_FDBROKER_INSECURE_PATH, and the message says to create it', async () => {
    const missing = path.join(tmpDir(), 'no', 'such', 'dir');
    const r = await cliDone(['serve', path.join(missing, 'app.sock'), '--listen', 'http=tcp://127.0.0.1:0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_FDBROKER_INSECURE_PATH/);
    expect(r.stderr).toContain(`the directory ${missing} does not exist: create it first (mkdir -m 0700 ${missing})`);
  });

  it('a control socket path over 107 bytes: ERR_FDBROKER_INVALID_ARGUMENT naming the limit, not a raw ENAMETOOLONG; no lock file is left', async () => {
    const dir = tmpDir();
    const long = path.join(dir, 'x'.repeat(132 - dir.length - 1));
    expect(Buffer.byteLength(long)).toBe(132);
    const r = await cliDone(['serve', long, '--listen', 'http=tcp://127.0.0.1:0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_FDBROKER_INVALID_ARGUMENT: the control socket path .* is 132 bytes; Unix socket paths allow 107: use a shorter path/);
    expect(r.stderr).not.toMatch(/ENAMETOOLONG/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

