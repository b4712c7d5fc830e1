// `fdbroker wait`: block until a generation is ready (and, by default, every
// older one has left), for deploy scripts; the exit status says what happened.
import { BrokerConnection } from '../client/connection';
import type { FdbrokerError } from '../protocol/errors';
import type { StatusMessage } from '../protocol/messages';
import { choiceOption, controlPathOf, intOption, msOption, parseCommand } from './args';
import { DEFAULT_WAIT_TIMEOUT_MS, WAIT_POLL_MS } from './defaults';
import type { Io } from './main';

/** Exit statuses of `fdbroker wait`, as documented in --help and the README. */
export const WAIT_EXIT = { ok: 0, timeout: 1, usage: 2, broker: 3, gone: 4 } as const;

/** Largest pid Linux hands out (PID_MAX_LIMIT, 2^22). */
const MAX_PID = 4_194_304;

const OPTIONS = {
  pid: { type: 'string' },
  until: { type: 'string' },
  timeout: { type: 'string' },
  quiet: { type: 'boolean' },
} as const;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One evaluation of a wait condition: 'ok', 'wait', 'gone' (the generation
 * was retired or missed its ready timeout), or 'absent' (`pid` is no
 * generation and no longer runs: it left, or never joined).
 */
export function waitCondition(s: StatusMessage, until: 'ready' | 'handover', pid: number | undefined, pidIsAlive: (pid: number) => boolean): 'ok' | 'wait' | 'gone' | 'absent' {
  const gens = s.generations;
  const target = pid !== undefined
    ? gens.find((g) => g.pid === pid)
    : [...gens].sort((a, b) => b.number - a.number)[0];
  if (!target) return pid !== undefined && !pidIsAlive(pid) ? 'absent' : 'wait';
  if (target.state === 'retiring' && until === 'handover') return 'gone';
  if (target.state !== 'ready' && target.state !== 'retiring') return target.readyOverdue ? 'gone' : 'wait';
  if (until === 'ready') return 'ok';
  return gens.some((g) => g.number < target.number) ? 'wait' : 'ok';
}

export async function wait(args: string[], io: Io): Promise<number> {
  const { values: v, positionals } = parseCommand('wait', args, OPTIONS);
  const controlPath = controlPathOf('wait', positionals);
  const until = choiceOption('until', v.until, ['handover', 'ready'], 'handover');
  const pid = intOption('pid', v.pid, 1, MAX_PID);
  const timeout = msOption('timeout', v.timeout) ?? DEFAULT_WAIT_TIMEOUT_MS;
  const deadline = Date.now() + timeout;
  const who = pid !== undefined ? `generation of pid ${pid}` : 'newest generation';
  const failed = (err: unknown) => io.err(`fdbroker: ${(err as FdbrokerError).code ?? ''}: ${(err as Error).message}`);
  let conn: BrokerConnection;
  try {
    conn = await BrokerConnection.connect(controlPath, { timeout });
  } catch (err) {
    failed(err);
    // Out of time while the broker is still answering is a timeout, not a lost broker.
    return (err as FdbrokerError).code === 'ERR_FDBROKER_TIMEOUT' ? WAIT_EXIT.timeout : WAIT_EXIT.broker;
  }
  const notJoined = `pid ${pid} has not joined as a generation of the broker at ${controlPath}`;
  const whatToCheck = `check that --pid is the app's own pid (not that of a shell or wrapper that started it) and that the app connects to ${controlPath}; \`fdbroker status ${controlPath}\` lists the generations`;
  /** The pid was listed as a generation at some point during this wait. */
  let joined = false;
  try {
    for (;;) {
      let s: StatusMessage;
      try {
        s = await conn.status(Math.max(1, deadline - Date.now()));
      } catch (err) {
        failed(err);
        return (err as FdbrokerError).code === 'ERR_FDBROKER_TIMEOUT' && Date.now() >= deadline ? WAIT_EXIT.timeout : WAIT_EXIT.broker;
      }
      if (pid !== undefined && s.generations.some((g) => g.pid === pid)) joined = true;
      const r = waitCondition(s, until, pid, pidAlive);
      if (r === 'ok') {
        if (v.quiet !== true) io.out(`fdbroker: ${who} is ${until === 'ready' ? 'ready' : 'ready and every older generation has left'}`);
        return WAIT_EXIT.ok;
      }
      if (r === 'absent' && !joined) {
        io.err(`fdbroker: ${notJoined} and is not running (or it left before this wait began): ${whatToCheck}, and the app's output for why it exited`);
        return WAIT_EXIT.gone;
      }
      if (r === 'gone' || r === 'absent') {
        io.err(`fdbroker: ${who} left, was retired or missed its ready timeout without becoming ready`);
        return WAIT_EXIT.gone;
      }
      if (Date.now() >= deadline) {
        io.err(pid !== undefined && !joined
          ? `fdbroker: timed out after ${timeout} ms: ${notJoined}; it is running: ${whatToCheck}`
          : `fdbroker: timed out after ${timeout} ms waiting for the ${who} to be ${until === 'ready' ? 'ready' : 'ready and alone'}`);
        return WAIT_EXIT.timeout;
      }
      await new Promise((res) => setTimeout(res, WAIT_POLL_MS));
    }
  } finally {
    conn.close();
  }
}
