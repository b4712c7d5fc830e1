// Binding a Unix socket at a path without ever acting on a name another user
// can change. bind(2) creates the socket file; its mode and group must then be
// set, and chmod/chown by name follow a symlink that another user renamed over
// the fresh socket in between (a root broker would chmod /etc/shadow).
//
// At the path itself (the socket's own address, as getsockname() and `ss`
// report it, must be the path): bind, then open the name with
// O_PATH|O_NOFOLLOW (a symlink put there is opened as itself, not followed),
// check with fstat that it is a socket of ours, and chmod/chown that inode
// through /proc/self/fd/N (as systemd's fchmod_opath does), which no rename can
// redirect. The socket inode's mode is set (fchmod) before bind, so the file
// is never wider than asked meanwhile.
//
// Replacing a path (a takeover's successor): bind in a fresh private
// directory (0700, ours) next to the target, reached only through its open
// fd, listen, then rename(2) into place: the path always answers.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../native/binding';
import { EADDRINUSE, ENOENT } from '../native/errno';
import { FdbrokerError, systemError } from '../protocol/errors';

/** What the socket file is (dev, ino): whoever unlinks it later checks the path still names it. */
export interface SocketFileId { dev: number; ino: number }

export interface BindSocketFileOptions {
  /** Mode of the socket file (else what the socket inode and the umask give). */
  mode?: number;
  /** Group of the socket file. */
  group?: number;
  /** listen(2) backlog, for a stream or seqpacket socket: it listens before it appears at the path, so the path never refuses. */
  backlog?: number;
  /**
   * true: rename(2) over whatever is at the path (a takeover's successor).
   * false: bind at the path, which fails if anything is there; `replaceStale`
   * is then asked whether it removed what was there (then bind is tried once more).
   */
  replace: boolean;
  /** Removes a stale file at the path and returns true, or returns false (or throws) to refuse. */
  replaceStale?: (path: string) => boolean;
}

/** Name of the socket inside the private directory. */
const INNER_NAME = 's';

/**
 * Binds `fd` (an AF_UNIX socket, not yet bound) at `target` as described
 * above, and listens on it if `backlog` is given. The fd stays the caller's.
 * Throws a system error (`bind` with EADDRINUSE when something other than a
 * stale socket is at `target`), or ERR_FDBROKER_INSECURE_PATH when what is at
 * the path after bind is not our socket.
 */
export function bindSocketFile(fd: number, target: string, options: BindSocketFileOptions): SocketFileId {
  const n = native();
  // The mode on the socket inode before bind: the file is created with at most
  // that (narrowed by the umask); with a group still to set, no group bits yet.
  // (Node's fchmod: on a socket before bind(), it sets the mode of the inode bind() creates.)
  if (options.mode !== undefined) fs.fchmodSync(fd, options.group === undefined ? options.mode : options.mode & 0o700);
  if (options.replace) return bindAndRename(fd, target, options);
  let r = n.bind(fd, { family: 'unix', path: target });
  if (r === EADDRINUSE && options.replaceStale?.(target)) r = n.bind(fd, { family: 'unix', path: target });
  if (r < 0) throw systemError(r, 'bind', target);
  let id: SocketFileId;
  try {
    id = setModeAndGroup(target, options);
    if (options.backlog !== undefined) {
      const l = n.listen(fd, options.backlog);
      if (l < 0) throw systemError(l, 'listen', target);
    }
  } catch (err) {
    // Only our own file: the name may be someone else's by now.
    try {
      const st = fs.lstatSync(target);
      if (st.isSocket() && st.uid === (process.geteuid?.() ?? 0)) fs.unlinkSync(target);
    } catch { /* gone */ }
    throw err;
  }
  return id;
}

/** O_PATH (Linux): a handle on the file itself, for fstat and /proc/self/fd/N; Node's fs.constants lacks it. */
const O_PATH = 0o10000000;

/** Sets the mode and group of the socket file just bound at `target`, on its inode (see above). */
function setModeAndGroup(target: string, options: BindSocketFileOptions): SocketFileId {
  let pfd: number;
  try {
    pfd = fs.openSync(target, O_PATH | fs.constants.O_NOFOLLOW);
  } catch (err) {
    throw new FdbrokerError('ERR_FDBROKER_INSECURE_PATH', `${target} vanished right after bind: another user can change ${path.dirname(target)}`, { cause: err });
  }
  try {
    const st = fs.fstatSync(pfd);
    const uid = process.geteuid?.() ?? 0;
    if (!st.isSocket() || st.uid !== uid) {
      throw new FdbrokerError('ERR_FDBROKER_INSECURE_PATH',
        `${target} was replaced right after bind (now ${st.isSymbolicLink() ? 'a symlink' : st.isSocket() ? 'a socket' : 'a file'} of uid ${st.uid}): `
        + `another user can change ${path.dirname(target)}; use a private directory`);
    }
    const via = `/proc/self/fd/${pfd}`;
    if (options.group !== undefined) fs.chownSync(via, -1, options.group);
    if (options.mode !== undefined) fs.chmodSync(via, options.mode);
    return { dev: st.dev, ino: st.ino };
  } finally {
    fs.closeSync(pfd);
  }
}

/** The takeover's way: bind and listen in a private directory, then rename over `target`. */
function bindAndRename(fd: number, target: string, options: BindSocketFileOptions): SocketFileId {
  const n = native();
  const dir = path.dirname(target);
  // mkdtemp creates the directory with mode 0700, owned by us.
  const privateDir = fs.mkdtempSync(path.join(dir, '.fdbroker-'));
  let dirFd: number | undefined;
  let inner: string | undefined;
  try {
    // O_NOFOLLOW: if another user swapped the new name for a symlink, refuse; the fd
    // then names whatever directory we opened, checked to be ours and private.
    dirFd = fs.openSync(privateDir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
    const st = fs.fstatSync(dirFd);
    const uid = process.geteuid?.() ?? 0;
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) {
      throw new FdbrokerError('ERR_FDBROKER_INSECURE_PATH', `${privateDir} was replaced while the broker was creating its socket in ${dir}`);
    }
    inner = `/proc/self/fd/${dirFd}/${INNER_NAME}`;
    const r = n.bind(fd, { family: 'unix', path: inner });
    if (r === ENOENT && !fs.existsSync('/proc/self/fd')) {
      throw new FdbrokerError('ERR_FDBROKER_INTERNAL', 'fdbroker needs /proc mounted to create Unix sockets safely', { cause: systemError(r, 'bind', inner) });
    }
    if (r < 0) throw systemError(r, 'bind', target);
    if (options.group !== undefined) fs.chownSync(inner, -1, options.group);
    if (options.mode !== undefined) fs.chmodSync(inner, options.mode);
    if (options.backlog !== undefined) {
      const l = n.listen(fd, options.backlog);
      if (l < 0) throw systemError(l, 'listen', target);
    }
    const id = fs.lstatSync(inner);
    fs.renameSync(inner, target);
    inner = undefined;
    return { dev: id.dev, ino: id.ino };
  } finally {
    if (inner !== undefined) fs.rmSync(inner, { force: true });
    if (dirFd !== undefined) fs.closeSync(dirFd);
    // By name, but harmless: rmdir removes only an empty directory, never through a symlink.
    try { fs.rmdirSync(privateDir); } catch { /* replaced or gone: leave it */ }
  }
}
