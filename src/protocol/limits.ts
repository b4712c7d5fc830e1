// Limits of protocol v1 (PROTOCOL.md): every message and field has a bound a peer can rely on.

/** Protocol versions this build speaks, newest first. */
export const PROTOCOL_VERSIONS = [1] as const;
export const PROTOCOL_VERSION = 1;
/**
 * Optional message types and field values this broker accepts, announced in
 * "welcome" (PROTOCOL.md §5): a client sends one only when the broker listed
 * it, so an older broker, which answers an unknown type by closing, never
 * sees it. "leaving": the `leaving` message (a planned stop);
 * "standby-rejoin": `rejoin` with state "standby" and `standbyLeft`;
 * "epoch": `epoch` on join's `listeners` and rejoin's `ack`, and on `rejoin`;
 * "spare": `spare` on `join` (a warm spare, exempt from the ready timeout until it says ready);
 * "slots": `slot` on `join` and `rejoin` (an instance slot of `run --instances`);
 * "pause": `pause` and `unpause` requests, `pause` on join, the "accepting" notice.
 */
export const PROTOCOL_FEATURES = ['holding', 'takeover', 'leaving', 'standby-rejoin', 'epoch', 'spare', 'slots', 'pause'] as const;
export type ProtocolFeature = typeof PROTOCOL_FEATURES[number];
/**
 * Largest generation number on the wire (rejoin, listeners, ack, retire,
 * resume, release, moved, handoff): a larger one is a protocol error, so no
 * claim can push a broker's numbering out of the range every peer handles.
 */
export const MAX_GENERATION = 2 ** 31 - 1;
/** Instance slots (`run --instances N`, `slot` on join and rejoin) are 0 to MAX_INSTANCES - 1. */
export const MAX_INSTANCES = 64;
/** Largest count a "holding" report may carry (per field). */
export const MAX_HOLDING_COUNT = 10_000_000;
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
/** Longest error text in a reply; longer texts are cut (the reply must fit one message). */
export const MAX_ERROR_TEXT_BYTES = 1024;
/** Longest standby window a generation may ask for, in ms. */
export const MAX_STANDBY_MS = 10 * 60_000;
/** Most grant changes a `reloaded` answer lists (the decoder's bound; a 64 KiB message holds fewer anyway). */
export const MAX_GRANT_CHANGES = 4096;
/** Longest pause a `pause` request may ask for on the wire (the broker caps it lower: MAX_PAUSE_MS). */
export const MAX_PAUSE_REQUEST_MS = 2 ** 31 - 1;
