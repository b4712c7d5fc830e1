// docs/guides/systemd.md followed as written, under a REAL systemd user
// manager (test/systemd/manager.ts): the package is packed (`npm pack`) and
// installed globally (`npm install -g`, into a prefix of the test's own),
// the guide's shell blocks run as they are (the git URL replaced by the
// tarball, the listener's port by a free one on 127.0.0.1), the units come
// from the installed package, and the quick start's app (examples/app.js) is
// deployed with `systemctl --user start node-app@…` under load, across a
// SIGKILL of the broker: 0 failed requests. Then the socket-activated
// variant beside it: no crash loop, and apps start at boot without a client.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ROOT, get, loadLoop, sleep, statusOf } from '../helpers';
import { describeWith, ss } from '../requirements';
import { managerNeeds, UserManager } from './manager';
import type { StatusMessage } from '../../src/protocol/messages';

const GUIDE = path.join(ROOT, 'docs', 'guides', 'systemd.md');
/** npm pack and npm install -g of the tarball (its dependencies from the npm cache, or the registry). */
const INSTALL_TIMEOUT_MS = 180_000;
/** The installed units' directory for the apps' versions: node-app@.service runs /opt/app/%i/app.js. */
const APP_ROOT = '/opt/app';
const GUIDE_URL = 'git+https://github.com/fdbroker/fdbroker.git';

