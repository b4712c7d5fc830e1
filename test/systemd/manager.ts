// A real systemd user manager for tests, not a mock: started in a private
// mount namespace (`unshare --mount --propagation private`) with a tmpfs on
// /run/systemd holding /run/systemd/system (so it believes it was booted under
// systemd) and a fresh 0700 XDG_RUNTIME_DIR. Units go in
// $XDG_RUNTIME_DIR/systemd/user (a user manager's runtime unit directory);
// systemctl/systemd-run run inside the namespace through nsenter. stop() ends
// the manager by its pid (it stops its units first); nothing else is killed.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { file, root, tool, type Requirement } from '../requirements';

/** What these tests need from the machine. */
export function managerNeeds(): Requirement[] {
  return [
    root('a private mount namespace and a tmpfs on /run/systemd'),
    file('/lib/systemd/systemd', 'systemd (the manager binary)', 'apt-get install systemd'),
    tool('systemctl', ['--version'], 'systemctl', 'apt-get install systemd'),
    tool('unshare', ['--version'], 'unshare (util-linux)', 'apt-get install util-linux'),
    tool('nsenter', ['--version'], 'nsenter (util-linux)', 'apt-get install util-linux'),
  ];
}

/** How long the manager gets to come up / to stop. */
const MANAGER_START_MS = 15_000;
const MANAGER_STOP_MS = 10_000;
const COMMAND_TIMEOUT_MS = 30_000;

export class UserManager {
  readonly unitDir: string;
  private exited: Promise<void>;

  private constructor(readonly child: ChildProcess, readonly runtimeDir: string, readonly log: string, private readonly extraEnv: NodeJS.ProcessEnv = {}) {
    this.unitDir = path.join(runtimeDir, 'systemd', 'user');
    this.exited = new Promise((r) => child.once('exit', () => r()));
  }

  get pid(): number { return this.child.pid!; }

  /** `env`: more environment for the manager and every command run in it (e.g. HOME, so that ~/.config/systemd/user is a test's own). */
  static async start(env: NodeJS.ProcessEnv = {}): Promise<UserManager> {
    const runtimeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdb-sd-'));
    fs.chmodSync(runtimeDir, 0o700);
    fs.mkdirSync(path.join(runtimeDir, 'systemd', 'user'), { recursive: true });
    const log = path.join(runtimeDir, 'manager.log');
    const out = fs.openSync(log, 'a');
    // `exec`: the pid we hold is the manager's own.
    const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c',
      'mount -t tmpfs -o mode=0755 tmpfs /run/systemd && mkdir /run/systemd/system && exec /lib/systemd/systemd --user'],
    { env: { ...process.env, ...env, XDG_RUNTIME_DIR: runtimeDir }, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    const m = new UserManager(child, runtimeDir, log, env);
    const deadline = Date.now() + MANAGER_START_MS;
    for (;;) {
      const r = m.systemctlSync(['is-system-running']);
      if (r.stdout.trim() === 'running' || r.stdout.trim() === 'degraded') return m;
      if (child.exitCode !== null || Date.now() > deadline) {
        await m.stop();
        throw new Error(`the systemd user manager did not come up (${r.stdout.trim()}): ${fs.readFileSync(log, 'utf8')}`);
      }
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, ...this.extraEnv, XDG_RUNTIME_DIR: this.runtimeDir, SYSTEMD_PAGER: '', SYSTEMD_COLORS: '0' };
  }

  private systemctlSync(args: string[]): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync('nsenter', ['-t', String(this.pid), '-m', '--', 'systemctl', '--user', ...args],
      { env: this.env(), encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS });
    return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  /** Runs a command inside the manager's namespace (systemctl --user ..., systemd-run --user ...), with `env` added. */
  run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = COMMAND_TIMEOUT_MS): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
    const t0 = Date.now();
    return new Promise((resolve) => {
      execFile('nsenter', ['-t', String(this.pid), '-m', '--', cmd, ...args], { env: { ...this.env(), ...env }, timeout: timeoutMs },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr, ms: Date.now() - t0 }));
    });
  }

  /** systemctl --user ARGS; throws with its stderr when it fails. */
  async systemctl(...args: string[]): Promise<string> {
    const r = await this.run('systemctl', ['--user', ...args]);
    if (r.code !== 0) throw new Error(`systemctl --user ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}\n${await this.statusText(args)}`);
    return r.stdout;
  }

  private async statusText(args: string[]): Promise<string> {
    const unit = args.find((a) => /\.(service|socket)$/.test(a));
    if (!unit) return '';
    const r = await this.run('systemctl', ['--user', 'status', '--no-pager', '-n', '0', unit]);
    return r.stdout;
  }

  /** One property of a unit (systemctl show -p NAME --value). */
  async show(unit: string, prop: string): Promise<string> {
    return (await this.systemctl('show', '-p', prop, '--value', unit)).trim();
  }

  /** Writes unit files into the runtime unit directory and reloads the manager. */
  async install(units: Record<string, string>): Promise<void> {
    for (const [name, text] of Object.entries(units)) fs.writeFileSync(path.join(this.unitDir, name), text);
    await this.systemctl('daemon-reload');
  }

  /** Stops the manager by its pid (SIGTERM: it stops its units and exits), SIGKILL if it hangs; removes its directory. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      process.kill(this.pid, 'SIGTERM');
      const t = setTimeout(() => { try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ } }, MANAGER_STOP_MS);
      await this.exited;
      clearTimeout(t);
    }
    fs.rmSync(this.runtimeDir, { recursive: true, force: true });
  }
}
