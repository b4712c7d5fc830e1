// A listener's accept queue, read from the kernel: how many connections wait
// for accept() and the backlog actually in force (not the one asked for: a
// gunicorn that calls listen(2048) on the shared socket changes it, and
// net.core.somaxconn caps it). What stall detection and metrics read.
import { native } from '../native/binding';
import { systemError, type SystemError } from '../protocol/errors';

export interface AcceptQueue {
  /** Connections the kernel completed that nobody has accept()ed yet. */
  queued: number;
  /** The backlog in force: the kernel queues at most backlog + 1 connections. */
  backlog: number;
}

/** Which kernel interface answered, by the native layer's source number. */
const SYSCALLS = ['getsockopt', 'getsockopt', 'sock_diag'] as const;

const EINVAL = -22;
const EOPNOTSUPP = -95;

function queueError(negErrno: number, source: number, fd: number): SystemError {
  const err = systemError(negErrno, SYSCALLS[source] ?? 'getsockopt');
  if (negErrno === EINVAL && source === 0) err.message = `${err.syscall} ${err.code}: fd ${fd} is not a listening socket`;
  else if (negErrno === EOPNOTSUPP) err.message = `${err.syscall} ${err.code}: fd ${fd} is a listening socket that is neither tcp nor unix`;
  else err.message += ` (accept queue of fd ${fd})`;
  return err;
}

/**
 * The accept queue of the listening socket `fd` (tcp or unix, stream or
 * seqpacket). Throws a system error: EINVAL when `fd` is a socket that does
 * not listen, ENOTSOCK, EBADF, EOPNOTSUPP for a listener of another family.
 * The fd stays the caller's; nothing is kept open.
 */
export function acceptQueue(fd: number): AcceptQueue {
  const [r] = acceptQueues([fd]);
  if (r instanceof Error) throw r;
  return r!;
}

/**
 * acceptQueue() for many fds in one native call (at most one netlink socket,
 * opened and closed inside it). A failed fd gives its system error in place.
 */
export function acceptQueues(fds: number[]): Array<AcceptQueue | SystemError> {
  const raw = native().acceptQueues(fds);
  const out: Array<AcceptQueue | SystemError> = [];
  for (let i = 0; i < fds.length; i++) {
    const status = raw[i * 4]!;
    const source = raw[i * 4 + 3]!;
    out.push(status < 0 ? queueError(status, source, fds[i]!) : { queued: raw[i * 4 + 1]!, backlog: raw[i * 4 + 2]! });
  }
  return out;
}
