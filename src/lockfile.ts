// The `<path>.lock` file that serializes brokers starting on one path
// (taken by lockPath() in acceptor.ts): the checks that make removing it after
// a failed start safe.
import * as fs from 'node:fs';

/**
 * How many times lockPath() reopens `<path>.lock` when the file it locked was
 * removed meanwhile (by a start that failed); each removal needs a start
 * that held the lock, so more than a few in a row means something else is
 * deleting the file.
 */
export const LOCK_ATTEMPTS = 5;

/** Whether `fd` is still the file at `lock` (not unlinked or replaced since it was opened). */
export function isLockAtPath(fd: number, lock: string): boolean {
  const held = fs.fstatSync(fd);
  let now: fs.Stats;
  try {
    now = fs.lstatSync(lock);
  } catch {
    return false;
  }
  return now.ino === held.ino && now.dev === held.dev;
}

/**
 * Undoes lockPath() for a broker that failed to start: removes `<path>.lock`
 * while still holding it, then closes `fd`. A process that opened the old
 * file and locks it after this finds it no longer at the path
 * (isLockAtPath) and takes the lock on the new one, so two brokers never
 * hold two different lock files.
 */
export function releaseFailedLock(path: string, fd: number): void {
  const lock = `${path}.lock`;
  if (isLockAtPath(fd, lock)) fs.rmSync(lock, { force: true });
  fs.closeSync(fd);
}
