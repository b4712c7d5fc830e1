// `fdbroker serve --config FILE` and its reloads (`fdbroker reload`, SIGHUP):
// a real broker, real generations serving HTTP under load (no retries), the
// file edited between reloads.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BrokerConnection } from '../../src/client/connection';
import { native } from '../../src/native/binding';
import type { FdbrokerError } from '../../src/protocol/errors';
import type { StatusMessage } from '../../src/protocol/messages';
import { NOBODY, runAs, sharedCopy } from '../other-user';
import { describeWith, root, setpriv } from '../requirements';
import { alive, cleanup, CLI, FIXTURES, get, loadLoop, quietFdCount, run, sleep, startBroker, statusOf, tmpDir, waitText, type BrokerProc, type Proc } from '../helpers';

afterEach(cleanup);

/** Runs the CLI to its end. */
async function cli(args: string[], cwd?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = run(process.execPath, [CLI, ...args], { cwd });
  const { code } = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

function startGen(sock: string, env: NodeJS.ProcessEnv = {}): Proc {
  return run(process.execPath, [path.join(FIXTURES, 'reload-app.js')], { env: { FDBROKER_SOCK: sock, ...env } });
}

const byName = (s: StatusMessage, name: string) => s.listeners.filter((l) => l.name === name);

async function adoptCode(sock: string, names: string[]): Promise<string> {
  const conn = await BrokerConnection.connect(sock);
  try {
    const got = await conn.adopt(names);
    for (const l of got) native().close(l.fd);
    return 'ok';
  } catch (err) {
    return (err as FdbrokerError).code;
  } finally {
    conn.close();
  }
}

function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => { c.destroy(); resolve('connected'); });
    c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** A config file with these listeners (and a standby of 0: a retired generation drains at once). */
function writeConfig(file: string, listeners: Record<string, string>, extra = ''): void {
  const lines = Object.entries(listeners).map(([k, v]) => `${k} = "${v}"`);
  fs.writeFileSync(file, `${extra}\n[timeouts]\nstandby = 0\n\n[listeners]\n${lines.join('\n')}\n`);
}

