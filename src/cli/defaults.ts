// CLI defaults and limits: `fdbroker serve` (flags and --config), `fdbroker wait` and `fdbroker exec`.

/** CLI: default deadline of `fdbroker wait`. */
export const DEFAULT_WAIT_TIMEOUT_MS = 30_000;
/** CLI: how often `fdbroker wait` asks the broker. */
export const WAIT_POLL_MS = 50;
/** exec: how long the program may take to exit after the retire signal before SIGKILL. */
export const DEFAULT_EXEC_STOP_TIMEOUT_MS = 30_000;
/** exec: largest sd_notify datagram read (systemd's NOTIFY_BUFFER_MAX); longer ones are ignored. */
export const NOTIFY_MAX_DATAGRAM_BYTES = 4096;
/** serve: largest --max-clients and --max-clients-per-uid (and [limits] in --config). */
export const MAX_CLIENTS_LIMIT = 1_000_000;
/** serve: largest listen(2) backlog accepted by --backlog (as ?backlog= in a spec, and backlog in --config). */
export const MAX_BACKLOG = 65535;
/** serve --takeover --metrics: how long the new broker retries binding the metrics address the old one holds until it exits. */
export const TAKEOVER_METRICS_WAIT_MS = 5_000;
