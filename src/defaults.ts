// The public `defaults`: every default a caller can override, each through
// the option (or CLI flag) named beside it. Internal pacing constants
// (retry pauses, poll intervals) are not knobs and are not exported.
export {
  DEFAULT_TIMEOUT_MS, // adoptListeners/startGeneration/connect: { timeout }
  DEFAULT_FD_HEADROOM, // adoptListeners/startGeneration: { fdHeadroom }
  DEFAULT_CHECK, // adoptListeners: { check }
} from './client/defaults';
export {
  DEFAULT_HANDSHAKE_TIMEOUT_MS, // BrokerOptions.handshakeTimeoutMs, --handshake-timeout
  DEFAULT_IDLE_TIMEOUT_MS, // BrokerOptions.idleTimeoutMs
  DEFAULT_MAX_QUEUED_MESSAGES, // BrokerOptions.maxQueuedMessages
  DEFAULT_MAX_CLIENTS, // BrokerOptions.maxClients, --max-clients
  DEFAULT_MAX_CLIENTS_PER_UID, // BrokerOptions.maxClientsPerUid, --max-clients-per-uid
  DEFAULT_LISTEN_BACKLOG, // BrokerOptions.backlog, --backlog
  DEFAULT_CONTROL_MODE, // BrokerOptions.mode, --mode
  DEFAULT_READY_TIMEOUT_MS, // BrokerOptions.readyTimeoutMs, --ready-timeout
  DEFAULT_RETIRE_TIMEOUT_MS, // BrokerOptions.retireTimeoutMs, --retire-timeout
} from './broker/defaults';
export {
  DEFAULT_DRAIN_SPREAD_MS, // drain(): { spread }
  DEFAULT_DRAIN_TIMEOUT_MS, // drain(): { timeout }, startGeneration: { drainTimeout }
  DEFAULT_UPGRADE_TIMEOUT_MS, // upgradeOnSignal(): { timeout }
} from './handover/defaults';
export {
  DEFAULT_WAIT_TIMEOUT_MS, // fdbroker wait --timeout
  DEFAULT_EXEC_STOP_TIMEOUT_MS, // fdbroker exec --stop-timeout
} from './cli/defaults';
