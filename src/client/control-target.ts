// Which socket a client connects to: PATH.owner (broker/owner-socket.ts) when
// it is a socket file of this process's own user, so the broker's owner is
// never queued behind connects of other users to the shared PATH; else PATH.
// Nothing is trusted for being there: a file of another user is never tried,
// and the broker's credentials are checked on either socket (connection.ts).
import * as fs from 'node:fs';
import { ownerSocketPath } from '../protocol/owner-socket';

/** The sockets to try, in order. */
export function controlTargets(controlPath: string): string[] {
  const owner = ownerSocketPath(controlPath);
  try {
    const st = fs.lstatSync(owner);
    if (st.isSocket() && st.uid === (process.geteuid?.() ?? 0)) return [owner, controlPath];
  } catch {
    // none: the shared path
  }
  return [controlPath];
}
