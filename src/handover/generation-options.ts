// What an app passes to startGeneration() and the events a Generation emits:
// a leaf module (types and one pure helper), so other modules can name them
// without importing the Generation class.
import type { DrainResult } from './drain';
import type { UpgradeFailure } from './upgrade';
import { DEFAULT_STANDBY_REQUEST_MS } from './defaults';

export interface GenerationOptions {
  /** Only these listeners (default all; [] for none, e.g. a cluster primary whose workers adopt). */
  names?: string[];
  /** Free text shown in `fdbroker status`. */
  label?: string;
  /** Deadline for joining, in ms (default 10 s). */
  timeout?: number;
  /** On retire: 'drain' (default) drains every server attached to these listeners, then leaves; 'none' only emits 'retire'. */
  onRetire?: 'drain' | 'none';
  /** drain() deadline (default 30 s). */
  drainTimeout?: number;
  /** drain() spread: ms over which connections are told to close (default 1 s). */
  drainSpread?: number;
  /**
   * The app as its own broker: listener specs (as `fdbroker serve --listen`)
   * created by the first process when nothing answers on the path. A
   * successor adopts them from its predecessor instead. When the path is a
   * standalone `fdbroker serve`, this option is not used: the process is an
   * ordinary generation of that broker.
   */
  listen?: string[];
  /** Self-broker mode: mode of the control socket (default 0600). */
  mode?: number;
  /** fds that must stay free below RLIMIT_NOFILE after adopting (default 64; 0 to skip). */
  fdHeadroom?: number;
  /** uids trusted to run the broker (default: this process's uid, and root). */
  trustUids?: number[];
  /**
   * Warm standby: after a newer generation is ready, stop accepting but stay
   * able to resume for this many ms (capped by the broker's --standby), in
   * case the newer one dies or stops accepting. 'drained' comes after the
   * window. Default 5 s with onRetire 'drain'; 0 with 'none' (the app then
   * handles 'resume' itself). 0 turns it off.
   */
  standby?: number;
}

export interface GenerationEvents {
  /** A newer generation is ready; `by` is its number. With standby, accepting stops now and draining after the window. */
  retire: [by: number];
  /** Standby: the newer generation failed (it left or stopped accepting); this one accepts again. */
  resume: [info: { failed: number; reason: string }];
  /** The connection to the broker was restored (a restarted or replaced broker): this generation joined it again. */
  rejoin: [info: { generation: number; state: string }];
  /** After retire: every attached server is drained; the connection to the broker is closed. */
  drained: [result: DrainResult];
  /** The broker connection ended without a retire (broker stopped or crashed). Serving goes on, and the generation rejoins the path when a broker answers there again. */
  brokerLost: [err: Error];
  /** upgradeOnSignal(): a successor was started. */
  upgrade: [pid: number];
  /** upgradeOnSignal(): the successor exited, or was stopped, before it became ready. This process serves on. */
  upgradeFailed: [info: UpgradeFailure];
  /** upgradeOnSignal(): a signal arrived while an upgrade was in flight (or while retiring) and was ignored. */
  upgradeRefused: [reason: string];
}

/** The standby window a generation asks for: its option, else the default when the library drains it (an app that retires itself asks for none). */
export function standbyRequest(o: GenerationOptions): number {
  return o.standby ?? ((o.onRetire ?? 'drain') === 'drain' ? DEFAULT_STANDBY_REQUEST_MS : 0);
}
