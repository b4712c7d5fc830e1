// `fdbroker deploy PATH [-- CMD ARGS...]`: start the new version and follow
// the handover to its end, with the exit statuses of examples/blue-green.sh.
//   With CMD: CMD starts beside whatever serves PATH (any broker), in a
//     session of its own, with FDBROKER_PATH=PATH (a library app calls
//     startGeneration() with no path), its output to --log FILE.
//   Without CMD: the `fdbroker run` on PATH is told to start its command anew
//     (SIGHUP to its pid, from PATH.run.json, checked against the broker's
//     status); run starts it and reports it in that file.
// Progress (started, ready, old version standing by, drained or rolled back,
// with times) goes to stderr; stdout gets one JSON verdict line unless it is a
// terminal (or with --json always).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BrokerConnection } from '../client/connection';
import type { FdbrokerError } from '../protocol/errors';
import type { StatusMessage } from '../protocol/messages';
import { controlPathOf, msOption, parseCommand, UsageError } from './args';
import { DEFAULT_WAIT_TIMEOUT_MS, WAIT_POLL_MS } from './defaults';
import type { Io } from './io';
import { waitCondition, waitTarget } from './wait';
import { readRunFile, runFilePath, type RunDeploy } from '../run/run-file';
import { RUN_PATH_ENV } from '../handover/run-env';
import { OutputTail } from '../run/output-tail';
import { peerPid } from '../run/peer-pid';
import { inTree } from './proc-tree';
import { outsideHolders, outsideHoldersWarning } from './outside-holders';
import { pidAlive } from '../native/process';

/** Exit statuses of `fdbroker deploy` (those of examples/blue-green.sh). */
export const DEPLOY_EXIT = { deployed: 0, rolledBack: 1, usage: 2, draining: 3, error: 4, rolledBackAfterReady: 5 } as const;
type Verdict = 'deployed' | 'draining' | 'rolled_back' | 'rolled_back_after_ready' | 'error';
const EXIT_OF: Record<Verdict, number> = {
  deployed: DEPLOY_EXIT.deployed, draining: DEPLOY_EXIT.draining, rolled_back: DEPLOY_EXIT.rolledBack,
  rolled_back_after_ready: DEPLOY_EXIT.rolledBackAfterReady, error: DEPLOY_EXIT.error,
};
/** How long deploy waits for `run` to report the process it started on SIGHUP (and, after a failure, its last lines). */
const RUN_REPORT_MS = 5_000;

const OPTIONS = {
  timeout: { type: 'string' },
  log: { type: 'string' },
  json: { type: 'boolean' },
} as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


/** `result`: what `fdbroker wait --json` would say (ok, timeout, gone, draining, rolledBack, broker). */
interface Watched { verdict: Verdict; result: string; last: StatusMessage | undefined; why?: string }

/**
 * Follows the generation of `pid` on the broker at `sock` until it serves
 * alone, fails, or `timeoutMs` passes, printing each step once.
 */
