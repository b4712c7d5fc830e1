// What a test needs from the machine (a system tool, root), and what happens
// when it is missing: under CI (CI=true) the test FAILS with a message naming
// the tool and its package, since CI must run every test; elsewhere it is
// skipped VISIBLY (the reason is in the skipped test's name and on stderr).
// Never a silent skip.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, it, type TestContext, type TestFunction } from 'vitest';

export interface Requirement {
  /** What is needed, e.g. "python3 (>= 3.8)". */
  what: string;
  /** Why it is missing, or undefined when it is there. */
  missing?: string;
  /** How to get it, e.g. "apt-get install python3". */
  fix: string;
}

/** CI=true (or 1), as GitHub Actions and .ci/run set it. */
export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

/** A command on PATH that runs and exits 0 with `args`. */
export function tool(command: string, args: string[], what: string, fix: string): Requirement {
  const r = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000, encoding: 'utf8' });
  const missing = r.error ? `${command}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`
    : r.status !== 0 ? `\`${[command, ...args].join(' ')}\` exited ${r.status ?? r.signal}: ${r.stderr.trim().split('\n')[0] ?? ''}` : undefined;
  return { what, missing, fix };
}

/** An executable file at `file`. */
export function file(file: string, what: string, fix: string): Requirement {
  let missing: string | undefined;
  try {
    fs.accessSync(file, fs.constants.X_OK);
  } catch (err) {
    missing = `${file}: ${(err as NodeJS.ErrnoException).code}`;
  }
  return { what, missing, fix };
}

export const python3 = (minor = 8) => tool('python3', ['-c', `import sys; sys.exit(0 if sys.version_info >= (3, ${minor}) else 1)`],
  `python3 (>= 3.${minor})`, 'apt-get install python3');
/** The python3 command, or an error naming the package: for tests that always need it. */
export function python3Command(): string {
  const missing = python3().missing;
  if (missing) throw new Error(`python3 is needed for this test (${missing}): apt-get install python3`);
  return 'python3';
}
/** Debian's gunicorn and uvicorn (PyPI is not used): the servers of the `exec` recipe. */
export const gunicorn = () => tool('gunicorn', ['--version'], 'gunicorn (>= 20.1)', 'apt-get install gunicorn');
export const uvicorn = () => tool('uvicorn', ['--version'], 'uvicorn (>= 0.17)', 'apt-get install uvicorn');
/** Debian's servers of the `exec --inherit` dialects (test/cli/dialects.test.ts). */
export const nginx = () => tool('/usr/sbin/nginx', ['-v'], 'nginx (>= 1.22, /usr/sbin/nginx)', 'apt-get install nginx-light');
export const haproxy = () => tool('haproxy', ['-v'], 'haproxy (>= 2.6)', 'apt-get install haproxy');
export const puma = () => tool('puma', ['--version'], 'puma (>= 5.6)', 'apt-get install puma');
export const unicorn = () => tool('unicorn', ['-v'], 'unicorn (>= 6.0)', 'apt-get install unicorn');
export const ss = () => tool('ss', ['-V'], 'ss (iproute2)', 'apt-get install iproute2');
export const setpriv = () => tool('setpriv', ['--version'], 'setpriv (util-linux)', 'apt-get install util-linux');
export const root = (why: string): Requirement => ({
  what: `root (${why})`,
  missing: process.getuid?.() === 0 ? undefined : `running as uid ${process.getuid?.()}`,
  fix: 'run the tests as root, as CI does',
});

/** The first requirement that is missing, as one line; undefined when all are there. */
export function missingText(needs: Requirement[]): string | undefined {
  const m = needs.filter((n) => n.missing !== undefined);
  if (m.length === 0) return undefined;
  return m.map((n) => `needs ${n.what}, missing (${n.missing}): ${n.fix}`).join('; ');
}

function failing(title: string, why: string): TestFunction {
  return () => { throw new Error(`${title}: ${why}. CI must provide every tool the tests use (scripts/test-deps.sh installs them; docs/guides/installing.md).`); };
}

/** describe() when every requirement is met; else a failing test (CI) or a visible skip. */
export function describeWith(needs: Requirement[], title: string, fn: () => void): void {
  const why = missingText(needs);
  if (why === undefined) return void describe(title, fn);
  if (IN_CI) return void describe(title, () => { it(`cannot run: ${why}`, failing(title, why)); });
  console.warn(`SKIPPED "${title}": ${why}`);
  describe.skip(`${title} [SKIPPED: ${why}]`, fn);
}

/** it() when every requirement is met; else a failing test (CI) or a visible skip. */
export function itWith(needs: Requirement[], title: string, fn: TestFunction, timeout?: number): void {
  const why = missingText(needs);
  if (why === undefined) return void it(title, fn, timeout);
  if (IN_CI) return void it(`${title} (cannot run: ${why})`, failing(title, why));
  console.warn(`SKIPPED "${title}": ${why}`);
  it.skip(`${title} [SKIPPED: ${why}]`, fn);
}

/** Inside a test, for a need only known at run time: returns when met; else throws (CI) or skips visibly. */
export function needOrSkip(ctx: TestContext, needs: Requirement[]): void {
  const why = missingText(needs);
  if (why === undefined) return;
  if (IN_CI) throw new Error(`${ctx.task.name}: ${why}. CI must provide every tool the tests use (scripts/test-deps.sh installs them; docs/guides/installing.md).`);
  console.warn(`SKIPPED "${ctx.task.name}": ${why}`);
  ctx.skip(why);
}
