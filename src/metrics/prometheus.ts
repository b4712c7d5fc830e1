// The broker's metrics in the Prometheus text format (prom-client, in a
// registry of its own, never the global one). Everything is read at scrape
// time: the counters and histograms from the broker's HandoverStats (the
// figures `status --json` shows under `metrics`), the gauges from one
// statusWithHolders() per scrape (accept queues and backlogs read from the
// sockets, holders from a /proc scan shared within a second by HolderCache).
// Never prints; serving it over HTTP is metrics-server.ts's job.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StatusMessage } from '../protocol/messages';
import type { GenerationState } from '../core/generation-info';
import type { HistogramSnapshot } from './handover-stats';
import { ROLLBACK_REASONS } from './handover-stats';
import type { Broker } from '../broker/broker';

export const METRICS_PREFIX = 'fdbroker_';
const GENERATION_STATES: readonly GenerationState[] = ['starting', 'ready', 'standby', 'retiring', 'failed'];

export interface BrokerMetricsOptions {
  /** Also collect prom-client's default process metrics (process_resident_memory_bytes, process_open_fds, ...); default true. */
  processMetrics?: boolean;
}

/**
 * A histogram whose buckets live in a HistogramSnapshot (HandoverStats), not
 * in prom-client: exported as prom-client exports its own (cumulative
 * `_bucket{le}`, `_sum`, `_count`), so status and /metrics never disagree.
 */
class SnapshotHistogram extends Histogram {
  constructor(private readonly metricName: string, private readonly helpText: string, registry: Registry,
    private readonly read: () => HistogramSnapshot) {
    super({ name: metricName, help: helpText, registers: [registry], buckets: [...read().bounds] });
  }

  // What Registry.metrics() reads (getForPromString) and getMetricsAsJSON() (get): prom-client's own shape.
  async getForPromString(): Promise<Awaited<ReturnType<Histogram['get']>>> {
    const h = this.read();
    const n = this.metricName;
    const values = [
      ...h.bounds.map((le, i) => ({ value: h.buckets[i]!, labels: { le }, metricName: `${n}_bucket` })),
      { value: h.count, labels: { le: '+Inf' }, metricName: `${n}_bucket` },
      { value: h.sum, labels: {}, metricName: `${n}_sum` },
      { value: h.count, labels: {}, metricName: `${n}_count` },
    ];
    // `type` is the string prom-client itself puts there; its typings declare an enum that does not exist at run time.
    return { name: n, help: this.helpText, type: 'histogram', aggregator: 'sum', values } as unknown as Awaited<ReturnType<Histogram['get']>>;
  }

  override get(): ReturnType<Histogram['get']> { return this.getForPromString(); }
}

export class BrokerMetrics {
  /** The registry holding fdbroker's metrics (and the process metrics unless turned off). */
  readonly registry = new Registry();
  private scrape: Promise<StatusMessage> | undefined;

