// The Acceptor owns the broker's control socket: a listening AF_UNIX
// SOCK_SEQPACKET socket bound to a path. It creates the path without a window
// of wider permissions, refuses to take over a path a live broker answers on,
// replaces a stale one, and removes the path on close only if it is still ours.
import * as fs from 'node:fs';
import * as pathModule from 'node:path';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { native, type NativePoller } from './_binding';
import { FdbrokerError, systemError, type SystemError } from './errors';
import { probeUnix } from './sockets';
import { isLockAtPath, LOCK_ATTEMPTS, releaseFailedLock } from './lockfile';
import { ACCEPT_RETRY_MS, CONTROL_BACKLOG, DEFAULT_CONTROL_MODE } from './constants';

const EAGAIN = -11;
const EINTR = -4;

export interface AcceptorOptions {
  /** Mode of the socket path (default 0600). */
  mode?: number;
  /** Backlog of the control socket. */
  backlog?: number;
  /** Group of the socket file. */
  group?: number;
}

export interface AcceptorEvents {
  /** A new connection; the listener owns `fd`. */
  connection: [fd: number];
  /** A non-fatal accept error (e.g. EMFILE): accepting resumes after ACCEPT_RETRY_MS. */
  warning: [err: Error];
}

export class Acceptor extends EventEmitter<AcceptorEvents> {
  readonly path: string;
  readonly fd: number;
  private readonly poller: NativePoller;
  private readonly ino: number;
  private readonly dev: number;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;

  private constructor(path: string, fd: number, st: fs.Stats, private lockFd: number) {
    super();
    this.path = path;
    this.fd = fd;
    this.ino = st.ino;
    this.dev = st.dev;
    this.poller = new (native().Poller)(fd, (status) => this.onReadable(status));
  }

  /**
   * Binds and listens on `path`. A path that a live process answers on is never
   * taken over (ERR_FDBROKER_BROKER_RUNNING); a stale socket file is replaced.
   * Two brokers starting at once on one path are serialized by an flock on
   * `<path>.lock`, held for the broker's life: exactly one of them wins.
   *
   * With `takeover`, the caller is the successor the live broker at `path`
   * handed its listeners to: the new socket is bound at a temporary name and
   * rename(2)d over `path`, so the path always answers, first the old broker,
   * then this one. The lock is not taken then (the predecessor holds it until
   * it exits).
   */
  static listen(path: string, options: AcceptorOptions & { takeover?: boolean; lockFd?: number } = {}): Acceptor {
    const n = native();
    const c = n.constants;
    const mode = options.mode ?? DEFAULT_CONTROL_MODE;
    // The lock may have been taken by the caller already (the broker takes it
    // before binding its listeners); either way the acceptor owns it now.
    const lockFd = options.lockFd ?? (options.takeover ? -1 : lockPath(path));
    const fd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
    if (fd < 0) {
      if (lockFd >= 0) releaseFailedLock(path, lockFd);
      throw systemError(fd, 'socket');
    }
    const bindPath = options.takeover ? temporaryPath(path) : path;
    try {
      // Refuse SCM_RIGHTS on the listening socket too (Linux >= 6.16): a
      // connection inherits it at connect(), so a client that sends fds before
      // the broker has accepted (and set it per connection) already gets EPERM.
      // Best effort: older kernels answer ENOPROTOOPT, and the broker still
      // closes whatever fds arrive.
      n.setsockoptInt(fd, c.SOL_SOCKET, c.SO_PASSRIGHTS, 0);
      // Set the mode on the socket inode before bind(), so the path is created
      // with at most `mode` (then narrowed further by the umask).
      // With a group to set, keep group bits off until the group is right.
      let r = n.fchmod(fd, options.group === undefined ? mode : mode & 0o700);
      if (r < 0) throw systemError(r, 'fchmod');
      r = n.bind(fd, { family: 'unix', path: bindPath });
      if (r === -98 /* EADDRINUSE */ && !options.takeover) {
        replaceIfStale(path);
        r = n.bind(fd, { family: 'unix', path: bindPath });
      }
      if (r < 0) throw systemError(r, 'bind', bindPath);
      if (options.group !== undefined) fs.chownSync(bindPath, -1, options.group);
      fs.chmodSync(bindPath, mode);
      r = n.listen(fd, options.backlog ?? CONTROL_BACKLOG);
      if (r < 0) throw systemError(r, 'listen', bindPath);
      if (options.takeover) fs.renameSync(bindPath, path);
      const st = fs.statSync(path);
      const acceptor = new Acceptor(path, fd, st, lockFd);
      acceptor.poller.start(c.UV_READABLE);
      return acceptor;
    } catch (err) {
      n.close(fd);
      if (options.takeover) fs.rmSync(bindPath, { force: true });
      if (lockFd >= 0) releaseFailedLock(path, lockFd);
      throw err;
    }
  }

