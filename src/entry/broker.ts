// Public API of `fdbroker/broker`: the broker as a library (what `fdbroker
// serve` runs), for programs that embed one. Apps that only adopt listeners
// or run as generations need the package root, not this.
export {
  Broker, type BrokerOptions, type BrokerEvents, type AdoptEvent, type AuditEvent, type RollbackEvent, type StallEvent, type StopEvent,
  type ReloadResult, type ReloadSettings,
} from '../broker/broker';
export type { AccessOptions, GrantRule } from '../broker/access';
export { parseListenerSpec, type ListenerSpec } from '../broker/spec';
export type { GenerationInfo, GenerationState } from '../core/generation-info';
export type { MetricsSnapshot, HistogramSnapshot } from '../protocol/metrics-snapshot';
