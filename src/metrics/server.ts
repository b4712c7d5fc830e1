// The metrics endpoint: plain node:http on one tcp address, GET (or HEAD)
// /metrics in the Prometheus text format and 404 for any other path. No TLS;
// with `token`, a request without `Authorization: Bearer <token>` is 401.
// Few connections (METRICS_MAX_CONNECTIONS), short header, request and idle
// timeouts, and at most one scrape per METRICS_MIN_SCRAPE_INTERVAL_MS (others
// get its text): slow or many clients cannot blind it long, nor load the
// broker. Never prints; a failed scrape answers 500 and is reported through
// `onError`.
import type * as Http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FdbrokerError } from '../protocol/errors';
import type { BrokerMetrics } from './prometheus';
import { parseListenerSpec } from '../broker/spec';
import {
  METRICS_HEADERS_TIMEOUT_MS, METRICS_IDLE_TIMEOUT_MS, METRICS_MAX_CONNECTIONS, METRICS_MIN_SCRAPE_INTERVAL_MS, METRICS_REQUEST_TIMEOUT_MS,
  METRICS_TIMEOUT_CHECK_INTERVAL_MS,
} from '../broker/defaults';

export const METRICS_PATH = '/metrics';

export interface MetricsAddress { host: string; port: number }

/** Parses `tcp://HOST:PORT` (HOST an IPv4 address, localhost or [IPv6]; PORT 0 picks a free one). Throws ERR_FDBROKER_INVALID_ARGUMENT. */
export function parseMetricsAddress(text: string): MetricsAddress {
  const bad = (why: string) => new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT',
    `invalid metrics address "${text}": ${why}; write tcp://HOST:PORT, e.g. tcp://127.0.0.1:9464`);
  if (!text.startsWith('tcp://')) throw bad('only tcp:// is served');
  if (text.includes('?')) throw bad('no ?options here');
  let spec;
  try {
    spec = parseListenerSpec(`metrics=${text}`);
  } catch (err) {
    throw Object.assign(bad((err as Error).message.replace(/^invalid listener "[^"]*": /, '').replace(/\. Expected .*$/, '')), { cause: err });
  }
  return { host: spec.host!, port: spec.port! };
}

export interface MetricsServer {
  /** Where it listens (the port picked when 0 was asked for). */
  host: string;
  port: number;
  /** http://HOST:PORT/metrics */
  url: string;
  /** Stops listening and ends open connections. */
  close(): Promise<void>;
}

export interface MetricsServerOptions extends MetricsAddress {
  /** A scrape that failed (answered 500). */
  onError?: (err: Error) => void;
  /** Required as `Authorization: Bearer <token>` (else 401). */
  token?: string;
  /**
   * A listening TCP socket to serve on instead of binding host:port (the
   * server owns it and closes it on close()): how a broker keeps its metrics
   * port across a takeover (a duplicate of the socket it hands over).
   */
  fd?: number;
  /** Scrapes within this time of the last one get its text (default METRICS_MIN_SCRAPE_INTERVAL_MS; 0: every scrape is fresh). */
  minScrapeIntervalMs?: number;
}

/** Whether `header` is "Bearer <token>", compared in constant time. */
function bearerMatches(header: string | undefined, token: string): boolean {
  const want = Buffer.from(`Bearer ${token}`);
  const got = Buffer.from(header ?? '');
  let diff = want.length ^ got.length;
  for (let i = 0; i < want.length; i++) diff |= want[i]! ^ (got[i] ?? 0);
  return diff === 0;
}

/** 127.0.0.0/8, ::1, ::ffff:127.x, localhost. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(host);
}

/** Serves `metrics` on host:port; resolves once listening, rejects with the listen error (e.g. EADDRINUSE). */
export function serveMetrics(metrics: BrokerMetrics, options: MetricsServerOptions): Promise<MetricsServer> {
  // node:http is loaded when an endpoint is served, not by every broker that might serve one.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const http = require('node:http') as typeof Http;
  let last: { at: number; text: Promise<string> } | undefined;
  const scrape = (): Promise<string> => {
    const now = Date.now();
    if (!last || now - last.at >= (options.minScrapeIntervalMs ?? METRICS_MIN_SCRAPE_INTERVAL_MS)) last = { at: now, text: metrics.metrics() };
    const p = last.text;
    p.catch(() => { if (last?.text === p) last = undefined; }); // a failure is not cached
    return p;
  };
  const server = http.createServer({ connectionsCheckingInterval: METRICS_TIMEOUT_CHECK_INTERVAL_MS }, (req, res) => {
    if (options.token !== undefined && !bearerMatches(req.headers.authorization, options.token)) {
      res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer' }).end('unauthorized\n');
      return;
    }
    const path = (req.url ?? '').split('?', 1)[0];
    if (path !== METRICS_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`not found: only ${METRICS_PATH} is served\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain; charset=utf-8', allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    scrape().then((text) => {
      res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': Buffer.byteLength(text) });
      res.end(req.method === 'HEAD' ? undefined : text);
    }, (err: Error) => {
      options.onError?.(err);
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`metrics failed: ${err.message}\n`);
    });
  });
  server.maxConnections = METRICS_MAX_CONNECTIONS;
  server.requestTimeout = METRICS_REQUEST_TIMEOUT_MS;
  server.headersTimeout = METRICS_HEADERS_TIMEOUT_MS;
  server.keepAliveTimeout = METRICS_IDLE_TIMEOUT_MS;
  server.setTimeout(METRICS_IDLE_TIMEOUT_MS, (socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.fd !== undefined ? { fd: options.fd } : { host: options.host, port: options.port }, () => {
      server.off('error', reject);
      // Errors after listening (none are expected) must not end the broker.
      server.on('error', (err) => options.onError?.(err));
      const a = server.address() as AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      resolve({
        host: a.address, port: a.port, url: `http://${host}:${a.port}${METRICS_PATH}`,
        close: () => new Promise<void>((done) => {
          server.close(() => done());
          server.closeAllConnections();
        }),
      });
    });
  });
}
