// Which process tree a generation belongs to, for `fdbroker wait --pid`: a
// deploy script knows the pid it started, but when that is a wrapper
// (`npx fdbroker exec ...`, `sh -c`, `npm start`) the process that joins the
// broker is a descendant of it. Linux only: parent pids from /proc/<pid>/stat.
import * as fs from 'node:fs';

/** Longest parent chain followed (a guard against a cycle from pid reuse). */
const MAX_DEPTH = 64;

/** The parent pid of `pid`, or undefined once it is gone. */
export function parentPid(pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(rest[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

/**
 * Whether `pid` is `ancestor` or one of its descendants, following parent
 * pids. A process whose parent exited was reparented (to init or a
 * subreaper) and no longer counts: start wrappers that stay (exec, npm) or
 * exec into the program (sh -c 'exec ...').
 */
export function inTree(pid: number, ancestor: number, parentOf: (pid: number) => number | undefined = parentPid): boolean {
  let p: number | undefined = pid;
  for (let i = 0; i < MAX_DEPTH && p !== undefined && p > 0; i++) {
    if (p === ancestor) return true;
    if (p === 1) return false;
    p = parentOf(p);
  }
  return false;
}
