// Public API of `fdbroker/metrics`: the broker's Prometheus metrics. A
// separate entry so that apps importing `fdbroker` never load prom-client.
export { BrokerMetrics, METRICS_PREFIX, type BrokerMetricsOptions } from './metrics/prometheus';
export {
  serveMetrics, parseMetricsAddress, METRICS_PATH, type MetricsServer, type MetricsServerOptions, type MetricsAddress,
} from './metrics/server';
export type { MetricsSnapshot, HistogramSnapshot } from './metrics/handover-stats';
