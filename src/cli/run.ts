// `fdbroker run`: one process that is the broker on PATH (everything `serve`
// does, through openServe()) and supervises CMD as its generations
// (src/run/supervisor.ts): crash restart with the socket kept, deploy on
// SIGHUP (or `fdbroker deploy PATH`), a warm spare, and a graceful stop on
// SIGTERM/SIGINT. The children's output passes through run's own.
import { resolveProgram, ProgramStartError, EXEC_START_FAILED } from './exec-program';
import { choiceOption, controlPathOf, intOption, msOption, parseCommand, UsageError } from './args';
import type { Io } from './io';
import { openServe, SERVE_OPTIONS, type ServeSession } from './serve';
import { Supervisor, type RunSupervisor } from '../run/supervisor';
import { InstanceSupervisor } from '../run/instances';
import { MAX_INSTANCES } from '../protocol/limits';
import type { Contract } from '../run/member';
import { removeRunFile, writeRunFile, type RunFile } from '../run/run-file';
import { DEFAULT_RUN_STOP_TIMEOUT_MS } from '../run/defaults';
import { inheritFlags, signalName } from './exec';
import { dialectDefaults } from './dialect';
import { loadConfig } from './config';
import { Reaper } from '../run/reaper';
import { Watcher } from '../run/watch';
import * as fs from 'node:fs';

/** Exit statuses of `fdbroker run`, as documented in --help. */
export const RUN_EXIT = {
  /** Stopped by SIGTERM/SIGINT, every process exited within the stop timeout. */
  ok: 0,
  /** The broker could not start, or a process had to be SIGKILLed at the stop timeout. */
  failure: 1,
  usage: 2,
  /** Crash loop: CRASH_LOOP_COUNT unrequested exits within CRASH_LOOP_WINDOW_MS. */
  crashLoop: 3,
  /** CMD cannot be found or is not executable (nothing was started). */
  notFound: EXEC_START_FAILED,
} as const;

const { takeover: _takeover, 'adopt-from': _adoptFrom, ...BROKER_OPTIONS } = SERVE_OPTIONS;
void _takeover;
void _adoptFrom;

const OPTIONS = {
  ...BROKER_OPTIONS,
  'library': { type: 'boolean' },
  'spare': { type: 'boolean' },
  'instances': { type: 'string' },
  'ready': { type: 'string' },
  'retire-signal': { type: 'string' },
  'inherit': { type: 'string', multiple: true },
  'stop-timeout': { type: 'string' },
  'watch': { type: 'string', multiple: true },
} as const;

/**
 * The exec contract from run's flags: the dialects (--inherit) and, unless
 * given, what their servers need (dialect.ts: nginx's graceful stop is
 * SIGQUIT, it never sends READY=1), as `fdbroker exec` decides them.
 */
export function execContract(v: { inherit?: string[]; ready?: string; 'retire-signal'?: string; config?: string }, stopTimeoutMs: number): Contract {
  // Flags, then the configuration file's [exec] table (as exec reads it), then the dialects' defaults.
  const file = v.config !== undefined ? loadConfig(v.config).exec ?? {} : {};
  const flags = inheritFlags(v.inherit);
  const inherit = flags.length > 0 ? flags : [...file.inherit ?? []];
  const implied = dialectDefaults(inherit);
  return {
    kind: 'exec', inherit,
    ready: choiceOption('ready', v.ready ?? file.ready ?? implied.ready, ['notify', 'immediate'], 'notify'),
    retireSignal: signalName(v['retire-signal'] ?? file.retireSignal ?? implied.retireSignal ?? 'SIGTERM'), stopTimeoutMs,
  };
}

