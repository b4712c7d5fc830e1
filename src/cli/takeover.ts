// `fdbroker serve --takeover`: the CLI side of a broker takeover, both ends.
// The new broker prints what it took over; the old one prints who took over
// and exits 0 once its generations moved. The work is in broker/successor.ts.
import type { Broker, BrokerOptions } from '../broker/broker';
import { takeOver } from '../takeover/successor';
import { FdbrokerError } from '../protocol/errors';
import { UsageError } from './args';
import type { Io } from './io';
import { TAKEOVER_METRICS_WAIT_MS } from './defaults';

/**
 * Takes over the broker at `options.controlPath` and says so; throws as takeOver() does (the old broker then serves on).
 * `configure`: as takeOver()'s. `configPath()`: the file this broker reloads, once taken over (its --config, or the old
 * broker's that `configure` read). Without one, where the old broker had one, reloads are refused saying how to fix it.
 */
export async function takeOverBroker(options: BrokerOptions, adoptFrom: string | undefined,
  configure: ((from: { pid: number; config?: string }) => BrokerOptions | undefined) | undefined, configPath: () => string | undefined,
  io: Io, quiet: boolean): Promise<Broker> {
  if (adoptFrom !== undefined) throw new UsageError('--takeover and --adopt-from exclude each other: --takeover takes the listeners from the broker at the path');
  const r = await takeOver({ ...options, configure });
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  io.out(`fdbroker: took over ${count(r.from.listeners, 'listener')} and ${count(r.from.generations, 'generation')} from pid ${r.from.pid} (version ${r.from.software}) in ${r.ms} ms`);
  if (r.commitWarning) io.err(`fdbroker: warning: the old broker did not acknowledge the commit (${r.commitWarning.message}); this broker serves ${options.controlPath}`);
  if (r.from.config !== undefined && configPath() === undefined) {
    const again = `fdbroker serve ${options.controlPath} --takeover --config ${r.from.config}`;
    io.err(`fdbroker: warning: pid ${r.from.pid} read its configuration from ${r.from.config}, which could not be read here and was not given: `
      + `this broker refuses reloads (SIGHUP, \`fdbroker reload\`); to keep them, take over again with \`${again}\``);
    r.broker.reloadSource = () => {
      throw new FdbrokerError('ERR_FDBROKER_NO_CONFIG',
        `this broker took over from pid ${r.from.pid} without its configuration (${r.from.config}) and has none to reload: take over again with \`${again}\``);
    };
  }
  if (!quiet) r.broker.on('rejoin', (g) => io.out(`fdbroker: generation ${g.number} (pid ${g.pid}) rejoined (${g.state})`));
  return r.broker;
}

/** The old broker's side: log a takeover's steps; `done` when this broker was taken over (it is closed by then). */
export function watchTakeover(broker: Broker, io: Io, quiet: boolean, done: () => void): void {
  broker.on('takeover', (by) => {
    if (!quiet) io.out(`fdbroker: takeover by pid ${by.pid} (version ${by.software}): handed ${by.listeners} listeners and ${by.generations} generations; serving until it commits`);
  });
  broker.on('takeoverAborted', (by, reason) => io.err(`fdbroker: takeover by pid ${by.pid} failed before commit (${reason}); serving on, unchanged`));
  broker.on('takenOver', (by) => {
    io.out(`fdbroker: taken over by pid ${by.pid} (version ${by.software}): ${by.generations} generations moved to it; exiting`);
    done();
  });
}

/**
 * The new broker's metrics endpoint: the old broker holds the same address
 * until it exits, so binding is retried for TAKEOVER_METRICS_WAIT_MS. This
 * broker serves the path already: a failure is a warning, never a reason to
 * stop it (that would leave the path with no broker at all).
 */
export async function metricsAfterTakeover<M>(start: () => Promise<M>, io: Io): Promise<M | undefined> {
  const deadline = Date.now() + TAKEOVER_METRICS_WAIT_MS;
  for (;;) {
    try {
      return await start();
    } catch (err) {
      if (Date.now() >= deadline) {
        io.err(`fdbroker: warning: no metrics endpoint: ${(err as Error).message}; this broker serves without one`);
        return undefined;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
