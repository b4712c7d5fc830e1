// Public API of the fdbroker package.
export { adoptListeners, type AdoptOptions } from './client/adopt';
export { Listener } from './client/listener';
export { Generation, startGeneration, type GenerationOptions, type GenerationEvents } from './handover/generation';
export { drain, type DrainOptions, type DrainResult } from './handover/drain';
export { workerEnv, listenViaPrimary, WORKER_ENV } from './handover/cluster';
export type { GenerationInfo, GenerationState } from './broker/generation-table';
export { Broker, type BrokerOptions, type BrokerEvents, type AdoptEvent } from './broker/broker';
export { BrokerConnection, type ConnectOptions } from './client/connection';
export { parseListenerSpec, type ListenerSpec } from './broker/spec';
export { FdbrokerError, ERROR_CODES, type FdbrokerErrorCode, type SystemError } from './protocol/errors';
export type { ListenerInfo, ListenerKind, ClientInfo, StatusMessage } from './protocol/messages';
export * as defaults from './defaults';
export * as limits from './protocol/limits';
export { VERSION } from './protocol/version';
