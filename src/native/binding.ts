// The one typed door to the native addon. Loaded through node-gyp-build so that
// prebuilt binaries under prebuilds/ are used when present and build/ otherwise.
import * as path from 'node:path';
import { FdbrokerError } from '../protocol/errors';

export interface SockAddrInet { family: 'inet' | 'inet6'; address: string; port: number }
export interface SockAddrUnix { family: 'unix'; path: string }
export type SockAddr = SockAddrInet | SockAddrUnix;
export type SockName = SockAddr | { family: 'other' };

export interface RecvResult {
  /** Payload bytes written into the buffer. 0 with no fds means end of stream. */
  bytes: number;
  /** Received fds, close-on-exec, now owned by the caller. Empty when truncated. */
  fds: number[];
  /** The kernel cut the payload or the control data; any fds that came were closed. */
  truncated: boolean;
  ctrunc: boolean;
  /** A control message other than SCM_RIGHTS arrived. */
  foreign: boolean;
  /** How many fds were closed because of truncation. */
  closed: number;
}

export interface NativePoller {
  start(events: number): number;
  stop(): number;
  ref(): void;
  unref(): void;
  close(): void;
}

export interface NativeConstants {
  AF_UNIX: number; AF_INET: number; AF_INET6: number;
  SOCK_STREAM: number; SOCK_DGRAM: number; SOCK_SEQPACKET: number;
  SOL_SOCKET: number; SO_TYPE: number; SO_DOMAIN: number; SO_ACCEPTCONN: number;
  SO_REUSEADDR: number; SO_REUSEPORT: number; SO_SNDBUF: number; SO_RCVBUF: number;
  SO_PASSRIGHTS: number; SCM_MAX_FD: number; LOCK_EX: number; LOCK_NB: number;
  UV_READABLE: number; UV_WRITABLE: number; UV_DISCONNECT: number;
}

/** Every function returns its result or a negative errno; none throws for a failed syscall. */
export interface Native {
  socket(domain: number, type: number): number;
  bind(fd: number, addr: SockAddr): number;
  connect(fd: number, addr: SockAddrUnix): number;
  listen(fd: number, backlog: number): number;
  accept(fd: number): number;
  /**
   * Accepts up to `max` connections: 4 ints each, [fd, pid, uid, gid] (pid
   * -errno and uid, gid -1 when SO_PEERCRED failed), then 0 when `max` was
   * reached or the -errno that ended the batch (-EAGAIN: none pending).
   */
  acceptBatch(fd: number, max: number): Int32Array;
  /** Sends `payload` to each fd (best effort, never blocks), then closes it: the fds are consumed. */
  replyAndClose(fds: Int32Array, payload: Buffer): void;
  close(fd: number): number;
  setsockoptInt(fd: number, level: number, name: number, value: number): number;
  getsockoptInt(fd: number, level: number, name: number): { value: number } | number;
  sockname(fd: number): SockName | number;
  peercred(fd: number): { pid: number; uid: number; gid: number } | number;
  /** 5 ints per fd: [0 | -errno, SO_TYPE, address family, SO_ACCEPTCONN, port]. */
  inspect(fds: number[]): Int32Array;
  setCloexec(fd: number, on: boolean): number;
  dup(fd: number): number;
  flock(fd: number, operation: number): number;
  /** Bytes sent on this socket that the peer has not read yet (SIOCOUTQ), or -errno. */
  outq(fd: number): number;
  /**
   * Listening sockets' accept queues: 4 ints per fd, [0 | -errno, queued,
   * backlog, source (0 none, 1 TCP_INFO, 2 sock_diag)]: the connections
   * waiting for accept() and the backlog in force. -EINVAL: not listening;
   * -ENOTSOCK; -EBADF (also for what is not an fd); -EOPNOTSUPP: another family.
   */
  acceptQueues(fds: number[]): Int32Array;
  /**
   * waitpid(pid, WNOHANG): 0 while `pid` runs, its end once reaped (code -1
   * when signal `signal` ended it), or -errno (-ECHILD: not our child). Only
   * for pids libuv did not spawn (orphans reparented to PID 1): libuv reaps its own.
   */
  waitpid(pid: number): { pid: number; code: number; signal: number } | number;
  /** pidfd_open(pid, 0): a close-on-exec pidfd, or -errno (-ESRCH: no such process). */
  pidfdOpen(pid: number): number;
  /**
   * pidfd_getfd(pidfd, fd, 0): a close-on-exec duplicate of the process's fd
   * (the same open file description), or -errno (-EPERM: ptrace rules refuse).
   */
  pidfdGetfd(pidfd: number, fd: number): number;
  sendmsg(fd: number, payload: Buffer, fds: number[]): number;
  recvmsg(fd: number, buffer: Buffer, maxFds: number): RecvResult | number;
  Poller: new (fd: number, callback: (status: number, events: number) => void) => NativePoller;
  constants: NativeConstants;
}

let cached: Native | undefined;

/** The native addon; throws ERR_FDBROKER_UNSUPPORTED_PLATFORM off Linux. */
export function native(): Native {
  if (cached) return cached;
  if (process.platform !== 'linux') {
    throw new FdbrokerError('ERR_FDBROKER_UNSUPPORTED_PLATFORM',
      `fdbroker needs Linux (SCM_RIGHTS, SO_PEERCRED, SOCK_SEQPACKET); this is ${process.platform}`);
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const load = require('node-gyp-build') as (dir: string) => unknown;
  try {
    cached = load(path.join(__dirname, '..', '..')) as Native;
  } catch (err) {
    // node-gyp-build found neither a build nor a fitting prebuild (musl, another
    // CPU, and the install script did not build one or was skipped).
    if (!(err instanceof Error && err.message.startsWith('No native build was found'))) throw err;
    throw new FdbrokerError('ERR_FDBROKER_NO_NATIVE_BINARY',
      `no fdbroker native addon fits this machine (${err.message.split('\n')[0]!.replace('No native build was found for ', '')}): ` +
      'build it with `npm rebuild fdbroker` (needs g++, make and python3; if npm skipped install scripts, first `npm install-scripts approve fdbroker`)',
      { cause: err });
  }
  return cached;
}
