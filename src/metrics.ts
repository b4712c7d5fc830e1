// Public API of `fdbroker/metrics`: the broker's Prometheus metrics. A
// separate entry so that apps importing `fdbroker` never load prom-client.
export { BrokerMetrics, METRICS_PREFIX, type BrokerMetricsOptions } from './broker/metrics';
export {
  serveMetrics, parseMetricsAddress, METRICS_PATH, type MetricsServer, type MetricsServerOptions, type MetricsAddress,
} from './broker/metrics-server';
export type { MetricsSnapshot, HistogramSnapshot } from './broker/handover-stats';
