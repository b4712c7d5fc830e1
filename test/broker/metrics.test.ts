// Metrics: the pure pieces (Histogram, HandoverStats, the --metrics address),
// a broker in this process scraped through serveMetrics, and `fdbroker serve
// --metrics` scraped before, during and after a deploy under load. Every
// scrape is parsed with a Prometheus text-format parser, not a regex.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import parsePrometheusTextFormat, { type PromFamily, type PromHistogramSample, type PromSample } from 'parse-prometheus-text-format';
import { afterEach, describe, expect, it } from 'vitest';
import { Broker, type BrokerEvents } from '../../src/broker/broker';
import { HandoverStats, Histogram } from '../../src/metrics/handover-stats';
import { HOLDERS_CACHE_TTL_MS } from '../../src/holders/holders';
import { BrokerMetrics } from '../../src/metrics/prometheus';
import { parseMetricsAddress, serveMetrics, type MetricsServer } from '../../src/metrics/server';
import type { GenerationInfo } from '../../src/core/generation-info';
import { BrokerConnection } from '../../src/client/connection';
import { FdbrokerError } from '../../src/protocol/errors';
import type { ClientInfo } from '../../src/protocol/messages';
import { CLI, FIXTURES, Raw, cleanup, loadLoop, quietFdCount, run, sleep, startBroker, statusOf, tmpDir } from '../helpers';
import { python3Command } from '../requirements';

afterEach(cleanup);

// --- A scrape, parsed -------------------------------------------------------

interface Scrape {
  families: PromFamily[];
  /** The value of `name` with exactly these labels (undefined when absent). */
  value(name: string, labels?: Record<string, string>): number | undefined;
  histogram(name: string): { count: number; sum: number; buckets: Record<string, number> };
}

function httpGet(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    }).on('error', reject).on('timeout', function (this: http.ClientRequest) { this.destroy(new Error(`GET ${url} timed out`)); });
  });
}

function parseScrape(text: string): Scrape {
  const families = parsePrometheusTextFormat(text);
  const family = (name: string) => {
    const f = families.find((x) => x.name === name);
    if (!f) throw new Error(`no metric ${name} in the scrape:\n${text}`);
    return f;
  };
  const same = (a: Record<string, string> = {}, b: Record<string, string> = {}) =>
    Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([k, v]) => b[k] === v);
  return {
    families,
    value(name, labels = {}) {
      const m = (family(name).metrics as PromSample[]).find((s) => same(s.labels, labels));
      return m === undefined ? undefined : Number(m.value);
    },
    histogram(name) {
      const f = family(name);
      expect(f.type).toBe('HISTOGRAM');
      const h = f.metrics[0] as PromHistogramSample;
      return { count: Number(h.count), sum: Number(h.sum), buckets: Object.fromEntries(Object.entries(h.buckets).map(([k, v]) => [k, Number(v)])) };
    },
  };
}

async function scrape(url: string): Promise<Scrape> {
  const r = await httpGet(url);
  expect(r.status).toBe(200);
  expect(r.type).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parseScrape(r.body);
}

/** Scrapes until `ok` holds (bounded): the broker sees a leave a moment after the process exits. */
async function scrapeUntil(url: string, ok: (s: Scrape) => boolean, timeoutMs = 5000): Promise<Scrape> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await scrape(url);
    if (ok(s) || Date.now() > deadline) return s;
    await sleep(50);
  }
}

const generationsByState = (s: Scrape) => Object.fromEntries(
  ['starting', 'ready', 'standby', 'retiring', 'failed'].map((state) => [state, s.value('fdbroker_generations', { state })]));

// --- Pure pieces -------------------------------------------------------------

describe('Histogram', () => {
  it('counts cumulatively per bound, sums in seconds, and ignores values that are not durations', () => {
    const h = new Histogram([0.1, 1, 10]);
    for (const v of [0.05, 0.1, 0.5, 3, 20, -1, Number.NaN, Number.POSITIVE_INFINITY]) h.observe(v);
    expect(h.snapshot()).toEqual({ count: 5, sum: 0.05 + 0.1 + 0.5 + 3 + 20, bounds: [0.1, 1, 10], buckets: [2, 3, 4] });
  });
});

