// Finding the program `fdbroker exec` runs, as execvp() would, and the error when it cannot be started.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The program could not be started. `code` is ENOENT, EACCES, ...; exit with EXEC_START_FAILED. */
export class ProgramStartError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProgramStartError';
    this.code = code;
  }
}

/** Where `command` would be found on `PATH`, as execvp() looks; throws ProgramStartError if nowhere. */
export function resolveProgram(command: string, envPath: string | undefined): string {
  if (command === '') throw new ProgramStartError('ENOENT', 'no program given');
  const check = (p: string): string | undefined => {
    try {
      if (!fs.statSync(p).isFile()) return 'not a regular file';
      fs.accessSync(p, fs.constants.X_OK);
      return undefined;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? String(err);
    }
  };
  if (command.includes('/')) {
    const why = check(command);
    if (why === undefined) return command;
    throw new ProgramStartError(why === 'ENOENT' ? 'ENOENT' : 'EACCES', `cannot run ${command}: ${why === 'ENOENT' ? 'no such file' : why === 'EACCES' ? 'not executable' : why}`);
  }
  let denied: string | undefined;
  for (const dir of (envPath ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    const p = path.join(dir || '.', command);
    const why = check(p);
    if (why === undefined) return p;
    if (why === 'EACCES' && !denied) denied = p;
  }
  if (denied) throw new ProgramStartError('EACCES', `cannot run ${command}: ${denied} is not executable`);
  throw new ProgramStartError('ENOENT', `cannot run ${command}: command not found on PATH`);
}

