// What stops the program of `fdbroker exec` when the wrapper dies without
// telling it (SIGKILL, a crash, the OOM killer): left running it would hold
// and serve the listeners while no generation in `status` stands for it, and
// no later deploy could retire it. It gets the retire signal instead.
//
// - 'pdeathsig' (preferred): the program is started through util-linux's
//   `setpriv --pdeathsig SIG` (>= 2.33), which sets PR_SET_PDEATHSIG and
//   execs: the kernel sends SIG when the wrapper dies, whatever the program
//   is written in, with no extra process and no pid race. The startup script
//   then checks that its parent is still the wrapper, which closes the window
//   in which the wrapper died before prctl() ran.
// - 'watchdog' (no usable setpriv on PATH): a tiny `/bin/sh` in its own
//   session reads a pipe only the wrapper writes; EOF without the wrapper's
//   "exit" line means the wrapper is gone, and it sends SIG to the program's
//   pid. Costs one sh process per exec.
//
// Why not a pipe the program inherits: the program would have to watch it,
// and programs written for systemd do not.
//
// Limits: a program that ignores SIG keeps running (nobody is left to send
// SIGKILL after the stop timeout). PR_SET_PDEATHSIG is cleared when the
// program execs a set-uid, set-gid or file-capability binary, and it fires
// when the spawning *thread* exits (here the main thread of `fdbroker exec`,
// so: when the process does); as each thread of a dying multi-threaded
// parent hands the child on to the next, it can arrive more than once. The watchdog
// is ended by anything that ends every process of the unit (which ends the
// program too), and could signal a reused pid if the program exited at the
// very moment the wrapper died.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { resolveProgram } from './program';

export type OrphanGuardKind = 'pdeathsig' | 'watchdog';

/** exec: how long the one-time `setpriv --pdeathsig` probe may take. */
export const SETPRIV_PROBE_TIMEOUT_MS = 5000;

const SH = '/bin/sh';
// $0: the signal, $1: the program's pid. A line from the wrapper = it exits
// normally: nothing to do. EOF = the wrapper died.
const WATCHDOG_SCRIPT = 'read line || kill -s "$0" "$1"';
const WATCHDOG_RELEASE = 'exit\n';

const probed = new Map<string, boolean>();

/** The path of a setpriv on `envPath` that supports --pdeathsig, or undefined. */
export function setprivWithPdeathsig(envPath: string | undefined): string | undefined {
  let setpriv: string;
  try {
    setpriv = resolveProgram('setpriv', envPath);
  } catch {
    return undefined;
  }
  let ok = probed.get(setpriv);
  if (ok === undefined) {
    const r = spawnSync(setpriv, ['--pdeathsig', 'TERM', SH, '-c', ':'], { stdio: 'ignore', timeout: SETPRIV_PROBE_TIMEOUT_MS });
    ok = r.status === 0;
    probed.set(setpriv, ok);
  }
  return ok ? setpriv : undefined;
}

export interface GuardedCommand {
  kind: OrphanGuardKind;
  file: string;
  args: string[];
}

/** `file args` to spawn instead of `command args`, so that `signal` reaches it if this process dies. */
export function guardedCommand(command: string, args: string[], signal: NodeJS.Signals, envPath: string | undefined): GuardedCommand {
  const setpriv = setprivWithPdeathsig(envPath);
  if (setpriv) return { kind: 'pdeathsig', file: setpriv, args: ['--pdeathsig', signal, command, ...args] };
  return { kind: 'watchdog', file: command, args };
}

export interface Watchdog {
  /** The wrapper ends normally: the watchdog exits without signalling. Idempotent. */
  release(): void;
}

/** Starts the watchdog for `pid` (only for kind 'watchdog'). */
export function startWatchdog(pid: number, signal: NodeJS.Signals): Watchdog {
  // Its own session: a signal to the wrapper's process group does not end it.
  // `kill -s` in dash takes TERM, not SIGTERM.
  const child: ChildProcess = spawn(SH, ['-c', WATCHDOG_SCRIPT, signal.replace(/^SIG/, ''), String(pid)], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  child.on('error', () => { /* no watchdog: nothing more can be done */ });
  child.stdin!.on('error', () => { /* it exited first */ });
  child.unref();
  let released = false;
  return {
    release: () => {
      if (released) return;
      released = true;
      child.stdin!.end(WATCHDOG_RELEASE);
    },
  };
}
