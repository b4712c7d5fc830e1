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
  rollbacks: Record<'left' | 'stalled' | 'hung', number>;
  drainsForced: number;
  adopts: number;
  /** By error code; codes never seen are left out. */
  refusals: Partial<Record<FdbrokerErrorCode, number>>;
}