/** The shell blocks of the guide's section `heading`, in order. */
function shellBlocks(heading: string): string[] {
  const text = fs.readFileSync(GUIDE, 'utf8');
  const at = text.indexOf(`\n## ${heading}\n`);
  if (at < 0) throw new Error(`docs/guides/systemd.md has no section "${heading}"`);
  const end = text.indexOf('\n## ', at + 1);
  const section = text.slice(at, end < 0 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** `text` with `from` replaced; `from` must be there (the test follows the guide). */
function replaced(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`the guide no longer has "${from}"`);
  return text.split(from).join(to);
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function tryStatus(sock: string): Promise<StatusMessage | undefined> {
  try { return await statusOf(sock); } catch { return undefined; }
}

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 15_000, every = 50): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

describeWith([...managerNeeds(), ss()], 'docs/guides/systemd.md, followed as written under a real systemd user manager', () => {
  let m: UserManager;
  let work: string;
  let home: string;
  let prefix: string;
  let tarball: string;
  let sock: string;
  /** Version names unique to this run: /opt/app/<name> is shared with nobody. */
  const tag = `fdbguide${process.pid}`;
  const versions: string[] = [];
  /** The environment the guide's commands run in: a home and an npm prefix of the test's own, the prefix's bin first on PATH. */
  let shellEnv: NodeJS.ProcessEnv;

  /** Runs a guide block (bash -euo pipefail) inside the manager's namespace; throws with its output if it fails. */
  async function shell(script: string): Promise<string> {
    const r = await m.run('bash', ['-euo', 'pipefail', '-c', script], shellEnv, INSTALL_TIMEOUT_MS);
    if (r.code !== 0) {
      const managerLog = fs.readFileSync(m.log, 'utf8').split('\n').slice(-40).join('\n');
      throw new Error(`the guide's commands failed (exit ${r.code}):\n${script}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}\n--- the manager's log\n${managerLog}`);
    }
    return r.stdout;
  }

  /** A version of the quick start's app where node-app@.service looks for it, with the globally installed fdbroker beside it. */
  function installVersion(name: string): void {
    const dir = path.join(APP_ROOT, name);
    fs.mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
    fs.copyFileSync(path.join(prefix, 'lib', 'node_modules', 'fdbroker', 'examples', 'app.js'), path.join(dir, 'app.js'));
    fs.symlinkSync(path.join(prefix, 'lib', 'node_modules', 'fdbroker'), path.join(dir, 'node_modules', 'fdbroker'));
    versions.push(name);
  }

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'fdb-guide-'));
    home = path.join(work, 'home');
    prefix = path.join(work, 'prefix');
    fs.mkdirSync(home);
    const packed = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8' });
    if (packed.status !== 0) throw new Error(`npm pack failed: ${packed.stderr}`);
    tarball = path.join(work, (JSON.parse(packed.stdout) as Array<{ filename: string }>)[0]!.filename);
    shellEnv = {
      HOME: home,
      PATH: `${path.join(prefix, 'bin')}${path.delimiter}${process.env.PATH}`,
      npm_config_prefix: prefix,
      npm_config_cache: path.join(os.homedir(), '.npm'),
      npm_config_prefer_offline: 'true',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      npm_config_update_notifier: 'false',
    };
    m = await UserManager.start({ HOME: home });
    sock = path.join(m.runtimeDir, 'fdbroker', 'control.sock');
  }, INSTALL_TIMEOUT_MS);

  afterAll(async () => {
    await m?.stop();
    for (const v of versions) fs.rmSync(path.join(APP_ROOT, v), { recursive: true, force: true });
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }, 30_000);

  it('install (npm install -g, the units from the package, the config file), deploy the quick start\'s app twice and SIGKILL the broker under load: 0 failed', async () => {
    const port = await freePort();
    const [install, setup] = shellBlocks('Install: a user manager');
    expect(install).toBeDefined();
    expect(setup).toBeDefined();
    // 1. The global install; `command -v fdbroker` prints where it landed.
    const where = await shell(replaced(install!, GUIDE_URL, tarball));
    expect(where.trim().split('\n').at(-1)).toBe(path.join(prefix, 'bin', 'fdbroker'));
    // 2. Units and config copied, paths written in, the broker enabled and started (the port set free before the start).
    await shell(replaced(setup!, 'cp "$units/fdbroker.toml" ~/.config/fdbroker/fdbroker.toml\n',
      `cp "$units/fdbroker.toml" ~/.config/fdbroker/fdbroker.toml\nsed -i 's|tcp://0.0.0.0:8080|tcp://127.0.0.1:${port}|' ~/.config/fdbroker/fdbroker.toml\n`));
    const unitDir = path.join(home, '.config', 'systemd', 'user');
    const brokerUnit = fs.readFileSync(path.join(unitDir, 'fdbroker.service'), 'utf8');
    expect(brokerUnit).toContain(`ExecStart=${path.join(prefix, 'bin', 'fdbroker')} serve %t/fdbroker/control.sock --config %E/fdbroker/fdbroker.toml`);
    expect(fs.readFileSync(path.join(unitDir, 'node-app@.service'), 'utf8')).toContain(`ExecStart=${process.execPath === '/usr/bin/node' ? '/usr/bin/node' : spawnSync('sh', ['-c', 'command -v node'], { encoding: 'utf8' }).stdout.trim()} /opt/app/%i/app.js`);
    expect(await m.show('fdbroker.service', 'ActiveState')).toBe('active');
    expect(await m.show('fdbroker.service', 'UnitFileState')).toBe('enabled');
    const st = await statusOf(sock);
    expect(st.listeners.map((l) => [l.name, l.port])).toEqual([['http', port]]);

    // 3. Deploy: `systemctl --user start node-app@v1`, then v2 under load.
    const [v1, v2, v3] = ['v1', 'v2', 'v3'].map((v) => `${tag}${v}`) as [string, string, string];
    for (const v of [v1, v2, v3]) installVersion(v);
    await m.systemctl('start', `node-app@${v1}.service`);
    const r1 = await get(port);
    expect(r1.body).toMatch(new RegExp(`^hello from ${v1} \\(pid \\d+\\)`));
    const load = loadLoop(port, { concurrency: 4, keepAlive: false, maxMs: 60_000 });
    await sleep(500);
    await m.systemctl('start', `node-app@${v2}.service`);
    // v1 was retired: it stands by, drains and exits 0, so its unit goes inactive by itself.
    await until(`node-app@${v1} inactive`, async () => ((await m.show(`node-app@${v1}.service`, 'ActiveState')) === 'inactive' ? true : undefined));
    expect(await m.show(`node-app@${v1}.service`, 'Result')).toBe('success');

    // 4. The broker SIGKILLed: systemd restarts it with the stored socket, v2 rejoins it.
    const brokerPid = Number(await m.show('fdbroker.service', 'MainPID'));
    await m.systemctl('kill', '--signal=SIGKILL', '--kill-whom=main', 'fdbroker.service');
    const v2Pid = Number(await m.show(`node-app@${v2}.service`, 'MainPID'));
    await until('v2 rejoined the restarted broker', async () => {
      const s = await tryStatus(sock);
      return s && s.broker.pid !== brokerPid && s.generations.some((g) => g.pid === v2Pid && g.state === 'ready') ? true : undefined;
    });
    // 5. The next deploy through the restarted broker retires v2.
    await m.systemctl('start', `node-app@${v3}.service`);
    await until(`node-app@${v2} inactive`, async () => ((await m.show(`node-app@${v2}.service`, 'ActiveState')) === 'inactive' ? true : undefined));
    await sleep(500);
    const stats = await load.stop();
    console.log(`systemd guide: ${stats.ok + stats.failed} requests across 2 deploys and a broker SIGKILL, ${stats.failed} failed ${JSON.stringify(stats.byKind)}`);
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
    expect(stats.ok).toBeGreaterThan(0);
    expect((await get(port)).body).toMatch(new RegExp(`^hello from ${v3} `));
    expect(await m.show('fdbroker.service', 'NRestarts')).toBe('1');
    await m.systemctl('stop', `node-app@${v3}.service`);
    expect(await m.show(`node-app@${v3}.service`, 'Result')).toBe('success');
  }, 240_000);

  // Runs after the test above: it uses that global install and its units.
  it('the socket-activated variant installed beside it: no crash loop, apps are not tied to the other broker, and they start at boot without a client', async () => {
    const port = await freePort();
    const [sockets] = shellBlocks('The socket-activated variant');
    expect(sockets).toBeDefined();
    // The guide's `$units` comes from the install section's block.
    const units = `units=$(npm root -g)/fdbroker/examples/systemd\n`;
    await shell(units + replaced(sockets!, 'cp "$units/fdbroker.socket" "$units/fdbroker-activated.service" ~/.config/systemd/user/\n',
      'cp "$units/fdbroker.socket" "$units/fdbroker-activated.service" ~/.config/systemd/user/\n'
      + `sed -i 's|ListenStream=0.0.0.0:8080|ListenStream=127.0.0.1:${port}|' ~/.config/systemd/user/fdbroker.socket\n`));
    // Both broker units are installed; the activated one runs, the other one was stopped (Conflicts=), not failed.
    expect(await m.show('fdbroker-activated.service', 'ActiveState')).toBe('active');
    expect(await m.show('fdbroker.service', 'ActiveState')).toBe('inactive');
    // Started without any client: the broker answers before a connection was made.
    const st = await statusOf(sock);
    expect(st.listeners.map((l) => [l.name, l.port])).toEqual([['http', port]]);

    // An app started now joins the activated broker and pulls in no other one.
    const v = `${tag}s1`;
    installVersion(v);
    await m.systemctl('start', `node-app@${v}.service`);
    expect(await m.show('fdbroker.service', 'ActiveState')).toBe('inactive');
    expect(await m.show('fdbroker-activated.service', 'ActiveState')).toBe('active');
    const activatedPid = Number(await m.show('fdbroker-activated.service', 'MainPID'));
    await sleep(1500);   // a crash loop would have restarted something by now
    expect(Number(await m.show('fdbroker-activated.service', 'MainPID'))).toBe(activatedPid);
    expect(await m.show('fdbroker-activated.service', 'NRestarts')).toBe('0');
    expect((await m.run('systemctl', ['--user', 'is-failed', 'fdbroker.service', 'fdbroker-activated.service'])).stdout.trim().split('\n'))
      .toEqual(['inactive', 'active']);

    // "Boot": everything stopped, then default.target: the enabled socket, broker and app come up, no client needed.
    await m.systemctl('enable', `node-app@${v}.service`);
    await m.systemctl('disable', 'fdbroker.service');
    await m.systemctl('stop', `node-app@${v}.service`, 'fdbroker-activated.service', 'fdbroker.socket');
    await m.systemctl('start', 'default.target');
    await until('the app started at "boot"', async () => ((await m.show(`node-app@${v}.service`, 'ActiveState')) === 'active' ? true : undefined));
    expect(await m.show('fdbroker-activated.service', 'ActiveState')).toBe('active');
    const s2 = await statusOf(sock);
    const appPid = Number(await m.show(`node-app@${v}.service`, 'MainPID'));
    expect(s2.generations.find((g) => g.pid === appPid)?.state).toBe('ready');
    expect((await get(port)).body).toMatch(new RegExp(`^hello from ${v} `));
    expect(await m.show('fdbroker.service', 'ActiveState')).toBe('inactive');
  }, 120_000);
});
