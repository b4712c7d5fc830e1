// One process started by `fdbroker run`, and how it is started: with the
// exec contract (through an `fdbroker exec` wrapper, which joins for the
// program and hands it LISTEN_FDS), or as a library app that joins by itself
// (startGeneration() without a path reads FDBROKER_PATH).
//
// Each process gets a process group of its own (detached: setsid), so a
// terminal's Ctrl-C or a `kill` of run's group reaches run alone, and run
// passes each signal on once. Its stdout and stderr go through run (the
// 'output' callback), which keeps the last lines for failure reports.
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import type { Writable } from 'node:stream';
import { RUN_PATH_ENV, RUN_SLOT_ENV, RUN_SPARE_FD_ENV } from '../handover/run-env';
import type { Dialect } from '../cli/dialect';
import { OutputTail } from './output-tail';

/** What a process is to run: serving, a deploy's new version not yet ready, a warm spare, or told to leave. */
export type Role = 'serving' | 'candidate' | 'spare' | 'retiring';

/** How the command is started. */
export type Contract =
  | { kind: 'library' }
  | { kind: 'exec'; ready: 'notify' | 'immediate'; retireSignal: NodeJS.Signals; stopTimeoutMs: number; inherit?: readonly Dialect[] };

export interface LaunchOptions {
  controlPath: string;
  command: string;
  args: string[];
  contract: Contract;
  /** A warm spare: gets the promotion pipe at fd 3 (library only). */
  spare: boolean;
  /** `run --instances`: the instance slot it fills (FDBROKER_SLOT); absent without --instances. */
  slot?: number;
  env: NodeJS.ProcessEnv;
  output: (pid: number, stream: 'stdout' | 'stderr', chunk: Buffer) => void;
}

/** The CLI entry, for the exec wrapper (dist/run/member.js -> bin/fdbroker.js). */
const CLI = path.resolve(__dirname, '..', '..', 'bin', 'fdbroker.js');
/** The service manager's variables, never passed on to a process run starts. */
const INHERITED_FROM_MANAGER = ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', 'NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'];
/** The promotion pipe's fd in a spare. */
const SPARE_FD = 3;

export class Member {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly startedAt: number;
  readonly tail = new OutputTail();
  role: Role;
  /** The broker's number for this process's generation, once it joined. */
  generation: number | undefined;
  ready = false;
  /** It left the broker unretired (it died: the broker sees its connection close before run sees the exit) and the spare already took over; its exit is still a crash. */
  replaced = false;
  /** Set when run asked it to stop (SIGTERM sent); its exit is then no crash. */
  stopRequested = false;
  readyTimer: NodeJS.Timeout | undefined;
  killTimer: NodeJS.Timeout | undefined;
  private readonly promotePipe: Writable | undefined;

  /** Its instance slot (`run --instances`; 0 otherwise). */
  slot = 0;

  private constructor(child: ChildProcess, role: Role, now: number) {
    this.child = child;
    // -1 when the spawn failed: 'error' follows, and the supervisor treats it as an exit.
    this.pid = child.pid ?? -1;
    this.role = role;
    this.startedAt = now;
    this.promotePipe = (child.stdio[SPARE_FD] as Writable | null | undefined) ?? undefined;
    // run may die first: a write to a gone spare must not throw.
    this.promotePipe?.on('error', () => { /* the spare exited; its exit is reported */ });
  }

  /** Starts the command. A spawn that fails (ENOENT, EACCES) gives pid -1 and an 'error' event on `child`. */
  static launch(o: LaunchOptions, role: Role, now: number): Member {
    const env: NodeJS.ProcessEnv = { ...o.env, [RUN_PATH_ENV]: o.controlPath };
    // What the service manager gave run is run's: the sockets (LISTEN_*), and
    // readiness and the watchdog (only run may say READY=1 for the service).
    for (const k of INHERITED_FROM_MANAGER) delete env[k];
    delete env[RUN_SPARE_FD_ENV];
    delete env[RUN_SLOT_ENV];
    if (o.slot !== undefined) env[RUN_SLOT_ENV] = String(o.slot);
    if (o.spare) env[RUN_SPARE_FD_ENV] = String(SPARE_FD);
    const [file, args] = o.contract.kind === 'exec'
      ? [process.execPath, [CLI, 'exec', o.controlPath, '--ready', o.contract.ready, '--retire-signal', o.contract.retireSignal,
        '--stop-timeout', String(o.contract.stopTimeoutMs), ...(o.contract.inherit ?? []).flatMap((d) => ['--inherit', d]),
        '--label', path.basename(o.command), '--', o.command, ...o.args]]
      : [o.command, o.args];
    const child = spawn(file, args, {
      env, detached: true,
      stdio: ['ignore', 'pipe', 'pipe', ...(o.spare ? ['pipe' as const] : [])],
    });
    const m = new Member(child, role, now);
    m.slot = o.slot ?? 0;
    if (child.pid === undefined) return m;
    const pid = m.pid;
    child.stdout!.on('data', (d: Buffer) => { m.tail.push(d); o.output(pid, 'stdout', d); });
    child.stderr!.on('data', (d: Buffer) => { m.tail.push(d); o.output(pid, 'stderr', d); });
    return m;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends `sig` unless it has exited. */
  signal(sig: NodeJS.Signals): void {
    if (!this.alive) return;
    try { this.child.kill(sig); } catch { /* exited meanwhile */ }
  }

  /** A spare that was promoted (it serves in place of one that died). */
  promoted = false;

  /** When it was promoted (the clock given at start), for a spare that was. */
  promotedAt: number | undefined;

  /** A spare: tells it to accept and say ready (one byte on its pipe) at `now`. */
  promote(now: number): void {
    this.promotePipe?.end('1');
    this.promoted = true;
    this.promotedAt = now;
    this.role = 'serving';
  }

  clearTimers(): void {
    clearTimeout(this.readyTimer);
    clearTimeout(this.killTimer);
  }
}
