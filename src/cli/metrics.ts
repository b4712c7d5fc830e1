// `fdbroker serve --metrics tcp://HOST:PORT`: the option's parsing (a usage
// error when malformed) and the endpoint's start. prom-client is loaded only
// here, when the flag is given: a broker without --metrics never loads it.
import * as fs from 'node:fs';
import type { Broker } from '../broker/broker';
import { isLoopback, parseMetricsAddress, serveMetrics, type MetricsAddress, type MetricsServer } from '../metrics/server';
import { FdbrokerError, systemError } from '../protocol/errors';
import { createListener, type OwnedListener } from '../broker/listeners';
import { native } from '../native/binding';
import { canonicalAddress } from '../transport/address';
import type { ListenerInfo } from '../protocol/messages';
import { UsageError } from './args';
import type { Io } from './io';

/**
 * The --metrics address, or undefined when the option is absent. Anything but
 * loopback needs a token (`tokenFile`) or an explicit `public`: the metrics
 * name every listener and its state.
 */
export function metricsOption(v: string | undefined, tokenFile?: string, isPublic = false): MetricsAddress | undefined {
  if (v === undefined) return undefined;
  let address: MetricsAddress;
  try {
    address = parseMetricsAddress(v);
  } catch (err) {
    throw new UsageError(`--metrics: ${(err as Error).message}`, (err as FdbrokerError).code);
  }
  if (!isLoopback(address.host) && tokenFile === undefined && !isPublic) {
    throw new UsageError(`--metrics ${v}: ${address.host} is not a loopback address, and the metrics name every listener: `
      + 'require a token with --metrics-token-file FILE, or pass --metrics-public to serve them to anyone who can reach it');
  }
  return address;
}

/**
 * The bearer token in `file` (trimmed): a regular file, owned by root or this
 * user, readable and writable by its owner only; else ERR_FDBROKER_INVALID_ARGUMENT.
 */
export function readMetricsToken(file: string): string {
  const bad = (why: string, cause?: unknown) => new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `--metrics-token-file ${file}: ${why}`, { cause });
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (err) {
    throw bad(`cannot be read (${(err as NodeJS.ErrnoException).code})`, err);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw bad('is not a regular file');
    const me = process.geteuid?.() ?? 0;
    if (st.uid !== 0 && st.uid !== me) throw bad(`belongs to uid ${st.uid}, neither root nor this user (${me}); chown it`);
    if ((st.mode & 0o077) !== 0) throw bad(`is readable by others (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}): chmod 600 ${file}`);
    const token = fs.readFileSync(fd, 'utf8').trim();
    if (token === '') throw bad('is empty');
    if (!/^[\x21-\x7e]+$/.test(token)) throw bad('holds characters a token cannot have (spaces, control characters)');
    return token;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * `broker`'s metrics, to be served at `address` by the returned function (which
 * may be called again after a failed listen: the registry is made once); a
 * failed scrape is reported on stderr. The listening socket is the broker's
 * (Broker.metricsSocket): one it took over at the same address is served on
 * as it is (the port was never free); otherwise one is bound here.
 */
export async function prepareMetrics(broker: Broker, address: MetricsAddress, io: Io, token?: string): Promise<() => Promise<MetricsServer>> {
  const { BrokerMetrics } = await import('../metrics/prometheus');
  const metrics = new BrokerMetrics(broker);
  return () => {
    const held = broker.metricsSocket;
    if (!held || !sameAddress(held.info, address)) broker.holdMetricsSocket(bindMetricsSocket(address));
    const fd = native().dup(broker.metricsSocket!.fd);
    if (fd < 0) return Promise.reject(systemError(fd, 'dup'));
    return serveMetrics(metrics, { ...address, fd, token, onError: (err) => io.err(`fdbroker: metrics: ${err.message}`) });
  };
}

/** The metrics endpoint's listening socket at `address`; throws the bind error (EADDRINUSE…) naming --metrics. */
function bindMetricsSocket(address: MetricsAddress): OwnedListener {
  try {
    return createListener({ name: 'metrics', kind: 'tcp', host: address.host === 'localhost' ? '127.0.0.1' : address.host, port: address.port });
  } catch (err) {
    (err as Error).message = (err as Error).message.replace(/^listener "metrics"/, '--metrics');
    throw err;
  }
}

function sameAddress(info: ListenerInfo, address: MetricsAddress): boolean {
  const host = address.host === 'localhost' ? '127.0.0.1' : address.host;
  return info.address !== undefined && canonicalAddress(info.address) === canonicalAddress(host) && (address.port === 0 || info.port === address.port);
}
