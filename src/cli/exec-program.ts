// `fdbroker exec`: run a program in any language as a generation, handing it
// the broker's listeners the systemd way (LISTEN_FDS, LISTEN_FDNAMES,
// LISTEN_PID, fds from 3) and reading its readiness over sd_notify
// (NOTIFY_SOCKET). This process is the generation as the broker sees it: it
// joins, says ready when the program does, and when told to retire sends the
// program the retire signal (SIGKILL after the stop timeout). It never serves:
// its own copies of the listeners are closed once the program has them.
//
// Signals: the program runs in its own session and process group (setsid), so
// a signal to the wrapper's group (Ctrl-C in a terminal, `kill -TERM -PGID`)
// reaches the program once, forwarded by the wrapper, instead of twice. A
// service manager that signals every process of the unit (systemd's
// KillMode=control-group) still reaches both; use KillMode=mixed, which
// signals the main process (the wrapper) and SIGKILLs the rest at the end.
// A wrapper that dies unannounced stops the program: see orphan-guard.ts.
//
// Library code: it never prints. Exec emits events; the CLI reports them.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../native/binding';
import { BrokerConnection, type ReceivedListener } from '../client/connection';
import { FdbrokerError } from '../protocol/errors';
import { NotifySocket } from './notify-socket';
import type { ListenerInfo } from '../protocol/messages';
import { DEFAULT_EXEC_STOP_TIMEOUT_MS } from './defaults';
import { DEFAULT_TIMEOUT_MS } from '../client/defaults';
import { REJOIN_RETRY_MAX_MS, REJOIN_RETRY_MS } from '../handover/defaults';
import { ProgramStartError, resolveProgram } from './program';
import { guardedCommand, startWatchdog, type OrphanGuardKind, type Watchdog } from './orphan-guard';

export { ProgramStartError, resolveProgram } from './program';

/** Signals the wrapper passes on to the program. */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'];

/** Exit status when the program cannot be started (as a shell's). */
export const EXEC_START_FAILED = 127;

// sh's own pid is the program's pid once `exec` replaces sh: the only way to
// put the program's pid in its environment before it runs. $1 is the
// wrapper's pid: if the parent is no longer the wrapper (it died before the
// orphan guard was in place), the program never starts.
const SH = '/bin/sh';
const SH_SCRIPT = '[ "$PPID" = "$1" ] || exit 1; shift; LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"';

export interface ExecOptions {
  controlPath: string;
  command: string;
  args?: string[];
  /** Listeners to adopt, in this order from fd 3 (default all, in the broker's order). */
  names?: string[];
  /** 'notify' (default): ready when the program sends READY=1; 'immediate': as soon as it is spawned. */
  ready?: 'notify' | 'immediate';
  /** Sent to the program when the broker says retire (default SIGTERM). */
  retireSignal?: NodeJS.Signals;
  /** ms from the retire signal to SIGKILL (default 30 s). */
  stopTimeoutMs?: number;
  /** With 'notify': ms the program has to send READY=1 before it is stopped (default: no limit). */
  readyTimeoutMs?: number;
  /** Shown in `fdbroker status` (default: the command's base name). */
  label?: string;
  /** Environment the program's is built from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Deadline for connecting and joining, in ms (default 10 s). */
  timeout?: number;
  /** Where the notify socket's private directory is made (default os.tmpdir()). */
  notifyParent?: string;
}

export interface ExecEvents {
  /** The program runs: its pid, this generation's number, the listeners it got from fd 3. */
  spawn: [pid: number, generation: number, listeners: ListenerInfo[]];
  /** The broker accepted ready(). */
  ready: [];
  /** The broker refused ready() (or could not be asked): the program runs on, older generations serve on. */
  readyRefused: [err: Error];
  /** The program sent no READY=1 within readyTimeoutMs; it is being stopped. */
  readyTimeout: [ms: number];
  /** The broker said retire; the program was sent `signal`. */
  retire: [by: number, signal: NodeJS.Signals];
  /** The program outlived the stop timeout and was sent SIGKILL. */
  kill: [afterMs: number];
  /** A signal to this process was passed on to the program. */
  forward: [signal: NodeJS.Signals];
  /** The program sent STATUS=... */
  status: [text: string];
  /** The program sent STOPPING=1. */
  stopping: [];
  /** The connection to the broker ended while the program runs; it runs on, and exec re-joins the path when a broker answers there again. */
  brokerLost: [err: Error];
  /** A broker answered on the path again (restarted, e.g. by systemd) and this generation joined it in the state it had. */
  rejoin: [info: { generation: number; state: string }];
  /** The notify socket failed; readiness can no longer be reported. */
  notifyError: [err: Error];
}

export interface ExecResult {
  /** What to exit with: the program's code, 128 + signal number if a signal killed it. */
  status: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Whether the broker accepted ready(). */
  ready: boolean;
  /** Whether the broker told this generation to retire. */
  retired: boolean;
  /** What would have stopped the program had this process died (see orphan-guard.ts). */
  orphanGuard: OrphanGuardKind;
}

