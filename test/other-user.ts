// Running test code as another user (setpriv --reuid --regid --clear-groups).
// The checkout may lie under a directory other users cannot enter (/root, a
// 0700 home), so whatever another uid runs is copied first into a fresh
// world-readable directory under os.tmpdir(): the built package (package.json,
// bin/, dist/, the native addon node-gyp-build loads, node-gyp-build and smol-toml)
// and test/fixtures/. Processes run there with that directory as their cwd.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'vitest';
import { ROOT, run, tmpDir, type Proc } from './helpers';

export const NOBODY = 65534;

/** A Python another uid can run: not a per-user install such as pyenv's shims under /root. */
export const SYSTEM_PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3', '/bin/python3'].find((p) => {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}) ?? '/usr/bin/python3';

export interface SharedCopy {
  /** The copy's root: `bin/fdbroker.js`, `dist/`, `test/fixtures/` are under it. */
  root: string;
  cli: string;
  fixtures: string;
  remove: () => void;
}

function copy(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true, dereference: true });
}

/** Opens every directory (0755) and file (0644, executables 0755) of `dir` to everyone. */
function openUp(dir: string): void {
  fs.chmodSync(dir, 0o755);
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) openUp(p);
    else fs.chmodSync(p, fs.statSync(p).mode & 0o111 ? 0o755 : 0o644);
  }
}

/**
 * Copies the built package and the test fixtures into a world-readable temp
 * dir. Needs `npm run build` (dist/) and the addon (build/Release or
 * prebuilds/) first, as `npm test` does.
 */
export function sharedCopy(): SharedCopy {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fdb-shared-'));
  for (const p of ['package.json', 'bin', 'dist', path.join('test', 'fixtures')]) copy(path.join(ROOT, p), path.join(root, p));
  const addon = path.join(ROOT, 'build', 'Release', 'fdbroker.node');
  if (fs.existsSync(addon)) copy(addon, path.join(root, 'build', 'Release', 'fdbroker.node'));
  if (fs.existsSync(path.join(ROOT, 'prebuilds'))) copy(path.join(ROOT, 'prebuilds'), path.join(root, 'prebuilds'));
  // The runtime dependencies that are JavaScript (node-addon-api is headers for a build).
  for (const dep of ['node-gyp-build', 'smol-toml']) {
    copy(path.join(ROOT, 'node_modules', dep), path.join(root, 'node_modules', dep));
  }
  openUp(root);
  return {
    root,
    cli: path.join(root, 'bin', 'fdbroker.js'),
    fixtures: path.join(root, 'test', 'fixtures'),
    remove: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

/** Runs `cmd args` as uid/gid (no supplementary groups), with cwd `cwd` (readable by that user). */
export function runAs(uid: number, gid: number, cwd: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Proc {
  return run('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', cmd, ...args], { env, cwd });
}

/** A fresh temp dir other users can traverse (0711: not list or write), for a control socket they connect to. */
export function sharedDir(): string {
  const d = tmpDir();
  fs.chmodSync(d, 0o711);
  return d;
}

/** What test/fixtures/sec-client.js prints (one JSON line): who it ran as and what the broker answered. */
export interface SecResult {
  pid: number; uid: number; gid: number;
  ok?: boolean; code?: string; message?: string; cause?: string;
  names?: string[]; ports?: number[]; listeners?: string[]; generation?: number;
  messages?: Array<string | { type: string; code?: string; message?: string; names?: string[] }>; fds?: number; end?: string;
  codes?: Record<string, number>;
  i?: number;
}

/** Runs test/fixtures/sec-client.js (from `shared`) against `sock` as uid/gid. */
export function secClientProc(shared: SharedCopy, sock: string, args: string[], uid = NOBODY, gid = uid, env?: NodeJS.ProcessEnv): Proc {
  return runAs(uid, gid, shared.root, process.execPath, [path.join(shared.fixtures, 'sec-client.js'), sock, ...args], env);
}

/** secClientProc, awaited: its one JSON line, checked to come from that uid/gid and that process (15 s at most). */
export async function secClient(shared: SharedCopy, sock: string, args: string[], uid = NOBODY, gid = uid, env?: NodeJS.ProcessEnv): Promise<SecResult> {
  const p = secClientProc(shared, sock, args, uid, gid, env);
  const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
  const { code } = await p.exited;
  clearTimeout(timer);
  expect(code, `sec-client ${args.join(' ')} failed; stderr:\n${p.stderr()}`).toBe(0);
  const lines = p.stdout().split('\n').filter(Boolean);
  expect(lines).toHaveLength(1);
  const r = JSON.parse(lines[0]!) as SecResult;
  // The fixture really ran as that user (setpriv did its job).
  expect([r.uid, r.gid]).toEqual([uid, gid]);
  expect(r.pid).toBe(p.pid);
  return r;
}