describe('HandoverStats', () => {
  const client: ClientInfo = { id: 1, pid: 10, uid: 0, gid: 0, connectedAt: '', adopted: [] };
  const gen = (number: number, joinedMs: number, readyMs?: number, extra: Partial<GenerationInfo> = {}): GenerationInfo => ({
    number, clientId: number, pid: 100 + number, uid: 0, state: 'ready', adopted: ['http'], joinedAt: new Date(joinedMs).toISOString(),
    ...(readyMs !== undefined ? { readyAt: new Date(readyMs).toISOString() } : {}), standbyMs: 0, readyOverdue: false, retireOverdue: false, ...extra,
  });
  const setup = () => {
    const broker = new EventEmitter<BrokerEvents>();
    let now = 0;
    const stats = new HandoverStats(broker, () => now);
    return { broker, stats, at: (ms: number) => { now = ms; } };
  };

  it('a first ready is no handover; a ready that retires an older generation is one, timed until that one leaves', () => {
    const { broker, stats, at } = setup();
    broker.emit('ready', gen(1, 0, 250), []);
    expect(stats.snapshot()).toMatchObject({ handovers: 0, handoverReadySeconds: { count: 1, sum: 0.25 }, handoverRetireSeconds: { count: 0 } });
    at(10_000);
    broker.emit('ready', gen(2, 9_000, 10_000), [1]);
    expect(stats.snapshot()).toMatchObject({ handovers: 1, handoverReadySeconds: { count: 2, sum: 1.25 }, handoverRetireSeconds: { count: 0 } });
    at(12_500);
    broker.emit('leave', gen(1, 0, 250, { state: 'retiring' }));
    // A second leave of the same number (a new broker reuses numbers only after a rejoin) is not timed twice.
    broker.emit('leave', gen(1, 0, 250, { state: 'retiring' }));
    expect(stats.snapshot().handoverRetireSeconds).toMatchObject({ count: 1, sum: 2.5 });
  });

  it('a generation retired at once by a newer ready one (retire lists itself) is no handover; rejoiners are not timed', () => {
    const { broker, stats } = setup();
    broker.emit('ready', gen(1, 0, 100), [1]);
    broker.emit('ready', gen(3, 0, 5_000, { rejoined: true }), []);
    expect(stats.snapshot()).toMatchObject({ handovers: 0, handoverReadySeconds: { count: 1, sum: 0.1 } });
  });

  it('rollbacks by reason (only where one resumed; the others are unreplaced failures); the resumed generation is no longer retiring, so its later leave is not timed', () => {
    const { broker, stats, at } = setup();
    broker.emit('ready', gen(2, 0, 100), [1]);
    broker.emit('rollback', { failed: gen(2, 0, 100, { state: 'failed' }), reason: 'stalled', resumed: 1 });
    broker.emit('rollback', { failed: gen(3, 0, 100, { state: 'failed' }), reason: 'left', resumed: undefined });
    at(60_000);
    broker.emit('leave', gen(1, 0, 50));
    expect(stats.snapshot()).toMatchObject({ handovers: 1, rollbacks: { left: 0, stalled: 1, hung: 0 }, unreplaced: { left: 1, stalled: 0, hung: 0 }, handoverRetireSeconds: { count: 0 } });
  });

  it('drains forced are retire overdues only; adopts count handouts; refusals count ERR_FDBROKER_* codes only', () => {
    const { broker, stats } = setup();
    broker.emit('overdue', gen(1, 0), 'ready');
    broker.emit('overdue', gen(2, 0), 'retire');
    broker.emit('adopt', { client, names: ['http'] });
    broker.emit('adopt', { client, names: ['http'], generation: 4 });
    broker.emit('clientError', client, new FdbrokerError('ERR_FDBROKER_UNKNOWN_LISTENER', 'x'));
    broker.emit('clientError', client, new FdbrokerError('ERR_FDBROKER_UNKNOWN_LISTENER', 'y'));
    broker.emit('clientError', client, new FdbrokerError('ERR_FDBROKER_NOT_PERMITTED', 'z'));
    broker.emit('clientError', client, Object.assign(new Error('reset'), { code: 'ECONNRESET' }));
    broker.emit('clientError', client, new Error('no code'));
    expect(stats.snapshot()).toMatchObject({
      drainsForced: 1, adopts: 2, refusals: { ERR_FDBROKER_NOT_PERMITTED: 1, ERR_FDBROKER_UNKNOWN_LISTENER: 2 },
    });
    expect(Object.keys(stats.snapshot().refusals)).toHaveLength(2);
  });

  it('a refused reload (SIGHUP, `fdbroker reload`, `systemctl reload`: the broker\'s reloadFailed) counts in refusals by its code', () => {
    const { broker, stats } = setup();
    broker.emit('reloadFailed', new FdbrokerError('ERR_FDBROKER_INVALID_CONFIG', 'bad file'));
    broker.emit('reloadFailed', new FdbrokerError('ERR_FDBROKER_RELOAD_FAILED', 'EADDRINUSE'));
    broker.emit('reloadFailed', new FdbrokerError('ERR_FDBROKER_INVALID_CONFIG', 'bad again'));
    expect(stats.snapshot().refusals).toEqual({ ERR_FDBROKER_INVALID_CONFIG: 2, ERR_FDBROKER_RELOAD_FAILED: 1 });
  });
});

