// Errno values by name, as the native layer returns them (negative), taken
// from Node's own table for this platform instead of x86 literals.
import { constants } from 'node:os';

const E = constants.errno;

export const EPERM = -E.EPERM;
export const ENOENT = -E.ENOENT;
export const EINTR = -E.EINTR;
export const EAGAIN = -E.EAGAIN;
export const EWOULDBLOCK = -E.EWOULDBLOCK;
export const EADDRINUSE = -E.EADDRINUSE;
export const ECONNREFUSED = -E.ECONNREFUSED;
export const ECONNRESET = -E.ECONNRESET;
export const ENOPROTOOPT = -E.ENOPROTOOPT;
export const EPROTOTYPE = -E.EPROTOTYPE;

/**
 * sendmsg with SCM_RIGHTS: the sender's user has more fds in flight than its
 * RLIMIT_NOFILE. Missing from Node's table: the kernel's generic value (MIPS has its own).
 */
export const ETOOMANYREFS = -((E as Record<string, number | undefined>).ETOOMANYREFS ?? (process.arch.startsWith('mips') ? 144 : 109));

/** Errnos Node's table does not name, by value (positive). */
export const EXTRA_ERRNO_NAMES: ReadonlyMap<number, string> = new Map([[-ETOOMANYREFS, 'ETOOMANYREFS']]);

/** Longest Unix socket path: sun_path is 108 bytes including the NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;
