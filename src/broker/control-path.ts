// Where the broker's control socket lives, and the rules for its path: the
// directory's safety checks, one broker per path (the lock), a stale socket
// replaced and a live one never, a successor's rename over the path.
//
// Safety checks on where a control socket is created. Whoever can replace the
// socket file can impersonate the broker to every app; whoever can write the
// directory can do that. So the directory must be reached without symlinks,
// be owned by the broker's user or root, and be writable by no one else
// unless it is sticky (like /tmp: others may add files but not remove or
// rename ours, and a file they pre-create at our path is never connected to
// as a broker: it is refused or, if it is a stale socket, replaced).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../native/binding';
import { EAGAIN, ECONNREFUSED, EWOULDBLOCK, MAX_SOCKET_PATH_BYTES } from '../native/errno';
import { FdbrokerError, systemError, type SystemError } from '../protocol/errors';
import { Acceptor, type PathLock } from '../transport/acceptor';
import { CONTROL_BACKLOG } from '../transport/defaults';
import { probeUnix } from '../transport/socket-info';
import { DEFAULT_CONTROL_MODE } from './defaults';
import { bindSocketFile, type SocketFileId } from './socket-file';

const S_ISVTX = 0o1000;

/** Throws ERR_FDBROKER_INSECURE_PATH with the reason when the directory of `controlPath` is unsafe. */
export function checkControlDirectory(controlPath: string, uid: number = process.getuid?.() ?? 0): void {
  checkSocketDirectory(controlPath, 'the control socket', uid);
}

/**
 * The same check for any socket file the broker creates (`what` names it:
 * "the control socket", 'listener "web"'): a unix listener's path is
 * impersonated or hijacked as easily as the control socket's.
 */
export function checkSocketDirectory(socketPath: string, what: string, uid: number = process.getuid?.() ?? 0): void {
  const dir = path.dirname(path.resolve(socketPath));
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new FdbrokerError('ERR_FDBROKER_INSECURE_PATH',
        `the directory ${dir} does not exist: create it first (mkdir -m 0700 ${dir}), or choose a path in an existing directory for ${what}`, { cause: err });
    }
    throw new FdbrokerError('ERR_FDBROKER_INSECURE_PATH', `cannot resolve ${dir}: ${(err as Error).message}`, { cause: err });
  }
  if (real !== dir) {
    throw new FdbrokerError('ERR_FDBROKER_INSECURE_PATH',
      `${dir} is reached through a symlink (it is ${real}); give the real path, or pass --insecure-dir`);
  }
  const st = fs.statSync(dir);
  if (st.uid !== uid && st.uid !== 0) {
    throw new FdbrokerError('ERR_FDBROKER_INSECURE_PATH',
      `${dir} belongs to uid ${st.uid}, not to this user (${uid}) or root: its owner could replace ${what}; pass --insecure-dir to accept that`);
  }
  if ((st.mode & 0o022) !== 0 && (st.mode & S_ISVTX) === 0) {
    throw new FdbrokerError('ERR_FDBROKER_INSECURE_PATH',
      `${dir} is writable by ${st.mode & 0o002 ? 'everyone' : 'its group'} and not sticky: others could replace ${what} or redirect its creation; use a private directory (e.g. /run/<app>), or pass --insecure-dir`);
  }
}

export interface ControlSocketOptions {
  /** Mode of the socket path (default 0600). */
  mode?: number;
  /** Backlog of the control socket's listen(2). */
  backlog?: number;
  /** Group of the socket file. */
  group?: number;
  /**
   * The caller is the successor the live broker at the path handed its
   * listeners to: rename(2) the new socket over the path (it already
   * listens), so the path always answers (first the old broker, then this one).
   * No lock is taken then: the predecessor holds it until it exits.
   */
  takeover?: boolean;
  /** The path's lock, already taken by the caller; the acceptor owns it from the call on. */
  lock?: PathLock;
}

/**
 * Binds and listens on `path` and returns its Acceptor. A path that a live
 * process answers on is never taken over (ERR_FDBROKER_BROKER_RUNNING); a
 * stale socket file is replaced. Two brokers starting at once on one path are
 * serialized by the path's lock (lockPath), held for the broker's life:
 * exactly one of them wins.
 */