describe('fdbroker reload: listeners added and removed under load', () => {
  it('adds B and removes C while A serves: 0 failed requests on A; B goes to new generations, C stays with its holder until it retires', async () => {
    const dir = tmpDir();
    const cfg = path.join(dir, 'broker.toml');
    writeConfig(cfg, { A: 'tcp://127.0.0.1:0', C: 'tcp://127.0.0.1:0' });
    const broker = await startBroker(dir, [], ['--config', cfg, '--quiet']);
    expect(Object.keys(broker.ports).sort()).toEqual(['A', 'C']);
    const gen1 = startGen(broker.sock);
    await gen1.waitFor(/^ready \d+ gen 1 A,C$/m);
    const load = loadLoop(broker.ports.A!, { concurrency: 8, maxMs: 30_000 });
    await sleep(500);

    writeConfig(cfg, { A: 'tcp://127.0.0.1:0', B: 'tcp://127.0.0.1:0' });
    const t0 = Date.now();
    const r = await cli(['reload', broker.sock]);
    const reloadMs = Date.now() - t0;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/reloaded .*: added B; removed C; changed -/);
    expect(broker.stdout()).toMatch(/fdbroker: reloaded .*broker\.toml: added B; removed C; changed -/);

    // C: not handed out any more, listed as removed while generation 1 holds it, and still served by it.
    const s1 = await statusOf(broker.sock);
    expect(byName(s1, 'A')).toHaveLength(1);
    expect(byName(s1, 'B')).toMatchObject([{ kind: 'tcp' }]);
    expect(byName(s1, 'C')).toMatchObject([{ removed: true, port: broker.ports.C, holders: [{ pid: gen1.pid, generation: 1 }] }]);
    expect(await adoptCode(broker.sock, ['C'])).toBe('ERR_FDBROKER_UNKNOWN_LISTENER');
    const text = await cli(['status', broker.sock]);
    expect(text.stdout).toMatch(new RegExp(`^  C +tcp://127\\.0\\.0\\.1:${broker.ports.C} .*REMOVED by a reload.* held by ${gen1.pid}\\(#1\\)`, 'm'));
    expect((await get(broker.ports.C!)).body).toBe(`${gen1.pid} gen 1 C\n`);
    const portB = byName(s1, 'B')[0]!.port!;
    expect(await connectOutcome(portB)).toBe('connected'); // queued on the broker's socket: nobody accepts yet

    // A new generation gets A and B (not C); generation 1 retires and takes C with it.
    const gen2 = startGen(broker.sock);
    await gen2.waitFor(/^ready \d+ gen 2 A,B$/m);
    expect((await gen1.exited).code).toBe(0);
    expect(gen1.stdout()).toMatch(/^drained \d+ forced 0$/m);
    expect((await get(portB)).body).toBe(`${gen2.pid} gen 2 B\n`);
    expect(await connectOutcome(broker.ports.C!)).toBe('ECONNREFUSED');
    await sleep(1_100); // the holders scan is cached for 1 s
    const s2 = await statusOf(broker.sock);
    expect(s2.listeners.map((l) => l.name).sort()).toEqual(['A', 'B']);

    await sleep(300);
    const stats = await load.stop();
    expect(stats.failed, JSON.stringify(stats.byKind)).toBe(0);
    expect(stats.ok).toBeGreaterThan(100);
    expect(Object.keys(stats.servedBy).sort()).toEqual([String(gen1.pid), String(gen2.pid)].sort());
    process.stderr.write(`reload (add B, remove C) under load on A: ${stats.ok} ok, ${stats.failed} failed; fdbroker reload took ${reloadMs} ms\n`);
  });
});

