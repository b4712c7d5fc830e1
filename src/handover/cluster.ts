// Node cluster support for a primary that adopts and lets its workers listen
// through cluster (pattern "primary adopts"). The other pattern, workers that
// adopt straight from the broker, needs nothing here: Listener.attach()
// listens in the worker itself.
//
// Use cluster.SCHED_NONE (NODE_CLUSTER_SCHED_POLICY=none) with this pattern.
// Under round-robin the primary accepts every connection itself and, when its
// last worker leaves, closes the connections still waiting in its own queue:
// a handover would reset them. Under SCHED_NONE each worker accepts from the
// shared socket, so connections wait in the kernel queue the next generation
// also accepts from.
import type * as net from 'node:net';
import { FdbrokerError } from '../protocol/errors';
import type { Listener } from '../client/listener';

/** Environment variable carrying the primary's listener fds to its workers. */
export const WORKER_ENV = 'FDBROKER_CLUSTER_LISTENERS';

interface Entry { name: string; fd: number; backlog: number }

/**
 * In the primary: the env to pass to cluster.fork() so workers can listen on
 * these listeners. Ownership of their fds passes to Node's cluster module:
 * the primary's handle for fd N closes it when the last worker stops
 * listening, so the Listener will not close it again (`close()` becomes a
 * no-op). Call it once, before forking; fork workers for one generation only.
 */
export function workerEnv(listeners: Record<string, Listener>): Record<string, string> {
  const entries: Entry[] = [];
  for (const l of Object.values(listeners)) {
    if (l.kind === 'udp') continue;
    const fd = l.handOff();
    entries.push({ name: l.name, fd, backlog: l.backlog ?? 511 });
  }
  return { [WORKER_ENV]: JSON.stringify(entries) };
}

/**
 * In a worker: listen on the primary's listener `name` through cluster
 * (server.listen({ fd }, backlog): Node sends it to the primary, which owns
 * that fd). Throws ERR_FDBROKER_CLUSTER_WORKER outside a worker started with workerEnv().
 */
export function listenViaPrimary<T extends net.Server>(server: T, name: string, callback?: () => void): T {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cluster = require('node:cluster') as { isWorker?: boolean };
  const raw = process.env[WORKER_ENV];
  if (!cluster.isWorker || raw === undefined) {
    throw new FdbrokerError('ERR_FDBROKER_CLUSTER_WORKER',
      `listenViaPrimary() runs in a cluster worker forked with workerEnv(listeners) (${WORKER_ENV} is not set)`);
  }
  let entries: Entry[];
  try {
    entries = JSON.parse(raw) as Entry[];
  } catch (err) {
    throw new FdbrokerError('ERR_FDBROKER_CLUSTER_WORKER', `${WORKER_ENV} is not valid JSON`, { cause: err });
  }
  const e = entries.find((x) => x.name === name);
  if (!e) {
    throw new FdbrokerError('ERR_FDBROKER_UNKNOWN_LISTENER',
      `the primary passed no listener named "${name}" (it has ${entries.map((x) => `"${x.name}"`).join(', ') || 'none'})`);
  }
  server.listen({ fd: e.fd }, e.backlog, callback);
  return server;
}
