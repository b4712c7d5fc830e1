// The fdbroker command line: a thin layer over the library, one file per
// command (serve.ts, status.ts, wait.ts, exec.ts, reload.ts). It is the only part of
// fdbroker that prints. This file dispatches, answers --help and --version,
// and turns errors into exit statuses: 2 for usage errors, 1 otherwise
// (wait and exec have their own, documented in USAGE).
import { VERSION } from '../protocol/version';
import { nearest, UsageError } from './args';
import { COMMAND_NAMES, commandHelp, fullHelp, type CommandName } from './help';
import type { Io } from './io';
import type * as ExecCommand from './exec';
import type * as ReloadCommand from './reload';
import type * as PauseCommand from './pause';
import type * as RunCommand from './run';
import type * as DeployCommand from './deploy';
import type * as ServeCommand from './serve';
import type * as StatusCommand from './status';
import type * as WaitCommand from './wait';

/** Exit statuses shared by the commands. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;


/** Where the CLI prints; tests pass their own. */
export type { Io } from './io';
const stdio: Io = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

// Each command's module is loaded when it runs: a broker (`serve`) then does not
// carry exec's and wait's code (and their node:child_process) for its whole life.
/* eslint-disable @typescript-eslint/no-require-imports */
const COMMANDS: Record<string, (args: string[], io: Io) => Promise<number>> = {
  serve: (a, io) => (require('./serve') as typeof ServeCommand).serve(a, io),
  status: (a, io) => (require('./status') as typeof StatusCommand).status(a, io),
  wait: (a, io) => (require('./wait') as typeof WaitCommand).wait(a, io),
  exec: (a, io) => (require('./exec') as typeof ExecCommand).exec(a, io),
  reload: (a, io) => (require('./reload') as typeof ReloadCommand).reload(a, io),
  pause: (a, io) => (require('./pause') as typeof PauseCommand).pauseCommand('pause', a, io),
  resume: (a, io) => (require('./pause') as typeof PauseCommand).pauseCommand('resume', a, io),
  run: (a, io) => (require('./run') as typeof RunCommand).run(a, io),
  deploy: (a, io) => (require('./deploy') as typeof DeployCommand).deploy(a, io),
};
/* eslint-enable @typescript-eslint/no-require-imports */

/** The command's own arguments: not exec's program after `--`. */
function ownArgs(args: string[]): string[] {
  const end = args.indexOf('--');
  return end < 0 ? args : args.slice(0, end);
}

/** --help or -h among a command's own arguments. */
function asksHelp(args: string[]): boolean {
  return ownArgs(args).some((a) => a === '--help' || a === '-h');
}

/** The commands that have a JSON mode print their errors as JSON too, with --json: one line on stdout. */
const JSON_COMMANDS: ReadonlySet<string> = new Set(['status', 'reload', 'wait', 'pause', 'resume']);

function wantsJson(cmd: string | undefined, args: string[]): boolean {
  return cmd !== undefined && JSON_COMMANDS.has(cmd) && ownArgs(args).includes('--json');
}

/** A mistyped command: the nearest one, if one is near. */
function unknownCommand(cmd: string): UsageError {
  const guess = nearest(cmd, COMMAND_NAMES);
  return new UsageError(`unknown command "${cmd}"${guess ? `: did you mean "${guess}"?` : ''} (commands: ${COMMAND_NAMES.join(', ')})`);
}

/** Runs the CLI; resolves to the exit status. */
export async function main(argv: string[], io: Io = stdio): Promise<number> {
  const [cmd, ...rest] = argv;
  const known = cmd !== undefined && Object.hasOwn(COMMANDS, cmd);
  const json = wantsJson(cmd, rest);
  try {
    switch (cmd) {
      case '--version': case '-v': io.out(VERSION); return EXIT.ok;
      case '--help': case '-h': case 'help': io.out(fullHelp()); return EXIT.ok;
      case undefined: throw new UsageError(`no command given: ${COMMAND_NAMES.join(', ')}`);
    }
    const run = known ? COMMANDS[cmd] : undefined;
    if (!run) throw unknownCommand(cmd);
    if (asksHelp(rest)) {
      io.out(commandHelp(cmd as CommandName));
      return EXIT.ok;
    }
    return await run(rest, io);
  } catch (err) {
    const e = err as Error & { code?: string };
    const usage = err instanceof UsageError;
    // --json: the error as one JSON line on stdout (what a script parses), as well as the line on stderr.
    if (json) io.out(JSON.stringify({ error: { code: e.code ?? null, message: e.message, usage } }));
    if (usage) {
      io.err(`fdbroker: ${e.code ? `${e.code}: ` : ''}${e.message}\nRun \`fdbroker ${known ? `${cmd} ` : ''}--help\` for usage.`);
      return EXIT.usage;
    }
    io.err(`fdbroker: ${e.code ? `${e.code}: ` : ''}${e.message}`);
    return EXIT.failure;
  }
}
