// The owner's own control socket, PATH.owner, beside the shared one at PATH
// (systemd keeps /run/systemd/private beside the bus for the same reason).
// The shared socket may be opened by a group or by everyone (--mode), and
// anyone who can open it can fill its accept queue with connects the broker
// refuses: a granted client's connect() then waits behind them. PATH.owner is
// mode 0600, so only the broker's own user (and root) can connect to it, and
// no one else can touch its queue: deploys, reloads and status from the
// owner keep answering under a flood on PATH. The same protocol and the same
// grants apply on both; clients of the broker's user prefer it
// (client/control-target.ts). A broker that cannot create it serves on
// without it (a warning): clients then use PATH.
import { native } from '../native/binding';
import { MAX_SOCKET_PATH_BYTES } from '../native/errno';
import { systemError } from '../protocol/errors';
import { Acceptor } from '../transport/acceptor';
import { CONTROL_BACKLOG } from '../transport/defaults';
import { OWNER_SOCKET_MODE, ownerSocketPath } from '../protocol/owner-socket';
import { replaceIfStale } from './control-path';
import { bindSocketFile } from './socket-file';

/**
 * Binds PATH.owner and returns its Acceptor, or undefined when the name does
 * not fit a socket address. `replace` (a takeover's successor, whose
 * PATH.owner must become this one like PATH; a reclaim after a dead one):
 * rename(2) over whatever is there. Otherwise only a stale socket there (a
 * killed broker's, nobody answering) is replaced. Throws a system error
 * (`bind` EADDRINUSE: something live or not a socket is there), or
 * ERR_FDBROKER_INSECURE_PATH, when it cannot be created.
 */
export function bindOwnerSocket(controlPath: string, replace: boolean): Acceptor | undefined {
  const path = ownerSocketPath(controlPath);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) return undefined;
  const n = native();
  const c = n.constants;
  const fd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
  if (fd < 0) throw systemError(fd, 'socket');
  try {
    n.setsockoptInt(fd, c.SOL_SOCKET, c.SO_PASSRIGHTS, 0); // as on PATH (control-path.ts); best effort
    const id = bindSocketFile(fd, path, { mode: OWNER_SOCKET_MODE, backlog: CONTROL_BACKLOG, replace, replaceStale: removeIfStale });
    return new Acceptor(path, fd, undefined, id);
  } catch (err) {
    n.close(fd);
    throw err;
  }
}

/** A stale socket at the name (nobody answers) is removed; anything else is left, and the bind fails. */
function removeIfStale(path: string): boolean {
  try {
    replaceIfStale(path);
    return true;
  } catch {
    return false;
  }
}
