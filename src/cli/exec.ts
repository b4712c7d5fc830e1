// `fdbroker exec`: join as a generation and run any program with the
// listeners at fd 3, 4, ... (the Exec class in exec-program.ts does the work).
import * as os from 'node:os';
import type { FdbrokerError } from '../protocol/errors';
import { choiceOption, controlPathOf, msOption, parseCommand, UsageError } from './args';
import { EXEC_START_FAILED, Exec, ProgramStartError } from './exec-program';
import type { Io } from './io';
import { loadConfig } from './config';
import { dialectDefaults, parseInheritFlags } from './dialect';

const OPTIONS = {
  'names': { type: 'string' },
  'ready': { type: 'string' },
  'retire-signal': { type: 'string' },
  'stop-timeout': { type: 'string' },
  'ready-timeout': { type: 'string' },
  'label': { type: 'string' },
  'inherit': { type: 'string', multiple: true },
  'config': { type: 'string' },
} as const;

/** The dialects of `--inherit` flags; an unknown one is a usage error. */
export function inheritFlags(values: readonly string[] | undefined): ReturnType<typeof parseInheritFlags> {
  try {
    return parseInheritFlags(values);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** SIGTERM, TERM, term or 15 as a signal name. */
export function signalName(v: string): NodeJS.Signals {
  const name = (/^SIG/i.test(v) ? v : `SIG${v}`).toUpperCase();
  if (/^\d+$/.test(v)) {
    const found = Object.entries(os.constants.signals).find(([, num]) => num === Number(v));
    if (found) return found[0] as NodeJS.Signals;
  } else if (name in os.constants.signals) {
    return name as NodeJS.Signals;
  }
  throw new UsageError(`--retire-signal: unknown signal ${v}`);
}

export async function exec(args: string[], io: Io): Promise<number> {
  const noProgram = new UsageError('exec needs the program after --: fdbroker exec <control-socket> [options] -- CMD [ARGS...]');
  // Checked first: without --, the program's own options would read as unknown exec options.
  if (!args.includes('--')) throw noProgram;
  const { values: v, positionals, rest } = parseCommand('exec', args, OPTIONS, true);
  if (rest === undefined || rest.length === 0) throw noProgram;
  const controlPath = controlPathOf('exec', positionals, ' before --');
  const [command, ...cmdArgs] = rest as [string, ...string[]];
  // --config FILE: its [exec] table (exec-config.ts) under the flags.
  const file = v.config !== undefined ? loadConfig(v.config).exec ?? {} : {};
  const inherit = inheritFlags(v.inherit);
  const dialects = inherit.length > 0 ? inherit : file.inherit;
  // Flags, then the file, then what the dialects' servers need (dialect.ts), then exec's own defaults.
  const implied = dialectDefaults(dialects ?? []);
  const ex = new Exec({
    controlPath, command, args: cmdArgs,
    inherit: dialects,
    ready: choiceOption('ready', v.ready ?? file.ready ?? implied.ready, ['notify', 'immediate'], 'notify'),
    retireSignal: signalName(v['retire-signal'] ?? file.retireSignal ?? implied.retireSignal ?? 'SIGTERM'),
    names: v.names === undefined ? undefined : v.names.split(',').filter((x) => x !== ''),
    stopTimeoutMs: msOption('stop-timeout', v['stop-timeout']), readyTimeoutMs: msOption('ready-timeout', v['ready-timeout']),
    label: v.label,
  });
  const say = (s: string) => io.err(`fdbroker exec: ${s}`);
  ex.on('readyRefused', (err) => say(`${(err as FdbrokerError).code ?? 'error'}: ${err.message} (the program runs on; older generations keep serving)`));
  ex.on('readyTimeout', (ms) => say(`no READY=1 within ${ms} ms: stopping the program`));
  ex.on('kill', (ms) => say(`the program did not exit within ${ms} ms: SIGKILL`));
  ex.on('brokerLost', (err) => say(`lost the broker (${(err as FdbrokerError).code ?? ''} ${err.message}); the program runs on, re-joining when a broker answers`));
  ex.on('rejoin', (r) => say(`re-joined the broker as generation ${r.generation} (${r.state})`));
  ex.on('notifyError', (err) => say(`notify socket failed: ${err.message}; readiness can no longer be reported`));
  try {
    return (await ex.run()).status;
  } catch (err) {
    if (!(err instanceof ProgramStartError)) throw err;
    say(`${err.code}: ${err.message}`);
    return EXEC_START_FAILED;
  }
}
