// The handover statistics as `status` carries them (and metrics serve them): wire types, a leaf module.
import type { FdbrokerErrorCode } from './errors';

/** A cumulative histogram: `buckets[i]` observations <= `bounds[i]` seconds (the +Inf bucket is `count`). */
export interface HistogramSnapshot {
  count: number;
  /** Sum of every observation, in seconds. */
  sum: number;
  bounds: number[];
  buckets: number[];
}

export interface MetricsSnapshot {
  handovers: number;
  handoverReadySeconds: HistogramSnapshot;
  handoverRetireSeconds: HistogramSnapshot;
  /** The newest ready generation failed and the one standing by resumed. */
  rollbacks: Record<'left' | 'stalled' | 'hung', number>;
  /**
   * The generation that served failed (left without being retired or saying
   * it stops, stalled, hung) with nobody standing by to resume: not a
   * rollback, an outage until the next one is ready. Absent from older brokers.
   */
  unreplaced?: Record<'left' | 'stalled' | 'hung', number>;
  drainsForced: number;
  adopts: number;
  /** By error code; codes never seen are left out. */
  refusals: Partial<Record<FdbrokerErrorCode, number>>;
}