  constructor(private readonly broker: Broker, options: BrokerMetricsOptions = {}) {
    const registers = [this.registry];
    const stats = () => broker.stats.snapshot();
    const p = METRICS_PREFIX;
    const status = () => this.scrape ?? broker.statusWithHolders();

    new Counter({
      name: `${p}handovers_total`, help: 'Generations that became ready and told at least one older generation to retire', registers,
      collect() { this.reset(); this.inc(stats().handovers); },
    });
    new SnapshotHistogram(`${p}handover_ready_seconds`, 'Seconds from a generation\'s join to its ready', this.registry,
      () => stats().handoverReadySeconds);
    new SnapshotHistogram(`${p}handover_retire_seconds`,
      'Seconds from the ready of a new generation to the generation it retired leaving (standby window included)', this.registry,
      () => stats().handoverRetireSeconds);
    new Counter({
      name: `${p}rollbacks_total`, help: 'Rollbacks: the newest ready generation left, stalled or hung and the one standing by resumed',
      labelNames: ['reason'], registers,
      collect() {
        this.reset();
        const r = stats().rollbacks;
        for (const reason of ROLLBACK_REASONS) this.inc({ reason }, r[reason]);
      },
    });
    new Counter({
      name: `${p}unreplaced_failures_total`,
      help: 'The serving generation left without being retired, stalled or hung with nobody standing by to resume (a crash, or an exit without gen.close())',
      labelNames: ['reason'], registers,
      collect() {
        this.reset();
        const r = stats().unreplaced ?? { left: 0, stalled: 0, hung: 0 };
        for (const reason of ROLLBACK_REASONS) this.inc({ reason }, r[reason]);
      },
    });
    new Counter({
      name: `${p}drains_forced_total`, help: 'Retiring generations still connected after the retire timeout (their drain overran)', registers,
      collect() { this.reset(); this.inc(stats().drainsForced); },
    });
    new Counter({
      name: `${p}adopts_total`, help: 'Requests answered with listeners (adopt and join)', registers,
      collect() { this.reset(); this.inc(stats().adopts); },
    });
    new Counter({
      name: `${p}refusals_total`, help: 'Requests and connections answered with an ERR_FDBROKER_* error, by code', labelNames: ['code'], registers,
      collect() {
        this.reset();
        for (const [code, n] of Object.entries(stats().refusals)) this.inc({ code }, n);
      },
    });
    new Gauge({
      name: `${p}generations`, help: 'Connected generations by state', labelNames: ['state'], registers,
      async collect() {
        const gens = (await status()).generations;
        for (const state of GENERATION_STATES) this.set({ state }, gens.filter((g) => g.state === state).length);
      },
    });
    new Gauge({
      name: `${p}clients`, help: 'Connected clients of the control socket', registers,
      collect() { this.set(broker.clientCount); },
    });
    const perListener = (name: string, help: string, value: (l: StatusMessage['listeners'][number]) => number | undefined) => new Gauge({
      name: `${p}${name}`, help, labelNames: ['listener'], registers,
      async collect() {
        this.reset();
        // A listener a reload removed (or changed) is still listed while held; its name may be handed out again.
        for (const l of (await status()).listeners) {
          if (l.removed) continue;
          const v = value(l);
          if (v !== undefined) this.set({ listener: l.name }, v);
        }
      },
    });
    perListener('listener_queued', 'Connections waiting in the listener\'s accept queue (read from the socket)', (l) => l.queued);
    perListener('listener_backlog', 'The listen(2) backlog in force on the listener, read from the socket (tcp: TCP_INFO; unix: sock_diag)',
      (l) => l.backlogInForce);
    perListener('listener_paused', 'Whether the listener is paused now (`fdbroker pause`): 1, else 0', (l) => (l.paused ? 1 : 0));
    perListener('listener_paused_seconds', 'Seconds the listener has been paused in all since the broker started, the current pause included',
      (l) => (l.pausedMs ?? 0) / 1000);
    perListener('listener_holders', 'Processes other than the broker holding a copy of the listener (from /proc)', (l) => l.holders?.length);
    new Gauge({
      name: `${p}removed_listener_holders`, help: 'Processes still holding a listener a reload removed or changed (they serve on it until they retire)',
      labelNames: ['listener'], registers,
      async collect() {
        this.reset();
        for (const l of (await status()).listeners) if (l.removed && l.holders) this.set({ listener: l.name }, l.holders.length);
      },
    });
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** The content type of metrics(): the Prometheus text format, version 0.0.4. */
  get contentType(): string { return this.registry.contentType; }

  /** Every metric, in the Prometheus text format; one status (one /proc scan at most) for the whole scrape. */
  async metrics(): Promise<string> {
    const scrape = this.broker.statusWithHolders();
    this.scrape = scrape;
    try {
      await scrape;
      return await this.registry.metrics();
    } finally {
      if (this.scrape === scrape) this.scrape = undefined;
    }
  }
}
