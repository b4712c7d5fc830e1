// Binding a Unix socket at a path without ever acting on a name another user
// can change. bind(2) creates the socket file; its mode and group must then be
// set, and chmod/chown by name follow a symlink that another user renamed over
// the fresh socket in between (a root broker would chmod /etc/shadow). So the
// socket is bound in a fresh private directory (0700, ours) next to the target,
// reached only through its open directory fd (/proc/self/fd/N, which no rename
// can redirect); its mode and group are set there, where no one else can reach
// it; it listens; then it is linked (or renamed) into place: link(2) and rename(2) act on
// the name itself, never through a symlink at it.
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
   * false: link(2), which fails if anything is there; `replaceStale` is then
   * asked whether it removed what was there (then the link is tried once more).
   */
  replace: boolean;
  /** Removes a stale file at the path and returns true, or returns false (or throws) to refuse. */
  replaceStale?: (path: string) => boolean;
}

/** Name of the socket inside the private directory. */
const INNER_NAME = 's';

/**
 * Binds `fd` (an AF_UNIX socket, not yet bound) at `target` as described
 * above, and listens on it if `backlog` is given. The fd stays the caller's. Throws a system error (`bind` with
 * EADDRINUSE when something other than a stale socket is at `target`); on any
 * error nothing is left at `target` by this call and the private directory is
 * removed.
 */
export function bindSocketFile(fd: number, target: string, options: BindSocketFileOptions): SocketFileId {
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
    if (options.replace) {
      fs.renameSync(inner, target);
    } else {
      if (!tryLink(inner, target)) {
        if (!options.replaceStale?.(target) || !tryLink(inner, target)) throw systemError(EADDRINUSE, 'bind', target);
      }
      fs.unlinkSync(inner);
    }
    inner = undefined;
    return { dev: id.dev, ino: id.ino };
  } finally {
    if (inner !== undefined) fs.rmSync(inner, { force: true });
    if (dirFd !== undefined) fs.closeSync(dirFd);
    // By name, but harmless: rmdir removes only an empty directory, never through a symlink.
    try { fs.rmdirSync(privateDir); } catch { /* replaced or gone: leave it */ }
  }
}

/** link(2) `from` at `to`; false when `to` exists. */
function tryLink(from: string, to: string): boolean {
  try {
    fs.linkSync(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}
