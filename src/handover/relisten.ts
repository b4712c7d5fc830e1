// Resume after standby: adopt a generation's listeners anew from the broker
// and listen again on every server attached to them (their listening
// handles were closed when the generation stood by).
//
// Fd ownership: the fresh listeners replace the old ones in `listeners` (the
// old ones are closed); on failure, or when the swap is no longer wanted,
// every fresh one not in `listeners` is closed.
import type * as net from 'node:net';
import type { BrokerConnection } from '../client/connection';
import { toListeners } from '../client/adopt';
import { isListening, type Listener } from '../client/listener';

/**
 * Adopts `listeners`' names again on `conn` and swaps each in, attaching its
 * server. `wanted()` is asked once the fresh copies arrived: false (the
 * generation was closed meanwhile) closes them and swaps nothing. Resolves
 * true once every server listens again; false (or a rejection) if not.
 */
export async function relisten(conn: BrokerConnection, listeners: Record<string, Listener>, wanted: () => boolean): Promise<boolean> {
  const names = Object.keys(listeners);
  const fresh = toListeners(await conn.adopt(names), names);
  if (!wanted()) {
    for (const l of Object.values(fresh)) l.close();
    return false;
  }
  const pending = new Set(names);
  try {
    for (const name of names) {
      const old = listeners[name]!;
      const next = fresh[name]!;
      const server = old.server;
      pending.delete(name);
      // A dgram socket (or a server that kept listening) still has its copy: keep the old listener.
      if (server && isListening(server)) {
        next.close();
        continue;
      }
      old.close();
      listeners[name] = next;
      if (server) next.attach(server as net.Server);
    }
  } catch {
    for (const name of pending) fresh[name]?.close();
    return false;
  }
  return true;
}
