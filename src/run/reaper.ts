// Zombie reaping for `fdbroker run` as a container's main process (PID 1):
// orphans (a grandchild whose parent exited) are reparented to PID 1, and
// nobody else will wait() for them. libuv waits only for the children it
// spawned, by pid, and would lose an exit status reaped behind its back; so
// the reaper never calls waitpid(-1): it lists this process's children in
// the zombie state (/proc/<pid>/stat: state Z, ppid = us) and reaps only those
// `isOwn` does not claim (the processes run started itself).
//
// Runs on SIGCHLD (libuv shares the signal) and every REAP_INTERVAL_MS as a
// safety net. Library code: it emits, it never prints.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import { native } from '../native/binding';

/** A reaper looks for zombies at least this often, besides each SIGCHLD. */
export const REAP_INTERVAL_MS = 1_000;

export interface ReaperEvents {
  /** An orphan was reaped: its pid, exit code (-1 if a signal ended it) and signal number (0 if none). */
  reaped: [pid: number, code: number, signal: number];
}

/** Zombie children of `parent`, read from /proc. */
export function zombieChildren(parent: number): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
    } catch {
      continue; // exited (and reaped) meanwhile
    }
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' && Number(rest[1]) === parent) out.push(Number(e));
  }
  return out;
}

export class Reaper extends EventEmitter<ReaperEvents> {
  private timer: NodeJS.Timeout | undefined;
  private readonly onChld = () => this.reap();

  /** `isOwn(pid)`: a child this process spawned through child_process (libuv reaps it). */
  constructor(private readonly isOwn: (pid: number) => boolean) {
    super();
  }

  start(): this {
    process.on('SIGCHLD', this.onChld);
    this.timer = setInterval(() => this.reap(), REAP_INTERVAL_MS);
    this.timer.unref();
    return this;
  }

  stop(): void {
    process.off('SIGCHLD', this.onChld);
    clearInterval(this.timer);
  }

  /** Reaps every zombie child that is not our own; returns how many. */
  reap(): number {
    let n = 0;
    for (const pid of zombieChildren(process.pid)) {
      if (this.isOwn(pid)) continue;
      const r = native().waitpid(pid);
      if (typeof r === 'object') {
        n++;
        this.emit('reaped', r.pid, r.code, r.signal);
      }
    }
    return n;
  }
}