describe('parseMetricsAddress', () => {
  it.each([
    ['tcp://127.0.0.1:9464', { host: '127.0.0.1', port: 9464 }],
    ['tcp://localhost:0', { host: '127.0.0.1', port: 0 }],
    ['tcp://[::1]:9464', { host: '::1', port: 9464 }],
    ['tcp://0.0.0.0:9464', { host: '0.0.0.0', port: 9464 }],
  ])('%s', (text, want) => expect(parseMetricsAddress(text)).toEqual(want));

  it.each(['unix:/run/m.sock', 'http://127.0.0.1:9464', 'tcp://127.0.0.1', 'tcp://127.0.0.1:70000', 'tcp://example.com:80', 'tcp://127.0.0.1:9464?backlog=5', ''])(
    '%s is refused with ERR_FDBROKER_INVALID_ARGUMENT', (text) => {
      expect(() => parseMetricsAddress(text)).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_INVALID_ARGUMENT' }));
    });
});

// --- A broker in this process ------------------------------------------------

describe('BrokerMetrics on a broker in this process', () => {
  let broker: Broker | undefined;
  let server: MetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    broker?.close();
    server = undefined;
    broker = undefined;
  });

  it('serves /metrics only (404 elsewhere, 405 for POST, HEAD without a body), counts refusals by code, and agrees with status()', async () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'b.sock');
    broker = Broker.start({ controlPath: sock, listeners: [{ name: 'web', kind: 'tcp', host: '127.0.0.1', port: 0, backlog: 77 }], inherit: false });
    const metrics = new BrokerMetrics(broker);
    // Fresh figures at each scrape (by default a scrape within 250 ms of the last gets its text).
    server = await serveMetrics(metrics, { host: '127.0.0.1', port: 0, minScrapeIntervalMs: 0 });
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/metrics`);

    expect((await httpGet(`http://127.0.0.1:${server.port}/`)).status).toBe(404);
    expect((await httpGet(`http://127.0.0.1:${server.port}/metricsx`)).status).toBe(404);
    const post = await new Promise<number>((resolve, reject) => {
      http.request(server!.url, { method: 'POST', agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0); }).on('error', reject).end();
    });
    expect(post).toBe(405);
    const head = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      http.request(server!.url, { method: 'HEAD', agent: false }, (res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      }).on('error', reject).end();
    });
    expect(head).toEqual({ status: 200, body: '' });

    // Refusals: an unknown name, and "ready" from a connection that never joined.
    const conn = await BrokerConnection.connect(sock);
    await expect(conn.adopt(['nope'])).rejects.toMatchObject({ code: 'ERR_FDBROKER_UNKNOWN_LISTENER' });
    const got = await conn.adopt(['web']);
    for (const l of got) fs.closeSync(l.fd);
    const raw = await Raw.connect(sock);
    raw.send({ type: 'hello', versions: [1] });
    expect((await raw.next())?.msg.type).toBe('welcome');
    raw.send({ type: 'ready', id: 1 });
    expect((await raw.next())?.msg).toMatchObject({ type: 'error', code: 'ERR_FDBROKER_READY_REFUSED' });

    const s = await scrape(server.url);
    expect(s.value('fdbroker_refusals_total', { code: 'ERR_FDBROKER_UNKNOWN_LISTENER' })).toBe(1);
    expect(s.value('fdbroker_refusals_total', { code: 'ERR_FDBROKER_READY_REFUSED' })).toBe(1);
    expect(s.value('fdbroker_adopts_total')).toBe(1);
    expect(s.value('fdbroker_clients')).toBe(2);
    expect(s.value('fdbroker_listener_backlog', { listener: 'web' })).toBe(77);
    expect(s.value('fdbroker_listener_queued', { listener: 'web' })).toBe(0);
    // This process is the broker (never counted as a holder) and closed its adopted copy.
    expect(s.value('fdbroker_listener_holders', { listener: 'web' })).toBe(0);
    expect(s.value('fdbroker_rollbacks_total', { reason: 'left' })).toBe(0);
    expect(s.value('process_open_fds')).toBeGreaterThan(0);
    expect(s.value('process_resident_memory_bytes')).toBeGreaterThan(1e6);
    // The same figures in status, from the same counters.
    expect(broker.status().metrics).toMatchObject({ adopts: 1, refusals: { ERR_FDBROKER_UNKNOWN_LISTENER: 1, ERR_FDBROKER_READY_REFUSED: 1 } });
    raw.close();
    conn.close();
  });
});

