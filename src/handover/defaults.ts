// Handover defaults: drain and upgrade deadlines.

/** Library: drain() tells keep-alive connections to close at moments spread over this many ms. */
export const DEFAULT_DRAIN_SPREAD_MS = 1_000;
/** Library: how long drain() lets in-flight requests finish before closing what is left. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** Library: a successor started by upgradeOnSignal() not ready within this time is stopped. */
export const DEFAULT_UPGRADE_TIMEOUT_MS = 60_000;
/** Library: the standby window a generation asks for when it joins (the broker caps it with its own). */
export const DEFAULT_STANDBY_REQUEST_MS = 5_000;
/** Library: a generation standing by finishes retiring this long after its window if the broker said nothing. */
export const STANDBY_GRACE_MS = 2_000;
/** Library: first pause before joining a broker again after the connection was lost; doubled up to the max. */
export const REJOIN_RETRY_MS = 200;
export const REJOIN_RETRY_MAX_MS = 2_000;
/** Library: a retiring generation reports what it still holds to the broker at most this often (and once when retiring starts). */
export const HOLDING_REPORT_MS = 250;
