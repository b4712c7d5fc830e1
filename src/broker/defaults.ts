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
/**
 * Metrics: upper bounds (seconds) of the handover histograms (join -> ready, ready -> the
 * retired generation gone). From a fast app's ready (tens of ms) to the retire timeout's order (minutes).
 */
export const HANDOVER_SECONDS_BUCKETS: readonly number[] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Metrics endpoint: most HTTP connections open at once (scrapers are few; more are refused by the kernel's backlog). */
export const METRICS_MAX_CONNECTIONS = 16;
/** Metrics endpoint: a request must arrive whole within this time. */
export const METRICS_REQUEST_TIMEOUT_MS = 5_000;
/** Metrics endpoint: a request's headers must arrive within this time (slow clients hold one of the few connections). */
export const METRICS_HEADERS_TIMEOUT_MS = 2_000;
/** Metrics endpoint: a connection with nothing to send or receive is closed after this long. */
export const METRICS_IDLE_TIMEOUT_MS = 5_000;
/** Metrics endpoint: how often node:http checks the two timeouts above (its default, 30 s, let 16 slow clients blind it for ~37 s). */
export const METRICS_TIMEOUT_CHECK_INTERVAL_MS = 250;
/** Metrics endpoint: scrapes within this time of the last one get its text (pipelined or concurrent scrapes cost one status; the /proc holders scan is reused for 1 s anyway). */
export const METRICS_MIN_SCRAPE_INTERVAL_MS = 250;
/** sd_notify: pause before sending again a notification the manager's full queue refused (EAGAIN). */
export const SD_NOTIFY_RETRY_MS = 20;
/** sd_notify: tries before such a notification is dropped (with a warning). */
export const SD_NOTIFY_RETRIES = 50;
/**
 * Broker: after it starts, how long generations that outlived the old broker may take to rejoin
 * (their retry backs off to 2 s) before a generation standing by with nobody ready above it resumes.
 */
export const REJOIN_GRACE_MS = 2_500;
/** Takeover: a generation imported from the predecessor that has not rejoined this broker within this time has left. */
export const TAKEOVER_REJOIN_WINDOW_MS = 10_000;
/** Takeover (the old broker): a successor that has not committed within this time, and has not taken the path, is dropped (joins wait meanwhile). */
export const TAKEOVER_COMMIT_TIMEOUT_MS = 10_000;
/** Takeover (the old broker): how long it lets its last messages (moved) flush before it closes. */
export const TAKEOVER_FLUSH_MS = 1_000;
/** Takeover (the new broker): how long it waits for the predecessor to exit and free the path's lock. */
export const TAKEOVER_LOCK_WAIT_MS = 10_000;
/** Refusals at accept after the first of a uid are counted and reported once per this interval (a log line each, not one per connection). */
export const REFUSAL_SUMMARY_INTERVAL_MS = 10_000;
/** Share of the broker's RLIMIT_NOFILE that one uid (not the broker's own, not root) may hold in unread handouts. */
export const FDS_IN_FLIGHT_SHARE_PER_UID = 0.25;
/** The per-uid fds-in-flight cap is never below this (a tiny RLIMIT_NOFILE must still allow a handout of a few listeners). */
export const MIN_FDS_IN_FLIGHT_PER_UID = 16;
/** A client that has not read a handout with fds for this long is dropped (its fds in flight are freed); 0: never. */
export const DEFAULT_UNREAD_HANDOUT_TIMEOUT_MS = 30_000;
