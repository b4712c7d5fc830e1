// upgradeOnSignal(), the nginx way: on a signal, start a successor (the same
// program with the same arguments, detached), which adopts, becomes ready,
// and so retires this process. One upgrade in flight at a time; a successor
// that exits, or is not ready in time (then it is sent SIGTERM), fails the
// upgrade and this process serves on.
import { spawn, type ChildProcess } from 'node:child_process';
import { DEFAULT_UPGRADE_TIMEOUT_MS } from './defaults';

export interface UpgradeOptions {
  /** Arguments for the successor (default: this process's execArgv and argv). */
  args?: string[];
  /** Environment for the successor (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** A successor not ready within this many ms is stopped (SIGTERM) and the upgrade fails (default 60 s). */
  timeout?: number;
}

export interface UpgradeFailure { pid: number; code: number | null; signal: NodeJS.Signals | null; reason: string }

export interface UpgradeHooks {
  started: (pid: number) => void;
  failed: (info: UpgradeFailure) => void;
  refused: (reason: string) => void;
}

export class Upgrader {
  private upgrading: ChildProcess | undefined;

  /** `retiring()`: whether this process is retiring (a successor took over): no upgrade then, and no failure. */
  constructor(private readonly options: UpgradeOptions, private readonly retiring: () => boolean, private readonly hooks: UpgradeHooks) {}

  start(): void {
    if (this.retiring()) {
      this.hooks.refused('this generation is retiring');
      return;
    }
    if (this.upgrading) {
      this.hooks.refused(`an upgrade is in flight (pid ${this.upgrading.pid})`);
      return;
    }
    const options = this.options;
    const args = options.args ?? [...process.execArgv, ...process.argv.slice(1)];
    const child = spawn(process.execPath, args, {
      detached: true,
      stdio: 'inherit',
      env: { ...(options.env ?? process.env), FDBROKER_UPGRADED_FROM: String(process.pid) },
    });
    this.upgrading = child;
    child.unref();
    const fail = (reason: string, code: number | null, sig: NodeJS.Signals | null) => {
      clearTimeout(timer);
      if (this.upgrading !== child) return;
      if (this.retiring()) return; // the successor (or another) took over: not a failure
      this.upgrading = undefined;
      this.hooks.failed({ pid: child.pid ?? -1, code, signal: sig, reason });
    };
    const timer = setTimeout(() => {
      if (this.upgrading === child && !this.retiring()) {
        child.kill('SIGTERM');
        fail('not ready in time', null, null);
      }
    }, options.timeout ?? DEFAULT_UPGRADE_TIMEOUT_MS);
    timer.unref();
    child.once('error', (err) => fail(err.message, null, null));
    child.once('exit', (code, sig) => fail(code === 0 ? 'exited before ready' : 'failed before ready', code, sig));
    if (child.pid !== undefined) this.hooks.started(child.pid);
  }
}
