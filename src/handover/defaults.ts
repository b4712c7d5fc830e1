// Handover defaults: drain and upgrade deadlines.

/** Library: drain() tells keep-alive connections to close at moments spread over this many ms. */
export const DEFAULT_DRAIN_SPREAD_MS = 1_000;
/** Library: how long drain() lets in-flight requests finish before closing what is left. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** Library: a successor started by upgradeOnSignal() not ready within this time is stopped. */
export const DEFAULT_UPGRADE_TIMEOUT_MS = 60_000;