async function follow(sock: string, pid: number, started: number, timeoutMs: number, step: (s: string) => void,
  failedElsewhere?: () => string | undefined): Promise<Watched> {
  const deadline = started + timeoutMs;
  const t = () => `${Date.now() - started} ms`;
  let conn: BrokerConnection;
  try {
    conn = await BrokerConnection.connect(sock, { timeout: Math.max(1, deadline - Date.now()) });
  } catch (err) {
    return { verdict: 'error', result: 'broker', last: undefined, why: `cannot reach the broker at ${sock}: ${(err as FdbrokerError).code ?? ''} ${(err as Error).message}` };
  }
  let last: StatusMessage | undefined;
  let joined: number | undefined;
  let seenReady: number | undefined;
  const told = new Map<number, string>();
  try {
    for (;;) {
      let s: StatusMessage;
      try {
        s = await conn.status(Math.max(1, deadline - Date.now()), { holders: false });
      } catch (err) {
        if (last && Date.now() >= deadline) break;
        return { verdict: 'error', result: 'broker', last, why: `the broker stopped answering: ${(err as Error).message}` };
      }
      last = s;
      const target = waitTarget(s, pid);
      if (target && joined === undefined) {
        joined = target.number;
        step(`pid ${pid} joined as generation ${target.number} after ${t()}`);
      }
      if (target?.state === 'ready' && seenReady === undefined) {
        seenReady = target.number;
        step(`generation ${target.number} ready after ${t()}`);
      }
      if (target) {
        for (const g of s.generations) {
          if (g.number >= target.number || told.get(g.number) === g.state) continue;
          if (g.state === 'standby') step(`old generation ${g.number} (pid ${g.pid}) standing by until ${g.standbyUntil} (can resume)`);
          else if (g.state === 'retiring') step(`old generation ${g.number} (pid ${g.pid}) draining`);
          told.set(g.number, g.state);
        }
      }
      // run reports a new version it stopped (its pid may be of another PID namespace, so this one cannot look it up).
      const elsewhere = seenReady === undefined ? failedElsewhere?.() : undefined;
      if (elsewhere !== undefined) return { verdict: 'rolled_back', result: 'gone', last, why: `pid ${pid} ${elsewhere}` };
      const r = waitCondition(s, 'handover', pid, pidAlive);
      if (r === 'ok') {
        if (told.size > 0) step(`old version drained and left after ${t()}`);
        // Once more with the listeners' holders: a process that holds one and is no generation serves on (outside-holders.ts).
        try { last = await conn.status(Math.max(1, deadline - Date.now())); } catch { /* the verdict stands without them */ }
        return { verdict: 'deployed', result: 'ok', last };
      }
      if (r === 'failed' || (seenReady !== undefined && !s.generations.some((g) => g.number === seenReady))) {
        return { verdict: 'rolled_back_after_ready', result: 'rolledBack', last, why: `generation ${seenReady} was ready, then failed; the old version serves again` };
      }
      if (r === 'gone' || r === 'absent') {
        const why = target?.failedReason === 'not-holding'
          ? `generation ${target.number} said ready holding none of ${(target.holdCheck?.missing ?? []).join(', ')} (ERR_FDBROKER_NOT_HOLDING: it bound a socket of its own, or closed the one it got); refused`
          : `pid ${pid} ${joined === undefined ? 'ended before it joined' : 'left, was refused or missed its ready timeout before it was ready'}`;
        return { verdict: 'rolled_back', result: 'gone', last, why };
      }
      if (Date.now() >= deadline) break;
      await sleep(WAIT_POLL_MS);
    }
  } finally {
    conn.close();
  }
  // At the deadline: ready but not alone is deployed (never rolled back).
  if (last && waitCondition(last, 'ready', pid, pidAlive) === 'ok') return { verdict: 'draining', result: 'draining', last, why: `older generations still draining after ${timeoutMs} ms` };
  return { verdict: 'rolled_back', result: 'timeout', last, why: `pid ${pid} not ready within ${timeoutMs} ms` };
}

/** The deployed line: never "older generations have left" while a process that is no generation holds a listener. */
function deployedLine(w: Watched, pid: number, started: number): string {
  const outside = w.last ? outsideHolders(w.last) : [];
  const who = servingPid(w, pid);
  if (outside.length === 0) return `deployed in ${Date.now() - started} ms: ${who} serves and the older generations have left`;
  return `deployed in ${Date.now() - started} ms: ${who} serves, ${outsideHoldersWarning(outside)}; the old code may still answer`;
}

/**
 * "pid N": the generation's own pid, and the pid deploy started when that is
 * another process (a wrapper: `npx fdbroker exec …`, a shell) whose
 * descendant joined.
 */
function servingPid(w: Watched, started: number): string {
  const gen = w.last ? waitTarget(w.last, started) : undefined;
  return gen === undefined || gen.pid === started ? `pid ${started}` : `pid ${gen.pid} (generation ${gen.number}, started as pid ${started})`;
}

/** The `wait` part of the verdict, as `fdbroker wait --json` prints it. */
function waitJson(w: Watched, pid: number | undefined, started: number): object | null {
  if (!w.last || pid === undefined) return null;
  const t = waitTarget(w.last, pid);
  return {
    result: w.result, startedPid: pid, ...(t ? { pid: t.pid, generation: t.number, state: t.state } : {}),
    older: t ? w.last.generations.filter((g) => g.number < t.number).map((g) => ({ pid: g.pid, generation: g.number, state: g.state })) : [],
    holders: outsideHolders(w.last),
    ms: Date.now() - started,
  };
}

