// Every limit and timeout fdbroker uses, named, exported as defaults, and
// overridable through the options of the function that uses it.

/** Protocol versions this build speaks, newest first. */
export const PROTOCOL_VERSIONS = [1] as const;
export const PROTOCOL_VERSION = 1;

/** Largest protocol message, in bytes (one SOCK_SEQPACKET packet). */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** The kernel's limit on fds in one SCM_RIGHTS message (SCM_MAX_FD). */
export const MAX_FDS_PER_MESSAGE = 253;
/** Longest listener name, in bytes. */
export const MAX_NAME_BYTES = 128;
/** Longest generation label, in bytes. */
export const MAX_LABEL_BYTES = 256;
/** Most listeners one broker holds. */
export const MAX_LISTENERS = 4096;
/** Most names one adopt request may list. */
export const MAX_NAMES_PER_REQUEST = MAX_LISTENERS;

/** Client: how long adoptListeners()/connect() may take in all. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** Client: pause between connect() retries while the broker's queue is full (EAGAIN). */
export const CONNECT_RETRY_MS = 5;

/** Broker: a client must finish the hello within this time or is dropped. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;
/** Broker: a client that sends nothing for this long is dropped (0: never). */
export const DEFAULT_IDLE_TIMEOUT_MS = 0;
/** Broker: messages queued for a client that is not reading before it is dropped. */
export const DEFAULT_MAX_QUEUED_MESSAGES = 64;
/** Broker: most connected clients at once; further ones are told ERR_FDBROKER_OVERLOADED. */
export const DEFAULT_MAX_CLIENTS = 1024;
/** Broker: how long a client that is being dropped may take to read its last error reply. */
export const END_TIMEOUT_MS = 1_000;
/** Broker: most clients per uid other than the broker's own and root. */
export const DEFAULT_MAX_CLIENTS_PER_UID = 64;
/** Client: fds that must stay free below RLIMIT_NOFILE after adopting (libuv resets queued connections under EMFILE). */
export const DEFAULT_FD_HEADROOM = 64;
/** Broker: backlog of the control socket's own listen(2). */
export const CONTROL_BACKLOG = 512;
/** Broker: messages read from one client per readiness event (fairness between clients). */
export const MESSAGES_PER_TURN = 16;
/** Broker: pause before accepting again after EMFILE/ENFILE. */
export const ACCEPT_RETRY_MS = 100;

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
/** Library: drain() tells keep-alive connections to close at moments spread over this many ms. */
export const DEFAULT_DRAIN_SPREAD_MS = 1_000;
/** Library: how long drain() lets in-flight requests finish before closing what is left. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** CLI: default deadline of `fdbroker wait`. */
export const DEFAULT_WAIT_TIMEOUT_MS = 30_000;
/** CLI: how often `fdbroker wait` asks the broker. */
export const WAIT_POLL_MS = 50;
/** exec: how long the program may take to exit after the retire signal before SIGKILL. */
export const DEFAULT_EXEC_STOP_TIMEOUT_MS = 30_000;
/** exec: largest sd_notify datagram read (systemd's NOTIFY_BUFFER_MAX); longer ones are ignored. */
export const NOTIFY_MAX_DATAGRAM_BYTES = 4096;
/** Library: a successor started by upgradeOnSignal() not ready within this time is stopped. */
export const DEFAULT_UPGRADE_TIMEOUT_MS = 60_000;
