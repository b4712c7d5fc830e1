// Safety checks on where a control socket is created. Whoever can replace the
// socket file can impersonate the broker to every app; whoever can write the
// directory can do that. So the directory must be reached without symlinks,
// be owned by the broker's user or root, and be writable by no one else
// unless it is sticky (like /tmp: others may add files but not remove or
// rename ours, and a file they pre-create at our path is never connected to
// as a broker: it is refused or, if it is a stale socket, replaced).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FdbrokerError } from '../protocol/errors';

const S_ISVTX = 0o1000;

/** Throws ERR_FDBROKER_INSECURE_PATH with the reason when the directory of `controlPath` is unsafe. */
export function checkControlDirectory(controlPath: string, uid: number = process.getuid?.() ?? 0): void {
  const dir = path.dirname(path.resolve(controlPath));
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch (err) {
    throw new FdbrokerError('ERR_FDBROKER_INSECURE_PATH', `cannot resolve ${dir}: ${(err as Error).message}`, { cause: err });
  }
  if (real !== dir) {
    throw new FdbrokerError('ERR_FDBROKER_INSECURE_PATH',
      `${dir} is reached through a symlink (it is ${real}); give the real path, or pass --insecure-dir`);
  }
  const st = fs.statSync(dir);
  if (st.uid !== uid && st.uid !== 0) {
    throw new FdbrokerError('ERR_FDBROKER_INSECURE_PATH',
      `${dir} belongs to uid ${st.uid}, not to this user (${uid}) or root: its owner could replace the control socket; pass --insecure-dir to accept that`);
  }
  if ((st.mode & 0o022) !== 0 && (st.mode & S_ISVTX) === 0) {
    throw new FdbrokerError('ERR_FDBROKER_INSECURE_PATH',
      `${dir} is writable by ${st.mode & 0o002 ? 'everyone' : 'its group'} and not sticky: others could replace the control socket; use a private directory (e.g. /run/<app>), or pass --insecure-dir`);
  }
}