/** Exit status for a program that ended with `code` or died of `signal`. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const n = signal ? os.constants.signals[signal] : undefined;
  return n !== undefined ? 128 + n : 1;
}

function orderListeners(got: ReceivedListener[], names: string[] | undefined): ReceivedListener[] {
  if (!names) return got;
  const rank = new Map(names.map((n, i) => [n, i] as const));
  return [...got].sort((a, b) => (rank.get(a.info.name) ?? 0) - (rank.get(b.info.name) ?? 0));
}

export class Exec extends EventEmitter<ExecEvents> {
  private readonly opts: ExecOptions;
  private started = false;

  constructor(options: ExecOptions) {
    super();
    this.opts = options;
  }

  /**
   * Joins, spawns and supervises the program; resolves when it has exited.
   * Rejects, with nothing spawned, on a broker error (FdbrokerError) or when
   * the program cannot be started (ProgramStartError).
   */
  async run(): Promise<ExecResult> {
    if (this.started) throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', 'Exec.run() may be called once');
    this.started = true;
    const o = this.opts;
    const baseEnv = o.env ?? process.env;
    const args = o.args ?? [];
    const mode = o.ready ?? 'notify';
    const retireSignal = o.retireSignal ?? 'SIGTERM';
    const stopTimeoutMs = o.stopTimeoutMs ?? DEFAULT_EXEC_STOP_TIMEOUT_MS;
    resolveProgram(o.command, baseEnv.PATH);

    let conn = await BrokerConnection.connect(o.controlPath, { timeout: o.timeout ?? DEFAULT_TIMEOUT_MS });
    const label = o.label ?? path.basename(o.command);
    let listeners: ReceivedListener[] = [];
    let generation: number;
    let notify: NotifySocket | undefined;
    const n = native();
    const closeFds = () => { for (const l of listeners) n.close(l.fd); listeners = []; };
    try {
      const r = await conn.join(o.names, label, o.timeout ?? DEFAULT_TIMEOUT_MS);
      generation = r.generation;
      listeners = orderListeners(r.listeners, o.names);
      const bad = listeners.find((l) => l.info.name.includes(':'));
      if (bad) {
        throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT',
          `listener "${bad.info.name}" contains ":", which LISTEN_FDNAMES cannot carry; choose others with --names`);
      }
      if (mode === 'notify') notify = NotifySocket.create({ parent: o.notifyParent });
    } catch (err) {
      closeFds();
      conn.close();
      throw err;
    }

    const env: NodeJS.ProcessEnv = { ...baseEnv };
    delete env.LISTEN_PID;
    delete env.NOTIFY_SOCKET;
    env.LISTEN_FDS = String(listeners.length);
    env.LISTEN_FDNAMES = listeners.map((l) => l.info.name).join(':');
    if (notify) env.NOTIFY_SOCKET = notify.path;

    let child: ChildProcess;
    // The retire signal, sent by the kernel (or the watchdog) if this process dies.
    const launch = guardedCommand(SH, ['-c', SH_SCRIPT, o.command, String(process.pid), ...args], retireSignal, baseEnv.PATH);
    try {
      // Node dup2()s each fd to its index in the child (3, 4, ...), without
      // close-on-exec; every other fd of this process is close-on-exec.
      // detached: setsid(), a process group of its own (see the top).
      child = spawn(launch.file, launch.args, {
        env, detached: true, stdio: ['inherit', 'inherit', 'inherit', ...listeners.map((l) => l.fd)],
      });
    } catch (err) {
      closeFds();
      notify?.close();
      conn.close();
      throw new ProgramStartError((err as NodeJS.ErrnoException).code ?? 'EINVAL', `cannot start ${launch.file}: ${(err as Error).message}`, { cause: err });
    }
    // uv_spawn() returns once the child has exec'd (or failed to): the child
    // holds its copies now. This process must not serve.
    const infos = listeners.map((l) => l.info);
    closeFds();

    return new Promise<ExecResult>((resolve, reject) => {
      let ready = false;
      let retired = false;
      let readyFailed = false;
      let readyTimedOut = false;
      let finished = false;
      let connClosedByUs = false;
      // ready() was asked while the broker was lost: the rejoin says "ready".
      let readyWanted = false;
      let rejoinTimer: NodeJS.Timeout | undefined;
      let stopTimer: NodeJS.Timeout | undefined;
      let readyTimer: NodeJS.Timeout | undefined;
      let watchdog: Watchdog | undefined;

      const alive = () => child.exitCode === null && child.signalCode === null;
      const signal = (sig: NodeJS.Signals) => {
        if (!alive()) return;
        try { child.kill(sig); } catch { /* exited meanwhile */ }
      };
      const stop = () => {
        signal(retireSignal);
        if (stopTimer) return;
        stopTimer = setTimeout(() => {
          if (!alive()) return;
          this.emit('kill', stopTimeoutMs);
          signal('SIGKILL');
        }, stopTimeoutMs);
      };
      const forwarders = FORWARDED_SIGNALS.map((sig) => {
        const fn = () => { if (alive()) { this.emit('forward', sig); signal(sig); } };
        process.on(sig, fn);
        return [sig, fn] as const;
      });

      const finish = () => {
        finished = true;
        watchdog?.release();
        for (const [sig, fn] of forwarders) process.off(sig, fn);
        clearTimeout(stopTimer);
        clearTimeout(readyTimer);
        clearTimeout(rejoinTimer);
        notify?.close();
        connClosedByUs = true;
        conn.close();
      };

      const sayReady = () => {
        if (ready || finished || retired || readyFailed) return;
        clearTimeout(readyTimer);
        readyWanted = true;
        const c = conn;
        c.ready().then(
          () => { ready = true; if (!finished) this.emit('ready'); },
          (err: FdbrokerError) => {
            // Refused: final. The broker was lost before it answered: the rejoin says "ready".
            if (err.code !== 'ERR_FDBROKER_READY_REFUSED' && c.isClosed) return;
            readyFailed = true;
            if (!finished) this.emit('readyRefused', err);
          },
        );
      };

      const retire = (by: number) => {
        if (retired || finished) return;
        retired = true;
        clearTimeout(readyTimer);
        this.emit('retire', by, retireSignal);
        stop();
      };
      // A broker that answers on the path again (restarted by systemd, or
      // another one) is joined in the state this generation had, as
      // startGeneration() does: no fds, the program keeps its own.
      const scheduleRejoin = (delay: number) => {
        if (finished || retired || rejoinTimer) return;
        rejoinTimer = setTimeout(() => {
          rejoinTimer = undefined;
          void rejoin().catch(() => scheduleRejoin(Math.min(Math.max(delay * 2, REJOIN_RETRY_MS), REJOIN_RETRY_MAX_MS)));
        }, delay);
      };
      const rejoin = async () => {
        if (finished || retired) return;
        const c = await BrokerConnection.connect(o.controlPath, { timeout: o.timeout ?? DEFAULT_TIMEOUT_MS });
        try {
          // A ready that was refused (or timed out) is not claimed again.
          const state = ready || (readyWanted && !readyFailed) ? 'ready' : 'starting';
          const r = await c.rejoin(generation, state, infos.map((l) => l.name), label);
          if (finished || retired) {
            c.close();
            return;
          }
          conn = c;
          generation = r.generation;
          use(c);
          this.emit('rejoin', r);
          if (state === 'ready' && !ready) {
            if (r.state === 'ready') {
              ready = true;
              this.emit('ready');
            } else {
              readyFailed = true;
              this.emit('readyRefused', new FdbrokerError('ERR_FDBROKER_READY_REFUSED', `generation ${r.generation} rejoined as ${r.state}: a newer generation serves`));
            }
          }
          // A newer ready generation on this broker retires this one with a notice, as after a join.
        } catch (err) {
          c.close();
          throw err;
        }
      };
      // exec joins without a standby window (a program cannot be told to resume): only "retire" arrives.
      const use = (c: BrokerConnection) => {
        // "moved": a new broker took over the path (`fdbroker serve --takeover`); this connection closes next.
        let moved = false;
        c.onNotice = (msg) => {
          if (msg.type === 'retire') retire(msg.by);
          else if (msg.type === 'moved') moved = true;
        };
        c.onClose = (err) => {
          if (c !== conn || connClosedByUs || finished) return;
          // A takeover is no loss: rejoin the new broker at once.
          if (moved) {
            scheduleRejoin(0);
            return;
          }
          this.emit('brokerLost', err);
          scheduleRejoin(REJOIN_RETRY_MS);
        };
      };
      use(conn);

      child.on('error', (err) => {
        // Only when /bin/sh itself could not be spawned: nothing runs.
        if (finished) return;
        finish();
        reject(new ProgramStartError((err as NodeJS.ErrnoException).code ?? 'EINVAL', `cannot start ${launch.file}: ${err.message}`, { cause: err }));
      });
      child.on('exit', (code, sig) => {
        if (finished) return;
        finish();
        let status = exitStatus(code, sig);
        // A program stopped for missing its ready deadline has failed, whatever it exits with.
        if (readyTimedOut && status === 0) status = 1;
        resolve({ status, code, signal: sig, ready, retired, orphanGuard: launch.kind });
      });
      if (child.pid === undefined) return; // 'error' follows
      if (launch.kind === 'watchdog') watchdog = startWatchdog(child.pid, retireSignal);

      this.emit('spawn', child.pid, generation, infos);

      if (notify) {
        notify.on('ready', sayReady);
        notify.on('stopping', () => this.emit('stopping'));
        notify.on('status', (t) => this.emit('status', t));
        notify.on('error', (err) => this.emit('notifyError', err));
        if (o.readyTimeoutMs !== undefined) {
          readyTimer = setTimeout(() => {
            if (ready || retired || finished || !alive()) return;
            readyTimedOut = true;
            readyFailed = true;
            this.emit('readyTimeout', o.readyTimeoutMs!);
            stop();
          }, o.readyTimeoutMs);
        }
      } else {
        sayReady();
      }
    });
  }
}
