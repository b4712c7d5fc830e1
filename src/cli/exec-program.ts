// `fdbroker exec`: run a program in any language as a generation, handing it
// the broker's listeners at fds 3, 4, ... told the systemd way (LISTEN_FDS,
// LISTEN_FDNAMES, LISTEN_PID, LISTEN_PIDFDID) or in another server's dialect
// (--inherit, dialect.ts), and reading its readiness over sd_notify
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
import { MAX_INSTANCES } from '../protocol/limits';
import { RUN_SLOT_ENV } from '../handover/run-env';
import { NotifySocket } from './notify-socket';
import type { ListenerInfo } from '../protocol/messages';
import { DEFAULT_EXEC_STOP_TIMEOUT_MS } from './defaults';
import { DEFAULT_TIMEOUT_MS } from '../client/defaults';
import { GenerationMachine, type GenerationEffect, type GenerationInput } from '../core/generation-machine';
import { ProgramStartError, resolveProgram } from './program';
import { guardedCommand, startWatchdog, type OrphanGuardKind, type Watchdog } from './orphan-guard';
import { DEFAULT_DIALECTS, FIRST_LISTENER_FD, dialectEnv, wantsListenPid, withoutDialectVariables, type Dialect } from './dialect';
import { pidfdInode } from '../native/pidfd';
import type { Writable } from 'node:stream';

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
const SH_CHECK = '[ "$PPID" = "$1" ] || exit 1; shift; ';
const SH_LISTEN_PID = 'LISTEN_PID=$$; export LISTEN_PID; ';
// LISTEN_PIDFDID: only the wrapper can open a pidfd for the program (its
// child), and only once it runs: it writes the inode (or an empty line) on a
// pipe at fd K, which the script reads and closes before the exec.
const shListenPidfdId = (k: number) => `IFS= read -r LISTEN_PIDFDID <&${k}; exec ${k}<&-; `
  + 'if [ -n "$LISTEN_PIDFDID" ]; then export LISTEN_PIDFDID; else unset LISTEN_PIDFDID; fi; ';
const SH_EXEC = 'exec "$0" "$@"';
/** sh redirects only fds 0-9: the pidfd-id pipe must fit there, after the listeners. */
const SH_MAX_FD = 9;

export interface ExecOptions {
  controlPath: string;
  command: string;
  args?: string[];
  /** Listeners to adopt, in this order from fd 3 (default all, in the broker's order). */
  names?: string[];
  /** How the program is told its listeners (dialect.ts; default ['systemd']). */
  inherit?: readonly Dialect[];
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
    const dialects = o.inherit !== undefined && o.inherit.length > 0 ? o.inherit : DEFAULT_DIALECTS;
    resolveProgram(o.command, baseEnv.PATH);

    // `run --instances`: the slot run gave this wrapper is the program's (the program itself never joins).
    const slotText = baseEnv[RUN_SLOT_ENV];
    const slot = slotText !== undefined && /^\d+$/.test(slotText) && Number(slotText) < MAX_INSTANCES ? Number(slotText) : 0;
    let conn = await BrokerConnection.connect(o.controlPath, { timeout: o.timeout ?? DEFAULT_TIMEOUT_MS });
    const label = o.label ?? path.basename(o.command);
    let listeners: ReceivedListener[] = [];
    let generation: number;
    let epoch: number;
    let notify: NotifySocket | undefined;
    let dialectVars: Record<string, string> = {};
    const n = native();
    const closeFds = () => { for (const l of listeners) n.close(l.fd); listeners = []; };
    try {
      // No heartbeat: this wrapper does not serve; the broker must not take its answers for the program's.
      const r = await conn.join(o.names, { label, timeout: o.timeout ?? DEFAULT_TIMEOUT_MS, slot });
      generation = r.generation;
      epoch = r.epoch;
      listeners = orderListeners(r.listeners, o.names);
      dialectVars = dialectEnv(dialects, listeners.map((l) => l.info));
      if (mode === 'notify') notify = NotifySocket.create({ parent: o.notifyParent });
    } catch (err) {
      closeFds();
      conn.close();
      throw err;
    }

