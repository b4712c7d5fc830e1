// Client defaults: connecting, adopting, fd headroom.

/** Client: how long adoptListeners()/connect() may take in all. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** Client: pause between connect() retries while the broker's queue is full (EAGAIN). */
export const CONNECT_RETRY_MS = 5;
/** Client: fds that must stay free below RLIMIT_NOFILE after adopting (libuv resets queued connections under EMFILE). */
export const DEFAULT_FD_HEADROOM = 64;
/** Client: adoptListeners() checks each fd when it is first used ('use'), not all before it resolves ('adopt'). */
export const DEFAULT_CHECK: 'adopt' | 'use' = 'use';
