// The app as its own broker (like HAProxy's expose-fd listeners): the first
// process creates the listeners and serves them on the control path itself;
// each successor adopts them from its predecessor, serves them on the same
// path (renamed over it, so the path always answers), and retires the
// predecessor when ready. Also expose(): a generation serving duplicates of
// its listeners so a lost broker can take them back.
//
// Fd ownership: the embedded Broker owns its own copies; the app gets
// duplicates (ReceivedListener), owned by the caller.
import { native } from '../native/binding';
import { check } from '../protocol/errors';
import { Broker } from '../broker/broker';
import { parseListenerSpec } from '../broker/spec';
import type { BrokerConnection, ReceivedListener } from '../client/connection';
import { isListening, type Listener } from '../client/listener';

export interface SelfBrokerOptions {
  names?: string[];
  label?: string;
  listen?: string[];
  mode?: number;
}

/** Nobody at the path: create the listeners and serve them. */
export function serveFirst(path: string, options: SelfBrokerOptions): { broker: Broker; listeners: ReceivedListener[] } {
  const specs = options.listen!.map((s) => parseListenerSpec(s));
  const broker = Broker.startInternal({ controlPath: path, listeners: specs, self: { label: options.label }, mode: options.mode, inherit: false });
  try {
    return { broker, listeners: dupForSelf(broker.listenerFdsForSelf(), options.names) };
  } catch (err) {
    broker.close();
    throw err;
  }
}

/**
 * A predecessor serves the path (`conn` is connected to it): join it, take
 * every listener, and serve them on the same path (bound at a temporary name
 * and renamed over it). The predecessor's broker lets one successor join at a
 * time, so two successors never both rename over the path.
 */
export async function serveAsSuccessor(path: string, conn: BrokerConnection, options: SelfBrokerOptions, deadline: number):
  Promise<{ broker: Broker; listeners: ReceivedListener[]; generation: number }> {
  const { generation, listeners: received } = await conn.join(undefined, { label: options.label, timeout: Math.max(0, deadline - Date.now()), heartbeat: true });
  await (successorSeams.beforeRename?.() ?? Promise.resolve());
  // The embedded broker owns everything received, also if it fails to start.
  const broker = Broker.startInternal({
    controlPath: path, listenerFds: received, self: { number: generation, label: options.label },
    mode: options.mode, inherit: false, takeover: true,
  });
  try {
    return { broker, listeners: dupForSelf(broker.listenerFdsForSelf(), options.names), generation };
  } catch (err) {
    broker.close();
    throw err;
  }
}

/** Fault-injection seam for tests (empty in production; a test preload sets it): a pause after adopting, before the rename. */
export const successorSeams: { beforeRename?: () => Promise<void> } = {};

/**
 * Serves duplicates of `listeners` on `path` as a broker of their own
 * (holding no generations), so that if the broker is lost a new one can take
 * them back: `fdbroker serve <control> --adopt-from <path>`.
 */
export function exposeListeners(listeners: Listener[], path: string, options: { mode?: number } = {}): Broker {
  // Only listeners this process still holds: an attached server that was
  // closed has closed its fd, and the number may be reused by now.
  const held = listeners.filter((l) => l.fd >= 0 && (!l.server || isListening(l.server)));
  const mine = dupForSelf(held.map((l) => ({ info: infoOf(l), fd: l.fd })));
  // Broker.start owns (and on failure closes) the duplicates.
  return Broker.startInternal({ controlPath: path, listenerFds: mine, mode: options.mode, inherit: false, recover: false });
}

function infoOf(l: Listener): ReceivedListener['info'] {
  const j = l.toJSON();
  const { fd: _fd, ...info } = j;
  void _fd;
  return info;
}

/** Duplicates the embedded broker's listeners the app asked for (the broker keeps its own). */
export function dupForSelf(all: Array<{ info: ReceivedListener['info']; fd: number }>, names?: string[]): ReceivedListener[] {
  const wanted = names ? all.filter((l) => names.includes(l.info.name)) : all;
  const out: ReceivedListener[] = [];
  try {
    for (const l of wanted) out.push({ info: l.info, fd: check(native().dup(l.fd), 'fcntl') });
    return out;
  } catch (err) {
    for (const o of out) native().close(o.fd);
    throw err;
  }
}