    const env: NodeJS.ProcessEnv = { ...withoutDialectVariables(baseEnv), ...dialectVars };
    delete env.NOTIFY_SOCKET;
    delete env[RUN_SLOT_ENV];
    if (notify) env.NOTIFY_SOCKET = notify.path;

    let child: ChildProcess;
    const listenPid = wantsListenPid(dialects);
    const pidfdFd = FIRST_LISTENER_FD + listeners.length;
    const sendPidfdId = listenPid && pidfdFd <= SH_MAX_FD;
    const script = SH_CHECK + (listenPid ? SH_LISTEN_PID : '') + (sendPidfdId ? shListenPidfdId(pidfdFd) : '') + SH_EXEC;
    // The retire signal, sent by the kernel (or the watchdog) if this process dies.
    const launch = guardedCommand(SH, ['-c', script, o.command, String(process.pid), ...args], retireSignal, baseEnv.PATH);
    try {
      // Node dup2()s each fd to its index in the child (3, 4, ...), without
      // close-on-exec; every other fd of this process is close-on-exec.
      // detached: setsid(), a process group of its own (see the top).
      child = spawn(launch.file, launch.args, {
        env, detached: true, stdio: ['inherit', 'inherit', 'inherit', ...listeners.map((l) => l.fd), ...(sendPidfdId ? ['pipe' as const] : [])],
      });
      if (sendPidfdId) {
        // The child is not reaped before this runs (Node reaps on the event loop): child.pid is the program's.
        const id = child.pid === undefined ? undefined : pidfdInode(child.pid);
        const w = child.stdio[pidfdFd] as Writable | null;
        w?.on('error', () => { /* the script is gone: 'exit' reports it */ });
        w?.end(`${id ?? ''}\n`);
      }
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
      // The rules (ready, retire, rejoin, planned stop) are the library's, in
      // GenerationMachine; exec joins without a standby window (a program
      // cannot be told to resume), so it is never standing by.
      const machine = new GenerationMachine({ standbyMs: 0, heartbeat: false, retireMode: 'drain', embedded: false });
      let retired = false;
      let readyFailed = false;
      let readyTimedOut = false;
      let finished = false;
      /** A SIGTERM or SIGINT from outside was passed on: the program's end is a planned stop. */
      let stopForwarded = false;
      let candidate: BrokerConnection | undefined;
      let lastLoss: Error = new FdbrokerError('ERR_FDBROKER_CLOSED', 'the broker connection ended');
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
        const fn = () => {
          if (!alive()) return;
          if (sig === 'SIGTERM' || sig === 'SIGINT') stopForwarded = true;
          this.emit('forward', sig);
          signal(sig);
        };
        process.on(sig, fn);
        return [sig, fn] as const;
      });

      // Inputs fed while effects run wait: one input's effects all run before the next input's.
      const inbox: GenerationInput[] = [];
      let stepping = false;
      const feed = (input: GenerationInput) => {
        inbox.push(input);
        if (stepping) return;
        stepping = true;
        try {
          for (let next = inbox.shift(); next; next = inbox.shift()) {
            for (const e of machine.step(next, Date.now())) run(e);
          }
        } finally {
          stepping = false;
        }
      };
      const run = (e: GenerationEffect): void => {
        switch (e.type) {
          case 'send-ready': {
            const c = conn;
            c.ready().then(
              () => feed({ type: 'ready-acked' }),
              (err: FdbrokerError) => {
                // The broker was lost before it answered: no refusal; the rejoin says "ready".
                if (err.code !== 'ERR_FDBROKER_READY_REFUSED' && c.isClosed) return;
                feed({ type: 'ready-refused', code: err.code, message: err.message });
              },
            );
            return;
          }
          case 'settle-ready':
            if (e.ok) {
              if (!finished) this.emit('ready');
            } else if (e.code !== 'ERR_FDBROKER_CLOSED') {
              readyFailed = true;
              if (!finished) this.emit('readyRefused', new FdbrokerError(e.code as FdbrokerError['code'], e.message));
            }
            return;
          case 'emit':
            if (e.event === 'retire') {
              retired = true;
              clearTimeout(readyTimer);
              this.emit('retire', e.by, retireSignal);
            } else if (e.event === 'rejoin') {
              this.emit('rejoin', { generation: e.generation, state: e.state });
            } else if (e.event === 'brokerLost') {
              this.emit('brokerLost', lastLoss);
            }
            return;
          case 'start-retiring':
            stop();
            return;
          case 'send-pong':
            conn.pong(e.id);
            return;
          case 'send-leaving':
            conn.leave();
            return;
          case 'close-connection':
            conn.close();
            return;
          case 'schedule-rejoin':
            clearTimeout(rejoinTimer);
            rejoinTimer = setTimeout(() => { rejoinTimer = undefined; feed({ type: 'rejoin-timer' }); }, e.delayMs);
            return;
          case 'cancel-rejoin':
            clearTimeout(rejoinTimer);
            rejoinTimer = undefined;
            return;
          // A broker that answers on the path again (restarted by systemd, or
          // another one) is joined in the state this generation had, as
          // startGeneration() does: no fds, the program keeps its own.
          case 'connect':
            BrokerConnection.connect(o.controlPath, { timeout: o.timeout ?? DEFAULT_TIMEOUT_MS }).then(
              (c) => { candidate = c; feed({ type: 'rejoin-connected', features: c.features }); },
              () => feed({ type: 'rejoin-failed' }),
            );
            return;
          case 'send-rejoin': {
            const c = candidate!;
            c.rejoin({ ...e.claim, names: infos.map((l) => l.name), label, slot }).then(
              (r) => { if (candidate === c) feed({ type: 'rejoined', number: r.generation, state: r.state, epoch: r.epoch }); else c.close(); },
              () => { c.close(); if (candidate === c) { candidate = undefined; feed({ type: 'rejoin-failed' }); } },
            );
            return;
          }
          case 'use-new-connection':
            conn = candidate!;
            candidate = undefined;
            use(conn);
            return;
          case 'drop-new-connection':
            candidate?.close();
            candidate = undefined;
            return;
          case 'readopt':
            // Never asked of exec (no standby); if it were, it cannot: the program holds the listeners.
            feed({ type: 'readopt-failed' });
            return;
          case 'stop-accepting':
          case 'arm-standby-timer':
          case 'clear-standby-timer':
            return;
        }
      };

      const finish = () => {
        finished = true;
        watchdog?.release();
        for (const [sig, fn] of forwarders) process.off(sig, fn);
        clearTimeout(stopTimer);
        clearTimeout(readyTimer);
        clearTimeout(rejoinTimer);
        notify?.close();
        // A stop asked from outside (not after a retire) is a planned one: the broker is told so, where it knows "leaving".
        feed({ type: 'close', planned: stopForwarded });
      };

      const sayReady = () => {
        if (finished || retired || readyFailed) return;
        clearTimeout(readyTimer);
        feed({ type: 'ready-requested' });
      };

      const use = (c: BrokerConnection) => {
        // "accepting" (pause) is never sent to exec: it does not join with `pause` (a foreign server cannot be paused from here).
        c.onNotice = (msg) => { if (msg.type !== 'accepting') feed(msg); };
        c.onClose = (err) => {
          if (c !== conn) return;
          lastLoss = err;
          feed({ type: 'connection-lost' });
        };
      };
      feed({ type: 'joined', number: generation, epoch, features: conn.features });
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
        resolve({ status, code, signal: sig, ready: machine.state.readyAcked, retired, orphanGuard: launch.kind });
      });
      if (child.pid === undefined) return; // 'error' follows
      if (launch.kind === 'watchdog') watchdog = startWatchdog(child.pid, retireSignal);

      this.emit('spawn', child.pid, machine.state.number, infos);

      if (notify) {
        notify.on('ready', sayReady);
        notify.on('stopping', () => this.emit('stopping'));
        notify.on('status', (t) => this.emit('status', t));
        notify.on('error', (err) => this.emit('notifyError', err));
        if (o.readyTimeoutMs !== undefined) {
          readyTimer = setTimeout(() => {
            if (machine.state.readyPending || machine.state.readyAcked || retired || finished || !alive()) return;
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
