// A process's pidfd id, as systemd's LISTEN_PIDFDID carries it: the inode
// number of a pidfd for that process. Only meaningful where the kernel gives
// pidfds their own inodes (pidfs, Linux 6.9+); on older kernels every pidfd
// shares one anonymous inode and there is no id to give.
import * as fs from 'node:fs';
import { native } from './binding';

/** The inode of a fresh pidfd for `pid` as a decimal string, or undefined (no pidfd_open, or it failed). */
function inodeOf(pid: number): string | undefined {
  const fd = native().pidfdOpen(pid);
  if (fd < 0) return undefined;
  try {
    return fs.fstatSync(fd, { bigint: true }).ino.toString();
  } finally {
    fs.closeSync(fd);
  }
}

let uniqueInodes: boolean | undefined;

/** Whether pidfds of different processes have different inodes here (checked once: this process's against its parent's). */
export function pidfdsHaveOwnInodes(): boolean {
  if (uniqueInodes !== undefined) return uniqueInodes;
  const mine = inodeOf(process.pid);
  const parent = inodeOf(process.ppid);
  uniqueInodes = mine !== undefined && parent !== undefined && mine !== parent;
  return uniqueInodes;
}

/**
 * LISTEN_PIDFDID for `pid`: the inode of a pidfd for it, or undefined where
 * pidfds have no inodes of their own (or pidfd_open fails: Linux < 5.3). The
 * caller must make sure `pid` is still the process it means (e.g. its own
 * child, not yet reaped).
 */
export function pidfdInode(pid: number): string | undefined {
  if (!pidfdsHaveOwnInodes()) return undefined;
  return inodeOf(pid);
}