export async function run(args: string[], io: Io): Promise<number> {
  const noProgram = new UsageError('run needs the program after --: fdbroker run <control-socket> --listen NAME=SPEC [options] -- CMD [ARGS...]');
  if (!args.includes('--')) throw noProgram;
  const { values: v, positionals, rest } = parseCommand('run', args, OPTIONS, true);
  if (rest === undefined || rest.length === 0) throw noProgram;
  const controlPath = controlPathOf('run', positionals, ' before --');
  const [command, ...cmdArgs] = rest as [string, ...string[]];
  const library = v.library === true;
  if (v.spare === true && !library) throw new UsageError('--spare needs --library: a spare waits, joined but not accepting, inside startGeneration()');
  const instances = intOption('instances', v.instances, 1, MAX_INSTANCES) ?? 1;
  if (instances > 1 && v.spare === true) throw new UsageError('--spare and --instances do not go together: with instances, the others serve while a crashed one restarts');
  if (library && (v.ready !== undefined || v['retire-signal'] !== undefined || v.inherit !== undefined)) {
    throw new UsageError('--ready, --retire-signal and --inherit are for the exec contract; with --library the app joins and says ready itself');
  }
  const stopTimeoutMs = msOption('stop-timeout', v['stop-timeout']) ?? DEFAULT_RUN_STOP_TIMEOUT_MS;
  const contract: Contract = library ? { kind: 'library' } : execContract(v, stopTimeoutMs);
  const readyTimeoutMs = msOption('ready-timeout', v['ready-timeout']);
  for (const w of v.watch ?? []) if (!fs.existsSync(w)) throw new UsageError(`--watch ${w}: no such file or directory`);
  try {
    resolveProgram(command, process.env.PATH);
  } catch (err) {
    if (!(err instanceof ProgramStartError)) throw err;
    io.err(`fdbroker run: ${err.code}: ${err.message}`);
    return RUN_EXIT.notFound;
  }
  const say = (s: string) => io.out(`fdbroker run: ${s}`);
  const warn = (s: string) => io.err(`fdbroker run: ${s}`);

  // Handlers first (as serve): a signal before the supervisor exists is kept for it.
  let pending: NodeJS.Signals | undefined;
  let onSignal: (sig: NodeJS.Signals) => void = (sig) => { if (sig !== 'SIGHUP') pending ??= sig; };
  const handler = (sig: NodeJS.Signals) => onSignal(sig);
  const SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
  for (const s of SIGNALS) process.on(s, handler);
  const unhook = () => { for (const s of SIGNALS) process.off(s, handler); };

  let session: ServeSession;
  let stopping = false;
  try {
    session = await openServe(v, controlPath, io, { noStandbyHint: () => (stopping ? undefined : 'run starts the next process'), instances });
  } catch (err) {
    unhook();
    throw err;
  }
  const { broker, metrics, list } = session;
  const sup: RunSupervisor = instances > 1
    ? new InstanceSupervisor({ broker, command, args: cmdArgs, contract, instances, readyTimeoutMs, stopTimeoutMs })
    : new Supervisor({ broker, command, args: cmdArgs, contract, spare: v.spare === true, readyTimeoutMs, stopTimeoutMs });
  const state: RunFile = { pid: process.pid, deploy: null };
  const saveState = () => {
    try {
      writeRunFile(controlPath, state);
    } catch (err) {
      warn(`warning: cannot write ${controlPath}.run.json (\`fdbroker deploy\` reads it): ${(err as Error).message}`);
    }
  };
  let deploySeq = 0;
  let deployPid: number | undefined;
  const tailText = (tail: string[]) => (tail.length ? `; its last lines:\n${tail.map((l) => `  | ${l}`).join('\n')}` : '; it wrote nothing');

  sup.on('output', (_pid, stream, chunk) => (stream === 'stdout' ? process.stdout : process.stderr).write(chunk));
  sup.on('spawn', (pid, _role, why) => {
    say(`started pid ${pid} (${why === 'spare' ? 'warm spare' : why})`);
    if (why === 'deploy') {
      deployPid = pid;
      state.deploy = { seq: deploySeq, pid, state: 'started' };
      saveState();
    }
  });
  sup.on('ready', (pid, gen, ms) => say(`pid ${pid} ready as generation ${gen} in ${ms} ms`));
  sup.on('deployed', (pid, _gen, ms) => {
    if (pid === deployPid) {
      state.deploy = { seq: deploySeq, pid, state: 'deployed', readyMs: ms };
      saveState();
    }
  });
  sup.on('deployFailed', (pid, why, tail) => {
    warn(`deploy failed: pid ${pid} ${why}; the previous version serves on${tailText(tail)}`);
    state.deploy = { seq: deploySeq, pid, state: 'failed', why, tail };
    saveState();
  });
  sup.on('deployRefused', (why) => {
    warn(`deploy refused: ${why}`);
    state.deploy = { seq: deploySeq, state: 'refused', why };
    saveState();
  });
  sup.on('crash', (exit, _tail, inMs) => warn(`pid ${exit.pid} ${exit.text} without being told to retire; `
    + (inMs === undefined ? 'the next one takes over' : inMs === 0 ? 'starting the next one now' : `starting the next one in ${inMs} ms`)
    + '; connections wait in the accept queue'));
  sup.on('promote', (pid) => say(`promoted the warm spare pid ${pid}`));
  sup.on('spareJoined', (pid, gen) => say(`warm spare pid ${pid} joined as generation ${gen}: it holds the listeners, not accepting`));
  sup.on('resumed', (pid, gen) => warn(`generation ${gen} (pid ${pid}) serves again (the broker resumed it)`));
  sup.on('readyTimeout', (pid, ms) => warn(`pid ${pid} not ready after ${ms} ms: stopping it`));
  sup.on('kill', (pid) => warn(`pid ${pid} did not exit within ${stopTimeoutMs} ms: SIGKILL`));
  sup.on('retired', (exit) => { if (!session.quiet) say(`pid ${exit.pid} ${exit.text} (retired)`); });
  let crashLooped = false;
  sup.on('crashLoop', (count, windowMs, last, tail) => {
    crashLooped = true;
    warn(`CRASH LOOP: ${count} exits within ${windowMs / 1000} s, the last: pid ${last.pid} ${last.text}${tailText(tail)}\n`
      + 'fdbroker run: stopping; fix the program and start run again');
  });

  // PID 1 (a container's main process): orphans are reparented to run, which reaps them.
  const reaper = process.pid === 1 ? new Reaper((pid) => sup.owns(pid)).start() : undefined;
  reaper?.on('reaped', (pid, code, sig) => { if (!session.quiet) say(`reaped orphan pid ${pid} (${sig ? `signal ${sig}` : `code ${code}`})`); });

  // --watch: a change deploys (one in flight at a time: a change meanwhile deploys after it).
  let changedMeanwhile = false;
  const watchDeploy = (what: string) => {
    if (stopping) return;
    deploySeq++;
    if (sup.deploy()) say(`${what} changed: deploying ${command} anew`);
    else changedMeanwhile = true;
  };
  const watcher = v.watch?.length ? new Watcher(v.watch, (p) => watchDeploy(p)) : undefined;
  const afterDeploy = () => {
    if (!changedMeanwhile) return;
    changedMeanwhile = false;
    watchDeploy('a watched file');
  };
  sup.on('ready', afterDeploy);
  sup.on('deployFailed', afterDeploy);

  return new Promise<number>((resolve) => {
    const finish = async (why: string) => {
      if (stopping) return;
      stopping = true;
      watcher?.close();
      await sup.stop();
      reaper?.reap();
      reaper?.stop();
      unhook();
      session.close();
      removeRunFile(controlPath);
      if (!session.quiet || crashLooped) say(`${why}: stopped, removed ${controlPath}`);
      resolve(crashLooped ? RUN_EXIT.crashLoop : sup.killedAtStop ? RUN_EXIT.failure : RUN_EXIT.ok);
    };
    sup.on('crashLoop', () => void finish('crash loop'));
    onSignal = (sig) => {
      if (sig === 'SIGHUP') {
        if (stopping) return;
        deploySeq++;
        if (sup.deploy()) say(`SIGHUP: deploying ${command} anew`);
        return;
      }
      if (stopping) {
        // Every process was sent SIGTERM once already: never twice.
        warn(`${sig}: already stopping (processes left get SIGKILL ${stopTimeoutMs} ms after the first signal)`);
        return;
      }
      say(`${sig}: stopping every process (SIGTERM, SIGKILL after ${stopTimeoutMs} ms)`);
      void finish(sig);
    };
    saveState();
    io.out(`fdbroker: ready on ${controlPath} (pid ${process.pid}): ${list}${metrics ? `; metrics on ${metrics.url}` : ''}`);
    sup.start();
    if (pending) onSignal(pending);
  });
}