export function bindControlSocket(path: string, options: ControlSocketOptions = {}): Acceptor {
  const n = native();
  const c = n.constants;
  const mode = options.mode ?? DEFAULT_CONTROL_MODE;
  let lock: PathLock | undefined = options.lock;
  try {
    checkSocketPathLength(path);
    lock ??= options.takeover ? undefined : lockPath(path);
  } catch (err) {
    lock?.release();
    throw err;
  }
  const fd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
  if (fd < 0) {
    lock?.release();
    throw systemError(fd, 'socket');
  }
  let id: SocketFileId;
  try {
    // Refuse SCM_RIGHTS on the listening socket too (Linux >= 6.16): a
    // connection inherits it at connect(), so a client that sends fds before
    // the broker has accepted (and set it per connection) already gets EPERM.
    // Best effort: older kernels answer ENOPROTOOPT, and the broker still
    // closes whatever fds arrive.
    n.setsockoptInt(fd, c.SOL_SOCKET, c.SO_PASSRIGHTS, 0);
    // The file gets its mode and group in a private directory before it
    // appears at the path (socket-file.ts), so no one can connect while it is
    // wider than `mode`, and no symlink at the path is ever followed. A
    // takeover's successor renames it over the path, so the path always
    // answers (first the old broker, then this one).
    id = bindSocketFile(fd, path, {
      mode, group: options.group, backlog: options.backlog ?? CONTROL_BACKLOG, replace: options.takeover === true,
      replaceStale: (p) => { replaceIfStale(p); return true; },
    });
  } catch (err) {
    n.close(fd);
    lock?.release();
    throw err;
  }
  return new Acceptor(path, fd, lock, id);
}

/** A control socket path must fit sun_path; say so before bind() answers ENAMETOOLONG. */
export function checkSocketPathLength(path: string): void {
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT',
      `the control socket path ${path} is ${bytes} bytes; Unix socket paths allow ${MAX_SOCKET_PATH_BYTES}: use a shorter path, e.g. under /run`);
  }
}

/**
 * Takes an exclusive flock on `<path>.lock` and returns it; throws
 * ERR_FDBROKER_BROKER_RUNNING if another process holds it. The lock file is
 * removed on release: safe because a locker checks, once it holds the lock,
 * that the file it locked is still the one at the path (else it retries), so
 * two brokers never hold locks on two different files.
 */
export function lockPath(path: string): PathLock {
  const n = native();
  const lock = `${path}.lock`;
  for (let attempt = 0; ; attempt++) {
    // fs.openSync opens with O_CLOEXEC: a child never inherits the lock.
    const fd = fs.openSync(lock, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
    const r = n.flock(fd, n.constants.LOCK_EX | n.constants.LOCK_NB);
    if (r < 0) {
      fs.closeSync(fd);
      if (r === EWOULDBLOCK) {
        throw new FdbrokerError('ERR_FDBROKER_BROKER_RUNNING',
          `another broker holds ${lock}: it is running or starting on ${path}; stop it first, or choose another path`);
      }
      throw systemError(r, 'flock', lock);
    }
    if (isLockAtPath(fd, lock)) {
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          // Unlink while still holding the lock, then close: see above.
          try { fs.unlinkSync(lock); } catch { /* already gone */ }
          fs.closeSync(fd);
        },
      };
    }
    fs.closeSync(fd);
    if (attempt >= LOCK_ATTEMPTS) {
      throw new FdbrokerError('ERR_FDBROKER_BROKER_RUNNING', `${lock} keeps being replaced: another broker is starting on ${path}`);
    }
  }
}

/** How often lockPath() retries when the lock file it locked was replaced under it. */
const LOCK_ATTEMPTS = 8;

/** Whether `fd` is still the file at `lock` (not unlinked or replaced since it was opened). */
export function isLockAtPath(fd: number, lock: string): boolean {
  const held = fs.fstatSync(fd);
  let now: fs.Stats;
  try {
    now = fs.lstatSync(lock);
  } catch {
    return false; // unlinked by its last holder meanwhile
  }
  return now.ino === held.ino && now.dev === held.dev;
}

/** Unlinks `path` if no one answers on it; throws if a broker (or anything else) does, or it is no socket. */
export function replaceIfStale(path: string): void {
  const c = native().constants;
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
  if (r === ECONNREFUSED) {
    fs.unlinkSync(path);
    return;
  }
  const cause: SystemError | undefined = r < 0 ? systemError(r, 'connect', path) : undefined;
  throw new FdbrokerError('ERR_FDBROKER_BROKER_RUNNING',
    `a live process already answers on ${path}; stop it first, or choose another path`, { cause });
}

/**
 * The pid of the process that listens at the control socket `path` (by a
 * connect and its SO_PEERCRED), or why there is none; undefined when a
 * listener answers with a full queue (EAGAIN: its pid cannot be learned). The connection is
 * closed at once: the listener sees a peer that hung up.
 */
export function listenerPidAt(path: string): number | string | undefined {
  const n = native();
  const c = n.constants;
  try {
    if (!fs.lstatSync(path).isSocket()) return 'is not a socket';
  } catch {
    return 'does not exist';
  }
  const fd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
  if (fd < 0) return `cannot be checked (${systemError(fd, 'socket').code})`;
  try {
    const r = n.connect(fd, { family: 'unix', path });
    if (r === EAGAIN) return undefined;
    if (r < 0) return `does not answer (${systemError(r, 'connect').code})`;
    const cred = n.peercred(fd);
    return typeof cred === 'number' ? `cannot be checked (${systemError(cred, 'getsockopt').code})` : cred.pid;
  } finally {
    n.close(fd);
  }
}
