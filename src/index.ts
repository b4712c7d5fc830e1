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
export type { GenerationInfo, GenerationState } from './core/generation-info';
export type { MetricsSnapshot, HistogramSnapshot } from './protocol/metrics-snapshot';
export { FdbrokerError, ERROR_CODES, isBrokerErrorCode, type FdbrokerErrorCode, type UnknownErrorCode, type SystemError } from './protocol/errors';
export type { ListenerInfo, ListenerKind, ClientInfo, HolderInfo, StatusMessage } from './protocol/messages';
export * as defaults from './defaults';
export * as limits from './protocol/limits';
export { VERSION } from './protocol/version';
