// Errors: Node-shaped system errors for failed syscalls, and FdbrokerError with
// a stable ERR_FDBROKER_* code for everything fdbroker itself decides. Tests and
// callers branch on `code`, never on message text.
import * as os from 'node:os';
import * as util from 'node:util';
import { EXTRA_ERRNO_NAMES } from '../native/errno';

export const ERROR_CODES = [
  'ERR_FDBROKER_UNSUPPORTED_PLATFORM',
  'ERR_FDBROKER_UNSUPPORTED_RUNTIME',
  'ERR_FDBROKER_NO_NATIVE_BINARY',
  'ERR_FDBROKER_NO_BROKER',
  'ERR_FDBROKER_NOT_A_BROKER',
  'ERR_FDBROKER_ACCESS_DENIED',
  'ERR_FDBROKER_BROKER_RUNNING',
  'ERR_FDBROKER_VERSION',
  'ERR_FDBROKER_PROTOCOL',
  'ERR_FDBROKER_TIMEOUT',
  'ERR_FDBROKER_CLOSED',
  'ERR_FDBROKER_UNKNOWN_LISTENER',
  'ERR_FDBROKER_BAD_LISTENER',
  'ERR_FDBROKER_TRUNCATED',
  'ERR_FDBROKER_TOO_MANY_FDS',
  'ERR_FDBROKER_MESSAGE_TOO_LARGE',
  'ERR_FDBROKER_INVALID_SPEC',
  'ERR_FDBROKER_INVALID_ARGUMENT',
  'ERR_FDBROKER_DUPLICATE_NAME',
  'ERR_FDBROKER_CLUSTER_WORKER',
  'ERR_FDBROKER_ALREADY_ATTACHED',
  'ERR_FDBROKER_SYSTEMD',
  'ERR_FDBROKER_OVERLOADED',
  'ERR_FDBROKER_UID_LIMIT',
  'ERR_FDBROKER_UNREAD_REPLY',
  'ERR_FDBROKER_NOT_PERMITTED',
  'ERR_FDBROKER_UNTRUSTED_BROKER',
  'ERR_FDBROKER_UPGRADE_IN_PROGRESS',
  'ERR_FDBROKER_TAKEN_OVER',
  'ERR_FDBROKER_READY_REFUSED',
  'ERR_FDBROKER_INSECURE_PATH',
  'ERR_FDBROKER_FD_HEADROOM',
  'ERR_FDBROKER_INTERNAL',
  'ERR_FDBROKER_INVALID_CONFIG',
  'ERR_FDBROKER_RELOAD_FAILED',
  'ERR_FDBROKER_NO_CONFIG',
  'ERR_FDBROKER_NOT_HOLDING',
  'ERR_FDBROKER_PAUSED',
  'ERR_FDBROKER_CANNOT_PAUSE',
] as const;

export type FdbrokerErrorCode = (typeof ERROR_CODES)[number];
/**
 * A code a newer broker may send that this client does not know: kept as
 * sent (`isErrorCode()` tells the two apart), never read as another code.
 */
export type UnknownErrorCode = `ERR_FDBROKER_${string}` & { readonly unknownToThisVersion?: true };

/** What a broker's error reply may carry: a known code, or an ERR_FDBROKER_* one from a newer version. */
export function isBrokerErrorCode(code: unknown): code is FdbrokerErrorCode | UnknownErrorCode {
  return typeof code === 'string' && code.length <= MAX_CODE_LENGTH && /^ERR_FDBROKER_[A-Z0-9_]+$/.test(code);
}
/** Longest error code accepted from a broker. */
const MAX_CODE_LENGTH = 64;

export class FdbrokerError extends Error {
  readonly code: FdbrokerErrorCode | UnknownErrorCode;
  constructor(code: FdbrokerErrorCode | UnknownErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FdbrokerError';
    this.code = code;
  }
}

export function isErrorCode(code: unknown): code is FdbrokerErrorCode {
  return typeof code === 'string' && (ERROR_CODES as readonly string[]).includes(code);
}

export interface SystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

/** Builds an error shaped like Node's own: message "connect ECONNREFUSED /run/app.sock". */
export function systemError(negErrno: number, syscall: string, path?: string): SystemError {
  let code: string;
  try {
    code = util.getSystemErrorName(negErrno);
  } catch {
    code = `Unknown system error ${negErrno}`;
  }
  // libuv's table lacks some errnos the kernel gives us (ETOOMANYREFS from sendmsg with SCM_RIGHTS): name them from the OS's.
  if (code.startsWith('Unknown system error')) code = errnoName(-negErrno) ?? code;
  const err = new Error(`${syscall} ${code}${path ? ` ${path}` : ''}`) as SystemError;
  err.code = code;
  err.errno = negErrno;
  err.syscall = syscall;
  if (path !== undefined) err.path = path;
  Error.captureStackTrace(err, systemError);
  return err;
}

let errnoNames: Map<number, string> | undefined;
function errnoName(errno: number): string | undefined {
  errnoNames ??= new Map([...Object.entries(os.constants.errno).map(([name, n]) => [n, name] as [number, string]), ...EXTRA_ERRNO_NAMES]);
  return errnoNames.get(errno);
}

/** Returns `r` when it is a result, throws a system error when it is a negative errno. */
export function check<T>(r: T | number, syscall: string, path?: string): T {
  if (typeof r === 'number' && r < 0) throw systemError(r, syscall, path);
  return r as T;
}
