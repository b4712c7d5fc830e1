// Installing the packed tarball into a fresh app, as a user would, on a
// machine with Node and npm but no compiler, make, python3 or Node headers
// (node:*-slim, distroless, bare CI runners): the prebuilt binary is used and
// the README's quick start serves. Where no prebuild fits and the build
// cannot run, the install fails with a message that says what to install.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { ROOT, cleanup, get, run, sleep } from '../helpers';

/** npm install of a local tarball; its small dependencies (node-gyp-build, node-addon-api, prom-client and its own, smol-toml) come from the npm cache or the registry. */
const INSTALL_TIMEOUT_MS = 120_000;
/** How long the README's app gets to adopt and answer. */
const APP_READY_TIMEOUT_MS = 10_000;
const POLL_MS = 100;
/** The only commands on PATH: Node, npm, and the shell npm runs scripts with. */
const TOOLS = ['node', 'npm', 'npx', 'sh'];
/** For the git-URL install: git, and the utilities its clone (git-submodule, git-sh-setup) runs. */
const GIT_TOOLS = ['git', 'basename', 'dirname', 'sed', 'uname', 'cat', 'tr', 'wc', 'grep'];

let work: string;
let tarball: string;
let bin: string;
let noHeaders: string;

/** A directory of symlinks to TOOLS, to be the whole PATH. */
function toolbox(dir: string): string {
  fs.mkdirSync(dir);
  for (const tool of TOOLS) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    if (!found) throw new Error(`${tool} is not on PATH`);
    fs.symlinkSync(tool === 'node' ? process.execPath : fs.realpathSync(found), path.join(dir, tool));
  }
  return dir;
}

/** A clean environment (none of vitest's or `npm test`'s npm_config_*), with no Node headers for node-gyp. */
function bareEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: bin,
    HOME: process.env.HOME,
    TMPDIR: process.env.TMPDIR,
    npm_config_nodedir: noHeaders,
    npm_config_prefer_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    ...extra,
  };
}

function freshApp(name: string): string {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }));
  return dir;
}

function npmInstall(dir: string, env: NodeJS.ProcessEnv, args: string[] = []) {
  return spawnSync('npm', ['install', ...args, tarball], { cwd: dir, env, encoding: 'utf8', timeout: INSTALL_TIMEOUT_MS });
}