describe('fdbroker reload: a bad reload changes nothing', () => {
  it('an invalid file, a bind conflict and a start-only change are refused with their codes; the broker serves on; SIGHUP reloads too', async () => {
    const dir = tmpDir();
    const cfg = path.join(dir, 'broker.toml');
    writeConfig(cfg, { A: 'tcp://127.0.0.1:0' });
    const broker: BrokerProc = await startBroker(dir, [], ['--config', cfg, '--quiet']);
    const gen1 = startGen(broker.sock);
    await gen1.waitFor(/^ready \d+ gen 1 A$/m);
    const load = loadLoop(broker.ports.A!, { concurrency: 4, maxMs: 30_000 });
    const names = async () => (await statusOf(broker.sock)).listeners.map((l) => `${l.name}${l.removed ? '(removed)' : ''}`).sort();
    await sleep(200);
    const fds = await quietFdCount(broker.pid);

    // Not valid: an unknown key. The error names the file and the key.
    fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8') + '[limits]\nmax-client = 5\n');
    let r = await cli(['reload', broker.sock]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^fdbroker: ERR_FDBROKER_INVALID_CONFIG: ${cfg.replace(/[.]/g, '\\.')}: limits\\.max-client: unknown key`, 'm'));
    expect(await names()).toEqual(['A']);

    // A bind conflict: D's port is taken by this test. E would be fine, and is not created either.
    const taken = net.createServer();
    await new Promise<void>((res) => taken.listen(0, '127.0.0.1', res));
    const takenPort = (taken.address() as net.AddressInfo).port;
    writeConfig(cfg, { A: 'tcp://127.0.0.1:0', E: 'tcp://127.0.0.1:0', D: `tcp://127.0.0.1:${takenPort}` });
    r = await cli(['reload', broker.sock]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^fdbroker: ERR_FDBROKER_RELOAD_FAILED: reload refused, nothing changed: listener "D" cannot bind .*\(EADDRINUSE\)/m);
    expect(await names()).toEqual(['A']);
    expect(await quietFdCount(broker.pid)).toBe(fds);
    taken.close();

    // A setting read at start only (a timeout) changed: refused, naming it.
    fs.writeFileSync(cfg, '[timeouts]\nstandby = 10\n[listeners]\nA = "tcp://127.0.0.1:0"\nE = "tcp://127.0.0.1:0"\n');
    r = await cli(['reload', broker.sock]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_FDBROKER_INVALID_CONFIG: .*: timeouts\.standby: read at start only/);
    expect(await names()).toEqual(['A']);

    // SIGHUP: the same reload, reported on the broker's stdout.
    writeConfig(cfg, { A: 'tcp://127.0.0.1:0', E: 'tcp://127.0.0.1:0' });
    process.kill(broker.pid, 'SIGHUP');
    await waitText(broker.stdout, /fdbroker: reloaded .*: added E; removed -; changed -/);
    expect(await names()).toEqual(['A', 'E']);
    // SIGHUP with a broken file: logged on stderr, nothing changes.
    fs.writeFileSync(cfg, '[listeners\nA = ');
    process.kill(broker.pid, 'SIGHUP');
    await waitText(broker.stderr, /fdbroker: reload failed, nothing changed, the previous configuration serves: ERR_FDBROKER_INVALID_CONFIG .*broker\.toml:1:\d+: not valid TOML/);
    expect(await names()).toEqual(['A', 'E']);
    // A file without listeners (say, cut short by an editor): refused, the listeners stay.
    fs.writeFileSync(cfg, '[timeouts]\nstandby = 0\n');
    r = await cli(['reload', broker.sock]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_FDBROKER_RELOAD_FAILED: .*no listeners/);
    expect(await names()).toEqual(['A', 'E']);
    expect(alive(broker.pid)).toBe(true);

    const stats = await load.stop();
    expect(stats.failed, JSON.stringify(stats.byKind)).toBe(0);
    expect(stats.ok).toBeGreaterThan(50);
    expect(alive(gen1.pid)).toBe(true);
  });

  it('without --config: SIGHUP is ignored (and says so), `fdbroker reload` is ERR_FDBROKER_NO_CONFIG', async () => {
    const broker = await startBroker(tmpDir(), ['A=tcp://127.0.0.1:0'], ['--quiet']);
    process.kill(broker.pid, 'SIGHUP');
    await waitText(broker.stderr, /^fdbroker: SIGHUP ignored: no --config to reload/m);
    const r = await cli(['reload', broker.sock]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^fdbroker: ERR_FDBROKER_NO_CONFIG: /m);
    expect(alive(broker.pid)).toBe(true);
  });

  it('--help documents --config, the reload rules and the reload command', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^  fdbroker serve <control-socket> --config FILE/m);
    expect(r.stdout).toMatch(/^  fdbroker reload <control-socket> \[--json\]/m);
    expect(r.stdout).toMatch(/^  --config FILE /m);
    expect(r.stdout).toMatch(/SIGHUP or\s+`fdbroker reload` re-reads FILE/);
    expect(r.stdout).toMatch(/^reload: the broker \(started with --config\)/m);
  });

  it('a bad file at start: exit 1 with the code, nothing left behind', async () => {
    const dir = tmpDir();
    const cfg = path.join(dir, 'broker.toml');
    fs.writeFileSync(cfg, '[listeners]\nA = "tcp://127.0.0.1:0"\n[timeouts]\nready = "soon"\n');
    const r = await cli(['serve', path.join(dir, 'b.sock'), '--config', cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^fdbroker: ERR_FDBROKER_INVALID_CONFIG: .*broker\.toml: timeouts\.ready: must be a whole number of milliseconds/m);
    expect(fs.existsSync(path.join(dir, 'b.sock'))).toBe(false);
  });

  it('a --listen with the name of a file listener overrides it, and still does after a reload', async () => {
    const dir = tmpDir();
    const cfg = path.join(dir, 'broker.toml');
    writeConfig(cfg, { A: 'tcp://127.0.0.1:0', B: 'tcp://127.0.0.1:0' });
    const broker = await startBroker(dir, [`A=unix:${dir}/a.sock`], ['--config', cfg, '--quiet']);
    const s = await statusOf(broker.sock);
    expect(byName(s, 'A')).toMatchObject([{ kind: 'unix', path: path.join(dir, 'a.sock') }]);
    writeConfig(cfg, { A: 'tcp://127.0.0.1:0', C: 'tcp://127.0.0.1:0' });
    const r = await cli(['reload', broker.sock, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ added: ['C'], removed: ['B'], changed: [], grants: [] });
    expect(byName(await statusOf(broker.sock), 'A')).toMatchObject([{ kind: 'unix' }]);
  });
});

