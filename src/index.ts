// Public API of the fdbroker package.
export { adoptListeners, type AdoptOptions } from './adopt';
export { Listener } from './listener';
export { Generation, startGeneration, type GenerationOptions, type GenerationEvents } from './generation';
export { drain, onDrain, holding, trackConnections, type DrainOptions, type DrainResult, type Holding } from './drain';
export { closeWebSocketsOnDrain, closeWebSocketOnDrain, WS_SERVICE_RESTART, type WebSocketDrainOptions } from './drain-ws';
export { endEventStreamOnDrain, type EventStreamDrainOptions } from './drain-sse';
export { workerEnv, listenViaPrimary, WORKER_ENV } from './cluster';
export type { GenerationInfo, GenerationState } from './generations';
export { Broker, type BrokerOptions, type BrokerEvents, type AdoptEvent } from './broker';
export { BrokerConnection, type ConnectOptions } from './client';
export { parseListenerSpec, type ListenerSpec } from './spec';
export { FdbrokerError, ERROR_CODES, type FdbrokerErrorCode, type SystemError } from './errors';
export type { ListenerInfo, ListenerKind, ClientInfo, StatusMessage } from './protocol';
export * as defaults from './constants';
export { VERSION } from './version';
