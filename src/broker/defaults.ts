// The broker's defaults; each is overridable through a BrokerOptions field (and a `fdbroker serve` flag).

/** Broker: a client must finish the hello within this time or is dropped. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;
/** Broker: a client that sends nothing for this long is dropped (0: never). */
export const DEFAULT_IDLE_TIMEOUT_MS = 0;
/** Broker: messages queued for a client that is not reading before it is dropped. */
export const DEFAULT_MAX_QUEUED_MESSAGES = 64;
/** Broker: most connected clients at once; further ones are told ERR_FDBROKER_OVERLOADED. */
export const DEFAULT_MAX_CLIENTS = 1024;
/** Broker: most clients per uid other than the broker's own and root. */
export const DEFAULT_MAX_CLIENTS_PER_UID = 64;
/** Backlog of listeners the broker creates, unless --backlog says otherwise. */
export const DEFAULT_LISTEN_BACKLOG = 511;
/** Mode of the control socket. */
export const DEFAULT_CONTROL_MODE = 0o600;
/** Broker: a generation not ready within this time is reported, and its ready() refused. */
export const DEFAULT_READY_TIMEOUT_MS = 60_000;
/** Broker: a generation told to retire and still connected after this time is reported. */
export const DEFAULT_RETIRE_TIMEOUT_MS = 30_000;
/** Broker: how often generation deadlines are checked. */
export const GENERATION_CHECK_INTERVAL_MS = 250;
/** Broker: how long a retired generation stands by, able to resume if its successor fails (0: no standby). */
export const DEFAULT_STANDBY_MS = 5_000;
/** Broker: a listener whose accept queue is non-empty and has not shrunk for this long is stalled (nobody accepts). */
export const DEFAULT_STALL_TIMEOUT_MS = 2_000;
/** Broker: how often accept queues are sampled for stalls while a generation stands by (a stall then rolls back). */
export const ACCEPT_SAMPLE_INTERVAL_MS = 100;
/** Broker: how often accept queues are sampled when no generation stands by (a stall is only reported; status shows the last sample). */
export const ACCEPT_SAMPLE_IDLE_INTERVAL_MS = 500;
/** Broker: longest a status answer waits for its /proc scan of listener holders; after that it is sent without holders. */
export const HOLDERS_STATUS_TIMEOUT_MS = 2_000;