/** Which binary the installed package loads, and that it works (a Node-API call answers). */
function loadedBinary(app: string, env: NodeJS.ProcessEnv): { file: string; maxFds: number } {
  const script = `const dir = require('path').dirname(require.resolve('fdbroker/package.json'));
    const b = require('node-gyp-build'); console.log(JSON.stringify({ file: b.path(dir), maxFds: b(dir).constants.SCM_MAX_FD }))`;
  const r = spawnSync('node', ['-e', script], { cwd: app, env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`loading fdbroker's binary failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { file: string; maxFds: number };
}

/** The Node headers of the Node running the tests (a system Node keeps them in <prefix>/include/node). */
function nodeHeaders(): string {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (!fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) {
    throw new Error(`no Node headers under ${prefix}/include/node: install Node with its headers (Debian: apt-get install nodejs libnode-dev)`);
  }
  return prefix;
}

/** The first js block after README's `heading` that uses `api`, unindented. */
function readmeSnippet(heading: string, api: string): string {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf(`\n${heading}\n`);
  const m = at < 0 ? null : readme.slice(at).match(/```js\n([\s\S]*?)```/);
  if (!m || !m[1]!.includes(api)) throw new Error(`README.md: no js block using ${api} under "${heading}"`);
  return m[1]!.replace(/^ {3}/gm, '');
}

/** Resolves with the first answer on 127.0.0.1:port; until an app adopts, connections wait in the broker-held queue. */
async function firstAnswer(port: number, what: () => string): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + APP_READY_TIMEOUT_MS;
  for (;;) {
    const res = await Promise.race([get(port).catch(() => undefined), sleep(POLL_MS * 5).then(() => undefined)]);
    if (res) return res;
    if (Date.now() > deadline) throw new Error(`no answer on port ${port}: ${what()}`);
  }
}

beforeAll(() => {
  // Not tmpDir(): cleanup() after each test would remove it.
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'fdbi-'));
  const packed = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8' });
  if (packed.status !== 0) throw new Error(`npm pack failed: ${packed.stderr}`);
  tarball = path.join(work, (JSON.parse(packed.stdout) as Array<{ filename: string }>)[0]!.filename);
  bin = toolbox(path.join(work, 'bin'));
  noHeaders = path.join(work, 'no-node-headers');
  fs.mkdirSync(noHeaders);
});
afterEach(cleanup);
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('installing fdbroker into a fresh app', () => {
  it('the test PATH really has no compiler, make or python3', () => {
    for (const tool of ['cc', 'c++', 'g++', 'gcc', 'make', 'python3']) {
      expect(spawnSync('sh', ['-c', `command -v ${tool}`], { env: bareEnv() }).status, tool).not.toBe(0);
    }
  });

  it('with no toolchain and no Node headers: uses the prebuild; the quick start, then the README\'s deploy of the same app, work from the app folder', async () => {
    const app = freshApp('quick-start');
    const r = npmInstall(app, bareEnv());
    expect(r.status, `npm install failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    const pkgDir = path.join(app, 'node_modules', 'fdbroker');
    expect(fs.existsSync(path.join(pkgDir, 'build')), 'built from source instead of using the prebuild').toBe(false);
    expect(loadedBinary(app, bareEnv())).toEqual({ file: path.join(pkgDir, 'prebuilds', `linux-${process.arch}`, 'fdbroker.glibc.node'), maxFds: 253 });

    // As the README says: `npx fdbroker` inside the app folder (--no: never fetch it).
    const sock = path.join(app, 'app.sock');
    const broker = run('npx', ['--no', 'fdbroker', 'serve', sock, '--listen', 'http=tcp://127.0.0.1:0'], { cwd: app, env: bareEnv() });
    const port = Number((await broker.waitFor(/ready on .* http=tcp:\/\/127\.0\.0\.1:(\d+)/))[1]);

    fs.writeFileSync(path.join(app, 'app.js'), readmeSnippet('## Quick start', 'startGeneration').replaceAll('/tmp/app.sock', sock));
    const v1 = run('node', ['app.js'], { cwd: app, env: bareEnv() });
    const res = await firstAnswer(port, () => v1.stderr());
    expect(res.status).toBe(200);
    expect(res.body).toBe(`hello from ${v1.pid}\n`);

    // The README's deploy, word for word but the socket path: the installed script, no FDBROKER, the same app.js again.
    const deploy = run(path.join(app, 'node_modules', 'fdbroker', 'examples', 'blue-green.sh'), [sock, 'node', 'app.js'],
      { cwd: app, env: { TIMEOUT_MS: String(APP_READY_TIMEOUT_MS) } });
    // Progress goes to stderr; stdout is one JSON verdict line.
    const exit = await deploy.exited;
    const started = Number(/started pid (\d+)/.exec(deploy.stderr())?.[1]);
    try {
      expect(exit, deploy.stderr()).toEqual({ code: 0, signal: null });
      expect(deploy.stderr()).toMatch(new RegExp(`deployed in \\d+ ms: pid ${started} serves and the older generations have left`));
      expect(JSON.parse(deploy.stdout().trim())).toMatchObject({ verdict: 'deployed', pid: started, wait: { holders: [] } });
      expect(await get(port)).toEqual({ status: 200, body: `hello from ${started}\n` });
      // The quick start's app was a generation: the deploy retired it, and it left by itself.
      expect(await v1.exited).toEqual({ code: 0, signal: null });
    } finally {
      // setsid: not in the script's process group, so cleanup() would miss it.
      try { process.kill(started, 'SIGTERM'); } catch { /* already gone */ }
    }
  }, INSTALL_TIMEOUT_MS + 30_000);

  it('with install scripts blocked (--ignore-scripts, what npm is moving to for dependencies), the prebuild still loads', () => {
    const app = freshApp('no-scripts');
    const r = npmInstall(app, bareEnv(), ['--ignore-scripts']);
    expect(r.status, `npm install failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    const pkgDir = path.join(app, 'node_modules', 'fdbroker');
    expect(loadedBinary(app, bareEnv())).toEqual({ file: path.join(pkgDir, 'prebuilds', `linux-${process.arch}`, 'fdbroker.glibc.node'), maxFds: 253 });
  }, INSTALL_TIMEOUT_MS);

  it('from a git URL (this commit), with git but no toolchain: prepare builds dist/, the prebuild loads', () => {
    const head = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' });
    if (head.status !== 0) throw new Error(`git rev-parse HEAD failed (is git installed, is ${ROOT} a git checkout?): ${head.stderr}`);
    const gitBin = path.join(work, 'git-bin');
    fs.mkdirSync(gitBin);
    for (const tool of GIT_TOOLS) {
      const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
      if (!found) throw new Error(`${tool} is not on PATH`);
      fs.symlinkSync(found, path.join(gitBin, tool));
    }
    const app = freshApp('from-git');
    const env = bareEnv({ PATH: `${bin}${path.delimiter}${gitBin}` });
    // What is committed, not the working tree: npm clones the repository.
    const r = spawnSync('npm', ['install', `git+file://${ROOT}#${head.stdout.trim()}`], { cwd: app, env, encoding: 'utf8', timeout: INSTALL_TIMEOUT_MS });
    expect(r.status, `npm install failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    const pkgDir = path.join(app, 'node_modules', 'fdbroker');
    expect(fs.existsSync(path.join(pkgDir, 'dist', 'index.js'))).toBe(true);
    expect(loadedBinary(app, env)).toEqual({ file: path.join(pkgDir, 'prebuilds', `linux-${process.arch}`, 'fdbroker.glibc.node'), maxFds: 253 });
  }, INSTALL_TIMEOUT_MS);

  it('where no prebuild fits (musl) and install scripts were skipped, using it fails with ERR_FDBROKER_NO_NATIVE_BINARY naming the fix', () => {
    const app = freshApp('musl-no-scripts');
    const r = npmInstall(app, bareEnv({ LIBC: 'musl' }), ['--ignore-scripts']);
    expect(r.status, `npm install failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    const serve = spawnSync('node', [path.join(app, 'node_modules', '.bin', 'fdbroker'), 'serve', path.join(app, 'x.sock'), '--listen', 'http=tcp://127.0.0.1:0'],
      { cwd: app, env: bareEnv({ LIBC: 'musl' }), encoding: 'utf8', timeout: APP_READY_TIMEOUT_MS });
    expect(serve.status, serve.stderr).toBe(1);
    expect(serve.stderr).toMatch(/^fdbroker: ERR_FDBROKER_NO_NATIVE_BINARY: .*libc=musl/m);
    expect(serve.stderr).toContain('npm rebuild fdbroker');
    expect(serve.stderr).toContain('npm install-scripts approve fdbroker');
  }, INSTALL_TIMEOUT_MS);

  it('where no prebuild fits (musl) and a toolchain is there, it builds from source and loads that build', () => {
    const app = freshApp('from-source');
    const env: NodeJS.ProcessEnv = { ...process.env, LIBC: 'musl', npm_config_nodedir: nodeHeaders() };
    for (const k of Object.keys(env)) if (/^npm_(package|lifecycle)_/.test(k)) delete env[k];
    const r = npmInstall(app, env);
    expect(r.status, `npm install failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    const pkgDir = path.join(app, 'node_modules', 'fdbroker');
    expect(loadedBinary(app, env)).toEqual({ file: path.join(pkgDir, 'build', 'Release', 'fdbroker.node'), maxFds: 253 });
  }, INSTALL_TIMEOUT_MS);

  it('where no prebuild fits (musl) and nothing can build it, the install fails saying what to install', () => {
    const app = freshApp('no-prebuild');
    const r = npmInstall(app, bareEnv({ LIBC: 'musl' }));
    const out = `${r.stdout}\n${r.stderr}`;
    expect(r.status, out).not.toBe(0);
    expect(out).toContain('ERR_FDBROKER_NO_NATIVE_BINARY');
    expect(out).toMatch(/no prebuilt binary fits linux-\w+ \(musl\)/);
    expect(out).toContain('c++, make, python3 are not on PATH');
    expect(out).toContain('apt-get install g++ make python3');
    expect(out).toContain('apk add g++ make python3');
    expect(out).toContain('npm rebuild fdbroker');
  }, INSTALL_TIMEOUT_MS);
});
