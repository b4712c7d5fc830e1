// Handover statistics: counters and histograms fed by the broker's events,
// kept by every broker whether or not metrics are served (a few numbers; no
// timers, no I/O). `fdbroker status --json` carries their snapshot under
// `metrics`; the Prometheus endpoint (metrics.ts) reads the same snapshot at
// scrape time, so both always agree.
//
// Definitions (README "Metrics"):
// - handovers: a generation became ready and told at least one older generation to retire.
// - ready seconds: from a generation's join to its ready (every generation that becomes ready, rejoiners excepted).
// - retire seconds: from the ready that retired a generation to that generation leaving
//   (its process exited or closed its connection), standby window included; not
//   observed for a generation that resumed instead (rollback).
// - rollbacks{reason}: the newest ready generation failed ('left', 'stalled', 'hung') and the one standing by resumed.
// - unreplaced{reason}: it failed with nobody standing by (a crash, or an exit without gen.close()).
// - drains forced: a generation told to retire (or rolled back) still connected after the
//   retire timeout: its drain overran and something else (the app's drain deadline, exec's
//   --stop-timeout, an operator) has to end it. At most once per retirement.
// - adopts: requests answered with listeners (adopt and join).
// - refusals{code}: requests and connections the broker answered with an ERR_FDBROKER_* error,
//   and every reload refused (SIGHUP, `fdbroker reload`, `systemctl reload`: the 'reloadFailed' event).
import type { EventEmitter } from 'node:events';
import { isErrorCode, type FdbrokerErrorCode } from '../protocol/errors';
import type { GenerationInfo } from '../core/generation-info';
import type { BrokerEvents, RollbackEvent } from '../broker/events';
import type { HistogramSnapshot, MetricsSnapshot } from '../protocol/metrics-snapshot';
import { HANDOVER_SECONDS_BUCKETS } from '../broker/defaults';

export const ROLLBACK_REASONS: readonly RollbackEvent['reason'][] = ['left', 'stalled', 'hung'];

export type { HistogramSnapshot, MetricsSnapshot } from '../protocol/metrics-snapshot';

/** A histogram with fixed bounds; observations in seconds. */
export class Histogram {
  private readonly counts: number[];
  private n = 0;
  private total = 0;

  constructor(readonly bounds: readonly number[] = HANDOVER_SECONDS_BUCKETS) {
    this.counts = bounds.map(() => 0);
  }

  observe(seconds: number): void {
    if (!Number.isFinite(seconds) || seconds < 0) return;
    this.n++;
    this.total += seconds;
    // Cumulative, as Prometheus exposes them: every bucket whose bound is at or above the value.
    for (let i = 0; i < this.bounds.length; i++) if (seconds <= this.bounds[i]!) this.counts[i]!++;
  }

  snapshot(): HistogramSnapshot {
    return { count: this.n, sum: this.total, bounds: [...this.bounds], buckets: [...this.counts] };
  }
}

export class HandoverStats {
  private handovers = 0;
  private readonly ready = new Histogram();
  private readonly retire = new Histogram();
  private readonly rollbacks: Record<RollbackEvent['reason'], number> = { left: 0, stalled: 0, hung: 0 };
  private readonly unreplaced: Record<RollbackEvent['reason'], number> = { left: 0, stalled: 0, hung: 0 };
  private drainsForced = 0;
  private adopts = 0;
  private readonly refusals = new Map<FdbrokerErrorCode, number>();
  /** Generation number -> when (ms) the ready that retired it happened. An entry per retiring generation still connected. */
  private readonly retiring = new Map<number, number>();

  /** `now` (ms) is the clock, for tests. */
  constructor(broker: EventEmitter<BrokerEvents>, private readonly now: () => number = Date.now) {
    broker.on('ready', (g, retire) => this.onReady(g, retire));
    broker.on('leave', (g) => this.onLeave(g));
    broker.on('rollback', (e) => this.onRollback(e));
    broker.on('overdue', (_g, what) => { if (what === 'retire') this.drainsForced++; });
    broker.on('adopt', () => { this.adopts++; });
    broker.on('clientError', (_c, err) => this.refused(err));
    broker.on('reloadFailed', (err) => this.refused(err));
  }

  private refused(err: unknown): void {
    const code = (err as { code?: unknown }).code;
    // Only fdbroker's own codes: a closed set, so the label cannot grow without bound.
    if (isErrorCode(code)) this.refusals.set(code, (this.refusals.get(code) ?? 0) + 1);
  }

  private onReady(g: GenerationInfo, retire: number[]): void {
    if (!g.rejoined && g.readyAt) this.ready.observe((Date.parse(g.readyAt) - Date.parse(g.joinedAt)) / 1000);
    const older = retire.filter((n) => n !== g.number);
    if (older.length === 0) return;
    this.handovers++;
    const at = this.now();
    for (const n of older) if (!this.retiring.has(n)) this.retiring.set(n, at);
  }

  private onLeave(g: GenerationInfo): void {
    const at = this.retiring.get(g.number);
    if (at === undefined) return;
    this.retiring.delete(g.number);
    this.retire.observe((this.now() - at) / 1000);
  }

  private onRollback(e: RollbackEvent): void {
    // Nobody resumed: the one that served failed with nothing to roll back to.
    if (e.resumed === undefined) this.unreplaced[e.reason]++;
    else this.rollbacks[e.reason]++;
    // The one that resumes serves again: its retirement never completed.
    if (e.resumed !== undefined) this.retiring.delete(e.resumed);
  }

  snapshot(): MetricsSnapshot {
    return {
      handovers: this.handovers,
      handoverReadySeconds: this.ready.snapshot(),
      handoverRetireSeconds: this.retire.snapshot(),
      rollbacks: { ...this.rollbacks },
      unreplaced: { ...this.unreplaced },
      drainsForced: this.drainsForced,
      adopts: this.adopts,
      refusals: Object.fromEntries([...this.refusals].sort(([a], [b]) => a.localeCompare(b))),
    };
  }
}
