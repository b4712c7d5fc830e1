// fd headroom: an app must not adopt a listener when it is close to its
// RLIMIT_NOFILE. Under EMFILE, libuv accepts a pending connection and closes
// it at once to make progress; on a shared listener that resets a connection
// a healthy generation could have served.
import * as fs from 'node:fs';
import { FdbrokerError } from '../protocol/errors';

let cachedLimit: number | undefined;

/**
 * The soft RLIMIT_NOFILE of this process, or Infinity when it cannot be read.
 * Read once: Node has no setrlimit(), so it changes only through an addon.
 */
export function softFdLimit(): number {
  if (cachedLimit === undefined) cachedLimit = readSoftFdLimit();
  return cachedLimit;
}

function readSoftFdLimit(): number {
  try {
    const m = fs.readFileSync('/proc/self/limits', 'utf8').match(/^Max open files\s+(\S+)/m);
    if (!m || m[1] === 'unlimited') return Infinity;
    return Number(m[1]);
  } catch {
    return Infinity;
  }
}

export function openFdCount(): number {
  try {
    return fs.readdirSync('/proc/self/fd').length - 1; // minus the fd readdir itself used
  } catch {
    return 0;
  }
}

/** Throws ERR_FDBROKER_FD_HEADROOM unless `headroom` + `incoming` fds are free below the soft limit. */
export function checkFdHeadroom(headroom: number, incoming = 1): void {
  if (headroom <= 0) return;
  const limit = softFdLimit();
  if (!Number.isFinite(limit)) return;
  const open = openFdCount();
  if (open + incoming + headroom > limit) {
    throw new FdbrokerError('ERR_FDBROKER_FD_HEADROOM',
      `${open} of ${limit} fds are open: adopting needs ${incoming + headroom} free, or a full fd table would make Node reset connections on the shared listener (raise \`ulimit -n\`, or close fds)`);
  }
}