describe('fdbroker/metrics', () => {
  it('is its own entry of the package: `fdbroker` alone never loads prom-client', async () => {
    // Package self-reference: from the repository, require('fdbroker/...') goes through package.json's exports.
    const p = run(process.execPath, ['-e', `
      const loaded = () => Object.keys(require.cache).some((k) => k.includes('/node_modules/prom-client/'));
      const main = require('fdbroker/broker');
      const before = loaded();
      const m = require('fdbroker/metrics');
      console.log(JSON.stringify({ broker: typeof main.Broker, before, after: loaded(), metrics: typeof m.BrokerMetrics, serve: typeof m.serveMetrics, path: m.METRICS_PATH }));`]);
    expect((await p.exited).code).toBe(0);
    expect(JSON.parse(p.stdout())).toEqual({ broker: 'function', before: false, after: true, metrics: 'function', serve: 'function', path: '/metrics' });
  });
});

// --- fdbroker serve --metrics --------------------------------------------------

/** Starts `fdbroker serve --metrics tcp://127.0.0.1:0` and returns it with the URL from its ready line. */
async function metricsBroker(listen: string[], extra: string[] = []) {
  const broker = await startBroker(tmpDir(), listen, ['--metrics', 'tcp://127.0.0.1:0', '--quiet', ...extra]);
  const m = broker.stdout().match(/; metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)$/m);
  if (!m) throw new Error(`no metrics URL in the ready line:\n${broker.stdout()}`);
  return { broker, url: m[1]! };
}

function startGen(sock: string): ReturnType<typeof run> {
  return run(process.execPath, [path.join(FIXTURES, 'gen-app.js')], { env: { FDBROKER_SOCK: sock } });
}