  /** Moves the path's lock (if this acceptor holds it) to `next`, which replaces this one. */
  passLockTo(next: Acceptor): void {
    if (next.lockFd < 0) {
      next.lockFd = this.lockFd;
      this.lockFd = -1;
    }
  }

  /** Whether `path` still names this socket (a successor may have renamed its own over it). */
  ownsPath(): boolean {
    try {
      const st = fs.statSync(this.path);
      return st.ino === this.ino && st.dev === this.dev;
    } catch {
      return false;
    }
  }

  /** Stops accepting, closes the socket and unlinks the path if it is still this socket's. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.poller.close();
    try {
      if (this.ownsPath()) fs.unlinkSync(this.path);
    } catch {
      // Already gone, or replaced by a successor: leave it.
    }
    native().close(this.fd);
    // The lock file stays: unlinking it while others may hold it open would
    // let two brokers lock two different files.
    if (this.lockFd >= 0) fs.closeSync(this.lockFd);
  }

  private onReadable(status: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.emit('warning', systemError(status, 'uv_poll'));
      return;
    }
    const n = native();
    for (;;) {
      const cfd = n.accept(this.fd);
      if (cfd >= 0) {
        this.emit('connection', cfd);
        if (this.closed) return;
        continue;
      }
      if (cfd === EAGAIN || cfd === EINTR) return;
      const err = systemError(cfd, 'accept', this.path);
      // EMFILE/ENFILE/ENOBUFS/ENOMEM: leave the connection queued (a Unix socket
      // does not time out) and try again shortly instead of spinning.
      this.poller.stop();
      this.retryTimer = setTimeout(() => {
        if (!this.closed) this.poller.start(n.constants.UV_READABLE);
      }, ACCEPT_RETRY_MS);
      this.emit('warning', err);
      return;
    }
  }
}

/** Takes an exclusive flock on `<path>.lock`; throws ERR_FDBROKER_BROKER_RUNNING if another process holds it. */
export function lockPath(path: string): number {
  const n = native();
  const lock = `${path}.lock`;
  for (let attempt = 1; ; attempt++) {
    // fs.openSync opens with O_CLOEXEC: a child never inherits the lock.
    const fd = fs.openSync(lock, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
    const r = n.flock(fd, n.constants.LOCK_EX | n.constants.LOCK_NB);
    if (r < 0) {
      fs.closeSync(fd);
      if (r === -11 /* EWOULDBLOCK */) {
        throw new FdbrokerError('ERR_FDBROKER_BROKER_RUNNING',
          `another broker holds ${lock}: it is running or starting on ${path}; stop it first, or choose another path`);
      }
      throw systemError(r, 'flock', lock);
    }
    // A start that failed removes the file it held (releaseFailedLock): a lock
    // on a file no longer at the path locks nothing, so open it again.
    if (isLockAtPath(fd, lock)) return fd;
    fs.closeSync(fd);
    if (attempt >= LOCK_ATTEMPTS) {
      throw new FdbrokerError('ERR_FDBROKER_BROKER_RUNNING',
        `${lock} was replaced ${LOCK_ATTEMPTS} times while this broker locked it: other brokers keep starting (and failing) on ${path}; try again`);
    }
  }
}

/** Longest Unix socket path (sun_path minus its NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

/** A unique sibling of `path`, no longer than `path` allows (sun_path is 108 bytes). */
function temporaryPath(path: string): string {
  const dir = pathModule.dirname(path);
  const name = `.${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
  const tmp = pathModule.join(dir, name);
  if (Buffer.byteLength(tmp) > MAX_SOCKET_PATH_BYTES) {
    throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT',
      `${dir} is too long to take over ${path}: a sibling socket name must fit in ${MAX_SOCKET_PATH_BYTES} bytes; use a shorter directory`);
  }
  return tmp;
}

/** Unlinks `path` if no one answers on it; throws if a broker (or anything else) does. */
function replaceIfStale(path: string): void {
  const n = native();
  const c = n.constants;
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch {
    return; // Vanished meanwhile: bind again.
  }
  if (!st.isSocket()) {
    throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT',
      `${path} exists and is not a socket; remove it or choose another path`);
  }
  const r = probeUnix(path, c.SOCK_SEQPACKET);
  // ECONNREFUSED: nobody listens, the file is stale. EAGAIN: a live listener
  // with a full queue. EPROTOTYPE: someone listens with another socket type.
  if (r === -111 /* ECONNREFUSED */) {
    fs.unlinkSync(path);
    return;
  }
  const cause: SystemError | undefined = r < 0 ? systemError(r, 'connect', path) : undefined;
  throw new FdbrokerError('ERR_FDBROKER_BROKER_RUNNING',
    `a live process already answers on ${path}; stop it first, or choose another path`, { cause });
}