describeWith([root('runs clients as uid 65534'), setpriv()], 'fdbroker reload: grants', () => {
  it('a grant added or taken away by a reload applies to the next requests; only the broker\'s uid and root may reload', async () => {
    const shared = sharedCopy();
    try {
      const dir = path.join(shared.root, 'sock');
      fs.mkdirSync(dir, { mode: 0o755 });
      const cfg = path.join(dir, 'broker.toml');
      writeConfig(cfg, { A: 'tcp://127.0.0.1:0' }, 'mode = "0666"');
      const broker = await startBroker(dir, [], ['--config', cfg, '--quiet']);
      const asNobody = async (...args: string[]) => {
        const p = runAs(NOBODY, NOBODY, shared.root, process.execPath, args);
        const { code } = await p.exited;
        return { code, stdout: p.stdout(), stderr: p.stderr() };
      };
      const client = async (what: string) => JSON.parse((await asNobody(path.join(shared.fixtures, 'sec-client.js'), broker.sock, what)).stdout.trim()) as { ok?: boolean; code?: string };
      expect(await client('status')).toMatchObject({ code: 'ERR_FDBROKER_ACCESS_DENIED' });

      writeConfig(cfg, { A: 'tcp://127.0.0.1:0' }, `mode = "0666"\n[access]\nallow-status-uid = [${NOBODY}]`);
      // The summary names the grants given and taken.
      expect(await cli(['reload', broker.sock])).toMatchObject({ code: 0, stdout: expect.stringMatching(/changed -; grants allow-status-uid \+65534$/m) });
      expect(await client('status')).toMatchObject({ ok: true });
      expect(await client('adopt')).toMatchObject({ code: 'ERR_FDBROKER_NOT_PERMITTED' });
      // A grant from the file does not let its holder reload the file.
      const denied = await asNobody(shared.cli, 'reload', broker.sock);
      expect(denied.code).toBe(1);
      expect(denied.stderr).toMatch(/^fdbroker: ERR_FDBROKER_NOT_PERMITTED: /m);

      writeConfig(cfg, { A: 'tcp://127.0.0.1:0' }, `mode = "0666"\n[access]\nallow-uid = [${NOBODY}]`);
      expect(await cli(['reload', broker.sock])).toMatchObject({ code: 0, stdout: expect.stringMatching(/grants allow-uid \+65534, allow-status-uid -65534$/m) });
      expect(await client('adopt')).toMatchObject({ ok: true });
      expect((await asNobody(shared.cli, 'reload', broker.sock)).stderr).toMatch(/ERR_FDBROKER_NOT_PERMITTED/);

      writeConfig(cfg, { A: 'tcp://127.0.0.1:0' }, 'mode = "0666"');
      expect(await cli(['reload', broker.sock])).toMatchObject({ code: 0, stdout: expect.stringMatching(/grants allow-uid -65534$/m) });
      expect(await client('adopt')).toMatchObject({ code: 'ERR_FDBROKER_ACCESS_DENIED' });
    } finally {
      shared.remove();
    }
  });
});
