// Broker takeover, the successor's side: connect to the running broker,
// receive its versions, options, generation table and listeners, start a
// broker with them (bound at a temporary name and renamed over the path, so
// the path always answers), then commit. Until the rename, any failure here
// leaves the old broker serving unchanged; from the rename on, this broker
// serves. See PROTOCOL.md §2.9 and docs/FAULTS.md.
//
// Fd ownership: every received fd is owned by the new Broker from
// Broker.startInternal() on (which closes them if it fails); before that,
// by this function, which closes them on every error path.
import { debuglog } from 'node:util';
import { native } from '../native/binding';
import { BrokerConnection } from '../client/connection';
import { FdbrokerError } from '../protocol/errors';
import { PROTOCOL_VERSION } from '../protocol/limits';
import { VERSION } from '../protocol/version';
import type { HandoffMessage } from '../protocol/messages';
import { Broker, type BrokerOptions } from '../broker/broker';
import { mergeOptions, specsOfReceived, specsToCreate } from './options';

const debug = debuglog('fdbroker');

export interface TakeoverResult {
  /** Owns the old broker's metrics socket, if it had one (Broker.metricsSocket). */
  broker: Broker;
  /** The old broker: its pid and versions, what it handed over, and the configuration file it read (not handed over). */
  from: { pid: number; software: string; protocol: number; listeners: number; generations: number; config?: string };
  /** From connecting to the old broker to its ack of the commit, in ms. */
  ms: number;
  /** Set when the old broker did not acknowledge the commit (this broker serves the path regardless). */
  commitWarning?: Error;
}

/**
 * Fault-injection seams for tests (empty in production; a test preload sets
 * them): the software version claimed, and pauses after everything was
 * received and after the rename, before the commit.
 */
export const takeoverSeams: { software?: string; afterReceive?: () => Promise<void>; beforeCommit?: () => Promise<void> } = {};

/**
 * Takes over the broker serving `options.controlPath`. Options given here
 * (not undefined) override the old broker's; `listeners` naming a received
 * listener must describe it, others are created. `configure`, once the old
 * broker's versions arrived, may return the options to use instead of those
 * given (e.g. read from the configuration file it names). Throws (and the old
 * broker serves on) if anything fails before this broker answers on the path.
 */
export async function takeOver(options: BrokerOptions & {
  timeoutMs?: number;
  configure?: (from: HandoffMessage['broker']) => BrokerOptions | undefined;
}): Promise<TakeoverResult> {
  const t0 = Date.now();
  const { timeoutMs, configure, ...options0 } = options;
  let given: BrokerOptions = options0;
  const conn = await BrokerConnection.connect(options.controlPath, { timeout: timeoutMs }).catch((err: FdbrokerError) => {
    if (err.code !== 'ERR_FDBROKER_NO_BROKER') throw err;
    throw new FdbrokerError('ERR_FDBROKER_NO_BROKER', `nothing to take over: ${err.message}`, { cause: err });
  });
  try {
    // An older broker does not know "takeover" (it would close the connection): say so instead.
    if (!conn.features.includes('takeover')) {
      throw new FdbrokerError('ERR_FDBROKER_VERSION',
        `the broker at ${options.controlPath} (pid ${conn.brokerPid}) does not support takeover (its welcome lists no "takeover" feature): stop it and start this one with --adopt-from, or upgrade it first`);
    }
    const { id, handoff, listeners } = await conn.takeover(PROTOCOL_VERSION, takeoverSeams.software ?? VERSION, timeoutMs);
    const received = listeners.length - (handoff.metrics !== undefined && listeners.some((l) => l.info.name === handoff.metrics) ? 1 : 0);
    debug('takeover: received %d listeners and %d generations from pid %d', listeners.length, handoff.generations.length, handoff.broker.pid);
    let broker: Broker;
    // The old broker's metrics socket is not a listener: the new broker holds it apart (Broker.metricsSocket).
    const metricsAt = handoff.metrics === undefined ? -1 : listeners.findIndex((l) => l.info.name === handoff.metrics);
    let metricsSocket = metricsAt < 0 ? undefined : listeners.splice(metricsAt, 1)[0]!;
    try {
      await takeoverSeams.afterReceive?.();
      given = configure?.(handoff.broker) ?? given;
      const merged = mergeOptions(handoff.options, { ...given, listeners: undefined });
      const create = specsToCreate(listeners.map((l) => l.info), given.listeners ?? []);
      const receivedSpecs = specsOfReceived(listeners.map((l) => l.info), given.listeners ?? []);
      // The old broker gave up on us (commit timeout) or is gone: binding now would split the path from its generations.
      if (conn.isClosed) throw new FdbrokerError('ERR_FDBROKER_CLOSED', 'the old broker closed the takeover before this broker could bind: it serves on; try again');
      // From here on the new broker owns the received fds, on every path.
      const pending = listeners.splice(0);
      broker = Broker.startInternal({
        ...merged, controlPath: options.controlPath, listeners: create, listenerFds: pending, receivedSpecs, takeover: true,
        generations: {
          next: handoff.nextGeneration, generations: handoff.generations,
          ...(handoff.epoch !== undefined ? { epoch: handoff.epoch } : {}), ...(handoff.floor !== undefined ? { floor: handoff.floor } : {}),
        },
      });
      broker.holdMetricsSocket(metricsSocket);
      metricsSocket = undefined;
    } catch (err) {
      for (const l of listeners) native().close(l.fd);
      if (metricsSocket) native().close(metricsSocket.fd);
      throw err;
    }
    const from = {
      pid: handoff.broker.pid, software: handoff.broker.software, protocol: handoff.broker.protocol,
      listeners: received, generations: handoff.generations.length,
      ...(handoff.broker.config !== undefined ? { config: handoff.broker.config } : {}),
    };
    let commitWarning: Error | undefined;
    try {
      await takeoverSeams.beforeCommit?.();
      const { left } = await conn.commit(id, timeoutMs);
      // Generations that left the old broker while it handed over: the table received still has them.
      broker.applyForwardedLeaves(left);
    } catch (err) {
      commitWarning = err as Error;
    }
    const ms = Date.now() - t0;
    broker.acquirePathLock();
    return { broker, from, ms, ...(commitWarning ? { commitWarning } : {}) };
  } finally {
    conn.close();
  }
}
