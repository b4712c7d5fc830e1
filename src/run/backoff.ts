// Restart backoff of `fdbroker run`: the first crash in a window restarts at
// once (the socket is kept, connections wait in its accept queue), later ones
// wait RESTART_BACKOFF_MIN_MS doubled each time, capped at RESTART_BACKOFF_MAX_MS.
import { RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_MIN_MS } from './defaults';

export interface BackoffOptions { minMs?: number; maxMs?: number }

/** The delay before the restart that follows the `crashes`-th crash of the current window (1 = the first: no delay). */
export function restartDelay(crashes: number, o: BackoffOptions = {}): number {
  const min = o.minMs ?? RESTART_BACKOFF_MIN_MS;
  const max = o.maxMs ?? RESTART_BACKOFF_MAX_MS;
  if (crashes <= 1) return 0;
  // 2^(crashes - 2) stays finite for any count: the exponent is capped well before overflow.
  return Math.min(max, min * 2 ** Math.min(crashes - 2, 30));
}
