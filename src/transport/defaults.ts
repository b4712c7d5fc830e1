// Transport timings and limits: how channels and the acceptor pace themselves.

/** Broker: how long a client that is being dropped may take to read its last error reply. */
export const END_TIMEOUT_MS = 1_000;
/** Broker: messages read from one client per readiness event (fairness between clients). */
export const MESSAGES_PER_TURN = 16;
/** Broker: pause before accepting again after EMFILE/ENFILE. */
export const ACCEPT_RETRY_MS = 100;
/**
 * Broker: backlog of the control socket's own listen(2). Small on purpose: under a connect flood
 * it is full, and a granted client's connection waits behind every one queued (bench/refusal-flood.js:
 * 512 gave a status p50 of ~50 ms, 128 ~25 ms); a client retries EAGAIN until its timeout.
 */
export const CONTROL_BACKLOG = 128;
/** Broker: connections accepted per readiness event; the rest wait for the next turn, so a connect flood cannot starve clients already connected. */
export const ACCEPTS_PER_TURN = 32;
