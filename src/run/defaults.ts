// `fdbroker run` defaults: restart backoff, crash-loop window, output kept
// for failure reports, stop and readiness deadlines.

/** run: the first unrequested exit in a crash-loop window is restarted at once; the next ones wait this long, doubled each time... */
export const RESTART_BACKOFF_MIN_MS = 100;
/** ...up to this cap. */
export const RESTART_BACKOFF_MAX_MS = 2_000;
/** run: this many unrequested exits (crashes, or exits without being told to retire) within CRASH_LOOP_WINDOW_MS is a crash loop: run stops and exits RUN_EXIT.crashLoop (systemd's StartLimitBurst=5 within StartLimitIntervalSec=10s, the same numbers). */
export const CRASH_LOOP_COUNT = 5;
export const CRASH_LOOP_WINDOW_MS = 10_000;
/** run: lines of each process's output kept, printed when it fails (a deploy that fails, a crash). */
export const OUTPUT_TAIL_LINES = 20;
/** run: longest line kept in that tail (longer lines are cut). */
export const OUTPUT_TAIL_LINE_BYTES = 1_000;
/** run: on SIGTERM/SIGINT, processes still running this long after the stop signal are sent SIGKILL. */
export const DEFAULT_RUN_STOP_TIMEOUT_MS = 30_000;
/** run: a started process (first start, restart, deploy) not ready within this time is stopped (a deploy fails; a restart counts as a crash). */
export const DEFAULT_RUN_READY_TIMEOUT_MS = 60_000;
/** run: when the serving process dies while the one it replaced stands by, how long the broker gets to resume that one before run starts a new process. */
export const ROLLBACK_WAIT_MS = 1_000;
/**
 * run --spare: after a promoted spare is ready, the next spare starts this
 * much later, so its start (a Node boot: 100 ms of a CPU, more on a loaded
 * machine) does not compete with the promoted process for the CPU while it
 * serves the queue that built up while nobody served. A crash meanwhile is
 * restarted as without a spare.
 */
export const SPARE_REPLACE_DELAY_MS = 1_000;
