// Public API of the fdbroker package.
export { adoptListeners, type AdoptOptions } from './client/adopt';
export { Listener } from './client/listener';
export { BrokerConnection, type ConnectOptions, type JoinOptions, type Notice, type ReceivedListener, type RejoinRequest } from './client/connection';
export { Generation, startGeneration, type GenerationOptions, type GenerationEvents } from './handover/generation';
export type { UpgradeOptions, UpgradeFailure } from './handover/upgrade';
export { drain, onDrain, holding, trackConnections, type DrainOptions, type DrainResult, type Holding } from './handover/drain';
export { closeWebSocketsOnDrain, closeWebSocketOnDrain, WS_SERVICE_RESTART, type WebSocketDrainOptions } from './handover/drain-ws';
export { endEventStreamOnDrain, type EventStreamDrainOptions } from './handover/drain-sse';
export { workerEnv, listenViaPrimary, WORKER_ENV } from './handover/cluster';
export type { GenerationInfo, GenerationState } from './broker/generation-table';
export type { MetricsSnapshot, HistogramSnapshot } from './broker/handover-stats';
export {
  Broker, type BrokerOptions, type BrokerEvents, type AdoptEvent, type AuditEvent, type RollbackEvent, type StallEvent,
  type ReloadResult, type ReloadSettings,
} from './broker/broker';
export type { AccessOptions } from './broker/access';
export { SdNotifier, parseNotifySocket, watchdogIntervalMs, type SdNotifierEvents } from './broker/sd-notify';
export { SystemdLink, statusLine, type SystemdLinkOptions } from './broker/systemd-link';
export { parseListenerSpec, type ListenerSpec } from './broker/spec';
export { FdbrokerError, ERROR_CODES, isBrokerErrorCode, type FdbrokerErrorCode, type UnknownErrorCode, type SystemError } from './protocol/errors';
export type { ListenerInfo, ListenerKind, ClientInfo, HolderInfo, StatusMessage } from './protocol/messages';
export * as defaults from './defaults';
export * as limits from './protocol/limits';
export { VERSION } from './protocol/version';