/** The last lines of a log file (the new version's output). */
function logTail(file: string): string[] {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, 16_384);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      const tail = new OutputTail();
      tail.push(buf);
      return tail.text();
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return [];
  }
}

export async function deploy(args: string[], io: Io): Promise<number> {
  const { values: v, positionals, rest } = parseCommand('deploy', args, OPTIONS, true);
  const sock = controlPathOf('deploy', positionals, rest ? ' before --' : '');
  if (rest !== undefined && rest.length === 0) throw new UsageError('deploy: nothing after --: give the new version\'s command, or no -- to redeploy the `fdbroker run` on the path');
  const timeoutMs = msOption('timeout', v.timeout) ?? DEFAULT_WAIT_TIMEOUT_MS;
  const json = v.json === true || !process.stdout.isTTY;
  const started = Date.now();
  const step = (s: string) => io.err(`fdbroker deploy: ${s}`);
  const tailOut = (lines: string[], where: string) => {
    if (lines.length) io.err(`fdbroker deploy: the new version's last lines (${where}):\n${lines.map((l) => `  | ${l}`).join('\n')}`);
  };
  const done = (verdict: Verdict, pid: number | undefined, log: string | null, w: Watched | undefined) => {
    if (json) io.out(JSON.stringify({ verdict, pid: pid ?? null, log, wait: w ? waitJson(w, pid, started) : null }));
    return EXIT_OF[verdict];
  };

  if (rest === undefined) return deployRun(sock, timeoutMs, started, step, tailOut, done);

  // With CMD: what examples/blue-green.sh does.
  const [command, ...cmdArgs] = rest as [string, ...string[]];
  const tty = process.stdout.isTTY && process.stderr.isTTY;
  const log = v.log ?? (tty ? null : path.join(os.tmpdir(), `fdbroker-deploy-${process.pid}.log`));
  // The new version outlives this command: its output goes to the log (or the terminal), never to a pipe of ours.
  const out = log === null ? 'inherit' : fs.openSync(log, 'a', 0o600);
  const child = spawn(command, cmdArgs, { detached: true, stdio: ['ignore', out, out], env: { ...process.env, [RUN_PATH_ENV]: sock } });
  if (typeof out === 'number') fs.closeSync(out);
  const spawnError = await new Promise<Error | undefined>((resolve) => {
    child.once('error', resolve);
    child.once('spawn', () => resolve(undefined));
  });
  if (spawnError || child.pid === undefined) {
    step(`cannot start ${command}: ${spawnError?.message ?? 'no pid'}`);
    return done('error', undefined, log, undefined);
  }
  const pid = child.pid;
  child.unref();
  step(`started pid ${pid} (output: ${log ?? 'this terminal'})`);
  const w = await follow(sock, pid, started, timeoutMs, step);
  const stopNew = () => {
    try { process.kill(-pid, 'SIGTERM'); } catch { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
  };
  switch (w.verdict) {
    case 'deployed': step(deployedLine(w, pid, started)); break;
    case 'draining': step(`deployed: ${servingPid(w, pid)} serves; ${w.why} (not rolled back)`); break;
    default: {
      // A version that is gone needs no stopping; the old one's state is in `why` after a rollback after ready.
      const running = pidAlive(pid);
      const old = w.verdict === 'error' || w.verdict === 'rolled_back_after_ready' ? '' : '; the old version serves on';
      step(`${w.verdict === 'error' ? 'error' : 'rolled back'}: ${w.why}${running ? `; stopping pid ${pid}` : ''}${old}`);
      if (running) stopNew();
      if (log !== null) tailOut(logTail(log), log);
    }
  }
  return done(w.verdict, pid, log, w);
}

/** Without CMD: SIGHUP to the `run` on `sock`, then follow the process it starts. */
async function deployRun(sock: string, timeoutMs: number, started: number, step: (s: string) => void,
  tailOut: (lines: string[], where: string) => void, done: (v: Verdict, pid: number | undefined, log: string | null, w: Watched | undefined) => number): Promise<number> {
  const file = readRunFile(sock);
  if (!file) {
    step(fs.existsSync(sock)
      ? `no \`fdbroker run\` on ${sock} (no ${runFilePath(sock)}): to deploy beside \`fdbroker serve\`, give the command: fdbroker deploy ${sock} -- CMD [ARGS...]`
      : `nothing at ${sock}: no broker runs there; start one (\`fdbroker run ${sock} --listen NAME=SPEC -- CMD\`, or \`fdbroker serve ${sock} --listen NAME=SPEC\`), or give the path it was started with`);
    return done('error', undefined, null, undefined);
  }
  // The file names the run; the broker's status confirms it is the one answering on the path (not a stale file).
  let brokerPid: number;
  try {
    const conn = await BrokerConnection.connect(sock, { timeout: timeoutMs });
    try { brokerPid = (await conn.status(timeoutMs, { holders: false })).broker.pid; } finally { conn.close(); }
  } catch (err) {
    step(`cannot reach the broker at ${sock}: ${(err as FdbrokerError).code ?? ''} ${(err as Error).message}`);
    return done('error', undefined, null, undefined);
  }
  if (brokerPid !== file.pid) {
    step(`${runFilePath(sock)} names pid ${file.pid}, but pid ${brokerPid} serves ${sock}: not an \`fdbroker run\`; give the command after --`);
    return done('error', undefined, null, undefined);
  }
  const before = file.deploy?.seq ?? 0;
  // run's pid as numbered here (run may be PID 1 of a container, and say 1).
  let runPid: number;
  try {
    runPid = peerPid(sock);
    process.kill(runPid, 'SIGHUP');
  } catch (err) {
    step(`cannot signal run (pid ${file.pid} in its own namespace): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return done('error', undefined, null, undefined);
  }
  const report = async (pred: (d: RunDeploy) => boolean, ms: number): Promise<RunDeploy | undefined> => {
    const until = Date.now() + ms;
    for (;;) {
      const d = readRunFile(sock)?.deploy;
      if (d && d.seq > before && pred(d)) return d;
      if (Date.now() >= until) return undefined;
      await sleep(WAIT_POLL_MS);
    }
  };
  const first = await report(() => true, RUN_REPORT_MS);
  if (!first) {
    step(`run (pid ${runPid}) did not report a new process within ${RUN_REPORT_MS} ms`);
    return done('error', undefined, null, undefined);
  }
  if (first.state === 'refused') {
    step(`run refused the deploy: ${first.why}`);
    return done('error', first.pid, null, undefined);
  }
  const pid = first.pid!;
  step(`run (pid ${runPid}) started pid ${pid}`);
  const w = await follow(sock, pid, started, timeoutMs, step, () => {
    const d = readRunFile(sock)?.deploy;
    return d && d.seq > before && d.pid === pid && d.state === 'failed' ? d.why ?? 'failed' : undefined;
  });
  switch (w.verdict) {
    case 'deployed': step(deployedLine(w, pid, started)); break;
    case 'draining': step(`deployed: ${servingPid(w, pid)} serves; ${w.why} (not rolled back)`); break;
    default: {
      step(`${w.verdict === 'error' ? 'error' : 'rolled back'}: ${w.why}; the old version serves on`);
      // Not ready by our deadline (run's own may be later): stop it, as run would,
      // when it is run's child as this process sees it (same PID namespace).
      if (w.result === 'timeout' && inTree(pid, runPid)) {
        try { process.kill(pid, 'SIGTERM'); } catch { /* exited meanwhile */ }
      }
      // run stops a failed new version itself; its report carries the last lines.
      const failed = await report((d) => d.pid === pid && d.state === 'failed', RUN_REPORT_MS);
      if (failed?.why) step(`run says: pid ${pid} ${failed.why}`);
      tailOut(failed?.tail ?? [], `from run, pid ${runPid}`);
    }
  }
  return done(w.verdict, pid, null, w);
}
