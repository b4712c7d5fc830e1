// `fdbroker serve --metrics tcp://HOST:PORT`: the option's parsing (a usage
// error when malformed) and the endpoint's start. prom-client is loaded only
// here, when the flag is given: a broker without --metrics never loads it.
import type { Broker } from '../broker/broker';
import { parseMetricsAddress, serveMetrics, type MetricsAddress, type MetricsServer } from '../metrics/server';
import { FdbrokerError } from '../protocol/errors';
import { UsageError } from './args';
import type { Io } from './io';

/** The --metrics address, or undefined when the option is absent. */
export function metricsOption(v: string | undefined): MetricsAddress | undefined {
  if (v === undefined) return undefined;
  try {
    return parseMetricsAddress(v);
  } catch (err) {
    throw new UsageError(`--metrics: ${(err as Error).message}`, (err as FdbrokerError).code);
  }
}

/**
 * `broker`'s metrics, to be served at `address` by the returned function (which
 * may be called again after a failed listen: the registry is made once); a
 * failed scrape is reported on stderr.
 */
export async function prepareMetrics(broker: Broker, address: MetricsAddress, io: Io): Promise<() => Promise<MetricsServer>> {
  const { BrokerMetrics } = await import('../metrics/prometheus');
  const metrics = new BrokerMetrics(broker);
  return () => serveMetrics(metrics, { ...address, onError: (err) => io.err(`fdbroker: metrics: ${err.message}`) });
}