describe('fdbroker serve --metrics', () => {
  it('a deploy under load moves the counters, histograms and gauges as it should, and status --json shows the same figures', async () => {
    const { broker, url } = await metricsBroker(['http=tcp://127.0.0.1:0'], ['--standby', '1000']);
    const port = broker.ports.http!;

    // Before any generation: 3 connections wait in the accept queue, and nobody holds the listener.
    const waiting = await Promise.all([1, 2, 3].map(() => new Promise<net.Socket>((resolve, reject) => {
      const c = net.connect(port, '127.0.0.1', () => resolve(c)).on('error', reject);
    })));
    const s0 = await scrape(url);
    expect(s0.value('fdbroker_handovers_total')).toBe(0);
    expect(s0.value('fdbroker_adopts_total')).toBe(0);
    expect(s0.value('fdbroker_clients')).toBe(0);
    expect(generationsByState(s0)).toEqual({ starting: 0, ready: 0, standby: 0, retiring: 0, failed: 0 });
    expect(s0.value('fdbroker_listener_queued', { listener: 'http' })).toBe(3);
    expect(s0.value('fdbroker_listener_backlog', { listener: 'http' })).toBe(511);
    expect(s0.value('fdbroker_listener_holders', { listener: 'http' })).toBe(0);
    for (const c of waiting) c.destroy();

    // Generation A serves; load runs from here to the end of the deploy.
    const t0 = Date.now();
    const a = startGen(broker.sock);
    await a.waitFor(/^ready \d+ gen 1$/m, 15_000);
    const load = loadLoop(port, { concurrency: 4, maxMs: 20_000 });
    await sleep(HOLDERS_CACHE_TTL_MS); // holders come from a /proc scan reused for this long
    const s1 = await scrape(url);
    expect(s1.value('fdbroker_adopts_total')).toBe(1);
    expect(s1.value('fdbroker_clients')).toBe(1);
    expect(generationsByState(s1)).toMatchObject({ ready: 1, starting: 0 });
    expect(s1.value('fdbroker_listener_holders', { listener: 'http' })).toBe(1);
    expect(s1.histogram('fdbroker_handover_ready_seconds').count).toBe(1);
    expect(s1.value('fdbroker_handovers_total')).toBe(0);

    // Generation B: ready, A retires (standing by for 1 s first) and leaves.
    await sleep(500);
    const b = startGen(broker.sock);
    await b.waitFor(/^ready \d+ gen 2$/m, 15_000);
    const bReady = Date.now();
    const s2 = await scrape(url);
    expect(s2.value('fdbroker_handovers_total')).toBe(1);
    expect(s2.value('fdbroker_adopts_total')).toBe(2);
    const during = generationsByState(s2);
    expect(during.ready).toBe(1);
    expect(during.standby! + during.retiring!).toBe(1);
    expect(s2.histogram('fdbroker_handover_ready_seconds').count).toBe(2);
    expect(s2.histogram('fdbroker_handover_retire_seconds').count).toBe(0);

    const ex = await a.exited;
    expect(ex.code).toBe(0);
    const aGone = Date.now();
    const s3 = await scrapeUntil(url, (s) => s.histogram('fdbroker_handover_retire_seconds').count === 1
      && s.value('fdbroker_listener_holders', { listener: 'http' }) === 1, 5000 + HOLDERS_CACHE_TTL_MS);
    const stats = await load.stop();
    expect(stats.failed).toBe(0);
    expect(stats.ok).toBeGreaterThan(0);

    expect(s3.value('fdbroker_handovers_total')).toBe(1);
    expect(generationsByState(s3)).toEqual({ starting: 0, ready: 1, standby: 0, retiring: 0, failed: 0 });
    expect(s3.value('fdbroker_clients')).toBe(1);
    expect(s3.value('fdbroker_listener_holders', { listener: 'http' })).toBe(1);
    expect(s3.value('fdbroker_rollbacks_total', { reason: 'left' })).toBe(0);
    expect(s3.value('fdbroker_drains_forced_total')).toBe(0);
    const ready = s3.histogram('fdbroker_handover_ready_seconds');
    expect(ready.count).toBe(2);
    // Each join -> ready took more than nothing and less than the whole test so far.
    expect(ready.sum).toBeGreaterThan(0);
    expect(ready.sum).toBeLessThan((aGone - t0) / 1000);
    const retire = s3.histogram('fdbroker_handover_retire_seconds');
    // A stood by for the 1 s window before draining, and was gone by the time its exit was seen.
    expect(retire.sum).toBeGreaterThanOrEqual(1);
    expect(retire.sum).toBeLessThanOrEqual((aGone - bReady) / 1000 + 1);
    expect(retire.buckets['+Inf']).toBe(1);
    expect(retire.buckets['0.5']).toBe(0);

    // Scrapes leave nothing open in the broker (each reads the queues through a netlink socket opened and closed inside).
    const fdsBefore = await quietFdCount(broker.pid);
    for (let i = 0; i < 20; i++) await scrape(url);
    expect(await quietFdCount(broker.pid)).toBe(fdsBefore);

    // status --json carries the same figures, from the same counters.
    const st = await statusOf(broker.sock);
    expect(st.metrics).toMatchObject({
      handovers: 1, adopts: 2, drainsForced: 0, rollbacks: { left: 0, stalled: 0, hung: 0 },
      handoverReadySeconds: { count: 2, sum: ready.sum }, handoverRetireSeconds: { count: 1, sum: retire.sum },
    });

    // A rollback: C is ready, B stands by, C is killed within the 1 s window, B resumes.
    const c = startGen(broker.sock);
    await c.waitFor(/^ready \d+ gen 3$/m, 15_000);
    c.kill('SIGKILL');
    await b.waitFor(/^resume \d+ failed 3$/m, 5000);
    const s4 = await scrapeUntil(url, (s) => s.value('fdbroker_rollbacks_total', { reason: 'left' }) === 1);
    expect(s4.value('fdbroker_rollbacks_total', { reason: 'left' })).toBe(1);
    expect(s4.value('fdbroker_rollbacks_total', { reason: 'stalled' })).toBe(0);
    // One resumed: a rollback, not an unreplaced failure.
    expect(s4.value('fdbroker_unreplaced_failures_total', { reason: 'left' })).toBe(0);
    expect(s4.value('fdbroker_handovers_total')).toBe(2);
    expect(generationsByState(s4)).toEqual({ starting: 0, ready: 1, standby: 0, retiring: 0, failed: 0 });
    // B resumed instead of leaving: no retirement was completed.
    expect(s4.histogram('fdbroker_handover_retire_seconds').count).toBe(1);
    b.kill();
  }, 40_000);

  it('a retiring generation still connected after --retire-timeout counts once in drains_forced_total', async () => {
    const { broker, url } = await metricsBroker(['http=tcp://127.0.0.1:0'], ['--standby', '0', '--retire-timeout', '300']);
    const a = run(process.execPath, [path.join(FIXTURES, 'gen-app.js')], { env: { FDBROKER_SOCK: broker.sock, IGNORE_RETIRE: '1' } });
    await a.waitFor(/^ready \d+ gen 1$/m, 15_000);
    const b = startGen(broker.sock);
    await b.waitFor(/^ready \d+ gen 2$/m, 15_000);
    await a.waitFor(/^retire \d+ by 2$/m, 5000);
    const s = await scrapeUntil(url, (x) => x.value('fdbroker_drains_forced_total') === 1);
    expect(s.value('fdbroker_drains_forced_total')).toBe(1);
    expect(generationsByState(s)).toMatchObject({ ready: 1, retiring: 1 });
    // Once per retirement: it stays 1 while A lingers.
    await sleep(600);
    expect((await scrape(url)).value('fdbroker_drains_forced_total')).toBe(1);
    expect((await statusOf(broker.sock)).metrics?.drainsForced).toBe(1);
    a.kill('SIGKILL');
    b.kill();
  }, 30_000);

  it('the backlog a holder sets with a second listen(2048) is what status and listener_backlog report, not the 511 the broker set', async () => {
    const python = python3Command();
    const { broker, url } = await metricsBroker(['http=tcp://127.0.0.1:0']);
    const somaxconn = Number(fs.readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
    const want = Math.min(2048, somaxconn); // the kernel caps every backlog at net.core.somaxconn
    const app = run(process.execPath, [CLI, 'exec', broker.sock, '--ready', 'immediate', '--', python, '-c',
      'import socket, sys, time\ns = socket.socket(fileno=3)\ns.listen(2048)\nprint("relisten", flush=True)\ntime.sleep(60)']);
    await app.waitFor(/^relisten$/m, 10_000);
    const s = await scrape(url);
    expect(s.value('fdbroker_listener_backlog', { listener: 'http' })).toBe(want);
    const st = await statusOf(broker.sock);
    expect(st.listeners[0]).toMatchObject({ name: 'http', backlog: 511, backlogInForce: want });
    const text = run(process.execPath, [CLI, 'status', broker.sock]);
    expect((await text.exited).code).toBe(0);
    expect(text.stdout()).toMatch(new RegExp(`^ +http +tcp://127\\.0\\.0\\.1:${broker.ports.http}  backlog ${want} in force \\(the broker set 511\\)  queued 0`, 'm'));
    expect(text.stdout()).toMatch(/^metrics: handovers 0, ready 1 \(mean \d+\.\d\d s\), retired 0, rollbacks 0, drains forced 0, adopts 1, refusals 0$/m);
  }, 30_000);

  it('--metrics is documented in --help; a malformed address is a usage error (exit 2); a port in use fails the start (exit 1)', async () => {
    const help = run(process.execPath, [CLI, '--help']);
    expect((await help.exited).code).toBe(0);
    expect(help.stdout()).toMatch(/--metrics tcp:\/\/HOST:PORT/);
    const dir = tmpDir();
    const bad = run(process.execPath, [CLI, 'serve', path.join(dir, 'b.sock'), '--listen', 'a=tcp://127.0.0.1:0', '--metrics', 'unix:/tmp/m.sock']);
    expect((await bad.exited).code).toBe(2);
    expect(bad.stderr()).toMatch(/ERR_FDBROKER_INVALID_ARGUMENT.*--metrics.*only tcp:\/\//);
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const busy = run(process.execPath, [CLI, 'serve', path.join(dir, 'c.sock'), '--listen', 'a=tcp://127.0.0.1:0', '--metrics', `tcp://127.0.0.1:${port}`]);
      expect((await busy.exited).code).toBe(1);
      expect(busy.stderr()).toMatch(/EADDRINUSE/);
      // The broker it had started is closed again: its control socket is gone.
      expect(fs.existsSync(path.join(dir, 'c.sock'))).toBe(false);
    } finally {
      taken.close();
    }
  }, 20_000);
});

describe('BrokerMetrics after a reload', () => {
  it('a changed listener: the per-listener gauges are the new socket\'s; the old one, still held, is fdbroker_removed_listener_holders', async () => {
    const sock = path.join(tmpDir(), 'b.sock');
    const spec = { name: 'http', kind: 'tcp' as const, host: '127.0.0.1', port: 0 };
    const broker = Broker.start({ controlPath: sock, listeners: [spec], inherit: false });
    const metrics = new BrokerMetrics(broker, { processMetrics: false });
    const a = startGen(sock);
    try {
      await a.waitFor(/^ready \d+ gen 1$/m, 15_000);
      broker.reloadSource = () => ({ listeners: [{ ...spec, host: '127.0.0.2', backlog: 77 }] });   // another address: a new socket
      expect(broker.reload()).toEqual({ added: [], removed: [], changed: ['http'], grants: [] });
      await sleep(HOLDERS_CACHE_TTL_MS);
      const text = await metrics.metrics();
      const values = (name: string) => text.split('\n').filter((l) => l.startsWith(`${name}{`));
      // One sample per listener name: the socket handed out now (backlog 77, nobody holds it yet).
      expect(values('fdbroker_listener_backlog')).toEqual(['fdbroker_listener_backlog{listener="http"} 77']);
      expect(values('fdbroker_listener_holders')).toEqual(['fdbroker_listener_holders{listener="http"} 0']);
      expect(values('fdbroker_removed_listener_holders')).toEqual(['fdbroker_removed_listener_holders{listener="http"} 1']);
    } finally {
      a.kill('SIGKILL');
      await a.exited;
      broker.close();
    }
  }, 30_000);
});

describe('fdbroker serve --metrics: pause', () => {
  it('listener_paused is 1 while paused and 0 after; listener_paused_seconds adds up the pause', async () => {
    const { broker, url } = await metricsBroker(['http=tcp://127.0.0.1:0']);
    const gen = startGen(broker.sock);
    await gen.waitFor(/^ready \d+ gen 1$/m);
    const conn = await BrokerConnection.connect(broker.sock);
    try {
      expect((await scrape(url)).value('fdbroker_listener_paused', { listener: 'http' })).toBe(0);
      await conn.pause(['http'], 10_000);
      await sleep(600);
      const s = await scrape(url);
      expect(s.value('fdbroker_listener_paused', { listener: 'http' })).toBe(1);
      expect(s.value('fdbroker_listener_paused_seconds', { listener: 'http' })).toBeGreaterThanOrEqual(0.5);
      expect(await conn.unpause()).toEqual([]);
      // Scrapes share a status for a moment (as they share a /proc scan): wait for one taken after the resume.
      const after = await scrapeUntil(url, (x) => x.value('fdbroker_listener_paused', { listener: 'http' }) === 0);
      expect(after.value('fdbroker_listener_paused', { listener: 'http' })).toBe(0);
      expect(after.value('fdbroker_listener_paused_seconds', { listener: 'http' })).toBeGreaterThanOrEqual(0.5);
    } finally {
      conn.close();
    }
  }, 20_000);
});
