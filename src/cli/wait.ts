// `fdbroker wait`: block until a generation is ready (and, by default, every
// older one has left), for deploy scripts; the exit status says what happened.
import { BrokerConnection } from '../client/connection';
import type { FdbrokerError } from '../protocol/errors';
import type { StatusMessage } from '../protocol/messages';
import { choiceOption, controlPathOf, intOption, msOption, parseCommand } from './args';
import { DEFAULT_WAIT_TIMEOUT_MS, WAIT_POLL_MS } from './defaults';
import type { Io } from './io';
import { inTree } from './proc-tree';
import { outsideHolders, outsideHoldersWarning, type OutsideHolder } from './outside-holders';
import { pidAlive } from '../native/process';

/** Exit statuses of `fdbroker wait`, as documented in --help and docs/reference/cli.md. */
export const WAIT_EXIT = { ok: 0, timeout: 1, usage: 2, broker: 3, gone: 4, draining: 5, rolledBack: 6 } as const;

/** Largest pid Linux hands out (PID_MAX_LIMIT, 2^22). */
const MAX_PID = 4_194_304;

const OPTIONS = {
  pid: { type: 'string' },
  until: { type: 'string' },
  timeout: { type: 'string' },
  quiet: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;


/** The generation `wait` watches: the newest of PID's process tree (PID itself or a descendant, e.g. under a wrapper), or the newest of all. */
export function waitTarget(s: StatusMessage, pid: number | undefined, isInTree: (pid: number, root: number) => boolean = inTree):
  StatusMessage['generations'][number] | undefined {
  const newestFirst = [...s.generations].sort((a, b) => b.number - a.number);
  return pid === undefined ? newestFirst[0] : newestFirst.find((g) => g.pid === pid || isInTree(g.pid, pid));
}

/**
 * One evaluation of a wait condition: 'ok', 'wait', 'gone' (the generation
 * was retired or missed its ready timeout), 'failed' (it was ready and was
 * rolled back), or 'absent' (`pid` is no generation and no longer runs: it
 * left, or never joined).
 */
export function waitCondition(s: StatusMessage, until: 'ready' | 'handover', pid: number | undefined, pidIsAlive: (pid: number) => boolean,
  isInTree: (pid: number, root: number) => boolean = inTree): 'ok' | 'wait' | 'gone' | 'failed' | 'absent' {
  const gens = s.generations;
  const target = waitTarget(s, pid, isInTree);
  if (!target) return pid !== undefined && !pidIsAlive(pid) ? 'absent' : 'wait';
  // Failed without ever being ready (its ready was refused: not-holding): gone before ready, no rollback of a ready one.
  if (target.state === 'failed') return target.readyAt === undefined ? 'gone' : 'failed';
  if ((target.state === 'retiring' || target.state === 'standby') && until === 'handover') return 'gone';
  if (target.state === 'starting') return target.readyOverdue ? 'gone' : 'wait';
  if (until === 'ready') return 'ok';
  return gens.some((g) => g.number < target.number) ? 'wait' : 'ok';
}

export async function wait(args: string[], io: Io): Promise<number> {
  const { values: v, positionals } = parseCommand('wait', args, OPTIONS);
  const controlPath = controlPathOf('wait', positionals);
  const until = choiceOption('until', v.until, ['handover', 'ready'], 'handover');
  const pid = intOption('pid', v.pid, 1, MAX_PID);
  const timeout = msOption('timeout', v.timeout) ?? DEFAULT_WAIT_TIMEOUT_MS;
  const started = Date.now();
  const deadline = started + timeout;
  let last: StatusMessage | undefined;
  // --json: one line on stdout with the verdict, whatever it is.
  // Processes holding a listener that are no generation (looked up once the condition holds): the old code may serve on there.
  let holders: OutsideHolder[] = [];
  const verdict = (result: keyof typeof WAIT_EXIT): number => {
    if (v.json === true) {
      const t = last ? waitTarget(last, pid) : undefined;
      io.out(JSON.stringify({
        result, ...(pid !== undefined ? { startedPid: pid } : {}),
        ...(t ? { pid: t.pid, generation: t.number, state: t.state } : {}),
        older: last && t ? last.generations.filter((g) => g.number < t.number).map((g) => ({ pid: g.pid, generation: g.number, state: g.state })) : [],
        holders,
        ms: Date.now() - started,
      }));
    }
    return WAIT_EXIT[result];
  };
  const who = pid !== undefined ? `generation of pid ${pid}` : 'newest generation';
  const failed = (err: unknown) => io.err(`fdbroker: ${(err as FdbrokerError).code ?? ''}: ${(err as Error).message}`);
  let conn: BrokerConnection;
  try {
    conn = await BrokerConnection.connect(controlPath, { timeout });
  } catch (err) {
    failed(err);
    // Out of time while the broker is still answering is a timeout, not a lost broker.
    return verdict((err as FdbrokerError).code === 'ERR_FDBROKER_TIMEOUT' ? 'timeout' : 'broker');
  }
  const notJoined = `pid ${pid} has not joined as a generation of the broker at ${controlPath}`;
  const whatToCheck = `check that --pid is the app's pid or that of a wrapper it runs under (npx, sh -c, fdbroker exec), not of a process that ended, and that the app connects to ${controlPath}; \`fdbroker status ${controlPath}\` lists the generations`;
  /** The pid was listed as a generation at some point during this wait; and was seen ready. */
  let joined = false;
  let seenReady: number | undefined;
  const atDeadline = (s: StatusMessage): number => {
    // Ready but not alone: deployed, the old version still drains. Never a rollback.
    if (waitCondition(s, 'ready', pid, pidAlive) === 'ok') {
      io.err(`fdbroker: ${who} is ready; older generations still draining after ${timeout} ms`);
      return verdict('draining');
    }
    io.err(pid !== undefined && !joined
      ? `fdbroker: timed out after ${timeout} ms: ${notJoined}; it is running: ${whatToCheck}`
      : `fdbroker: timed out after ${timeout} ms waiting for the ${who} to be ${until === 'ready' ? 'ready' : 'ready and alone'}`);
    return verdict('timeout');
  };
  try {
    for (;;) {
      let s: StatusMessage;
      try {
        // No holders: polled every WAIT_POLL_MS, each would cost the broker a /proc scan during the deploy.
        s = await conn.status(Math.max(1, deadline - Date.now()), { holders: false });
      } catch (err) {
        // Out of time during a status request: judge by the last answer, as at any deadline.
        if ((err as FdbrokerError).code === 'ERR_FDBROKER_TIMEOUT' && Date.now() >= deadline && last) return atDeadline(last);
        failed(err);
        return verdict((err as FdbrokerError).code === 'ERR_FDBROKER_TIMEOUT' && Date.now() >= deadline ? 'timeout' : 'broker');
      }
      last = s;
      const target = waitTarget(s, pid);
      if (target) joined = true;
      if (target?.state === 'ready') seenReady = target.number;
      const r = waitCondition(s, until, pid, pidAlive);
      if (r === 'ok') {
        if (until === 'handover') {
          // One status with the /proc holder scan, once: who else still holds a listener.
          try {
            holders = outsideHolders(await conn.status(Math.max(1, deadline - Date.now())));
          } catch {
            holders = [];   // the deploy succeeded; the holder list is best effort
          }
        }
        if (holders.length > 0) {
          // Said even with --quiet or --json: the old code may still answer part of the connections.
          io.err(`fdbroker: ${who} is ready and every older generation has left, ${outsideHoldersWarning(holders)}`);
        } else if (v.quiet !== true && v.json !== true) {
          io.out(`fdbroker: ${who} is ${until === 'ready' ? 'ready' : 'ready and every older generation has left'}`);
        }
        return verdict('ok');
      }
      // Ready, then failed (rolled back) or gone without being retired: the broker resumed the older version.
      if (r === 'failed' || (seenReady !== undefined && !s.generations.some((g) => g.number === seenReady))) {
        const g = s.generations.find((x) => x.number === seenReady);
        io.err(`fdbroker: ROLLED BACK: the ${who} was ready, then ${g?.failedReason === 'stalled' ? 'stopped accepting' : g?.failedReason === 'hung' ? 'stopped answering (hung)' : 'failed or exited'}; `
          + `the older version serves again (see \`fdbroker status ${controlPath}\`)`);
        return verdict('rolledBack');
      }
      if (r === 'absent' && !joined) {
        io.err(`fdbroker: ${notJoined} and is not running (or it left before this wait began): ${whatToCheck}, and the app's output for why it exited`);
        return verdict('gone');
      }
      if (r === 'gone' || r === 'absent') {
        io.err(`fdbroker: ${who} left, was retired or missed its ready timeout without becoming ready`);
        return verdict('gone');
      }
      if (Date.now() >= deadline) return atDeadline(s);
      await new Promise((res) => setTimeout(res, WAIT_POLL_MS));
    }
  } finally {
    conn.close();
  }
}
