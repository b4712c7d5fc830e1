// scripts/test-deps.sh (npm's pretest, and .ci/run): the system packages the
// tests drive. Where everything is there it passes silently; where packages
// are missing and it cannot install them (here: no apt-get on PATH), it
// names each package and the exact apt-get line, and fails; with
// FDBROKER_SKIP_TEST_DEPS=1 it stays out of the way.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, tmpDir } from '../helpers';

const SCRIPT = path.join(ROOT, 'scripts', 'test-deps.sh');
/** What the script itself runs, and nothing the tests need: a PATH with only these is a machine missing every package. */
const BASICS = ['bash', 'dirname', 'readlink', 'id', 'cat', 'node'];

function bareBin(): string {
  const dir = path.join(tmpDir(), 'bin');
  fs.mkdirSync(dir);
  for (const t of BASICS) {
    const found = spawnSync('sh', ['-c', `command -v ${t}`], { encoding: 'utf8' }).stdout.trim();
    if (!found) throw new Error(`${t} is not on PATH`);
    fs.symlinkSync(t === 'node' ? process.execPath : fs.realpathSync(found), path.join(dir, t));
  }
  return dir;
}

describe('scripts/test-deps.sh', () => {
  it('npm test runs it first (pretest), and .ci/run calls it instead of a list of its own', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.pretest).toMatch(/^bash scripts\/test-deps\.sh && /);
    const ci = fs.readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8');
    expect(ci).toContain('bash scripts/test-deps.sh');
    expect(ci).not.toMatch(/apt-get install/);
  });

  it('on this machine (every package there, as CI provides): exits 0 and says nothing', () => {
    const r = spawnSync('bash', [SCRIPT], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toBe('');
  });

  it('missing packages and no apt-get: names them and the apt-get line to run, exits 1', () => {
    const bin = bareBin();
    const r = spawnSync(path.join(bin, 'bash'), [SCRIPT], { encoding: 'utf8', env: { PATH: bin } });
    expect(r.status).toBe(1);
    const pkgs = ['python3', 'util-linux', 'iproute2', 'gunicorn', 'uvicorn', 'haproxy', 'puma', 'unicorn', 'g++', 'make', 'binutils', 'qemu-user-static'];
    for (const p of pkgs) expect(r.stderr, p).toContain(p);
    expect(r.stderr).toMatch(/^ {2}sudo apt-get install -y python3 util-linux iproute2 .*gunicorn uvicorn (nginx-light )?haproxy puma unicorn g\+\+ make binutils qemu-user-static/m);
    expect(r.stderr).toContain('FDBROKER_SKIP_TEST_DEPS=1 npm test');
  });

  it('FDBROKER_SKIP_TEST_DEPS=1: exits 0 whatever is missing', () => {
    const bin = bareBin();
    const r = spawnSync(path.join(bin, 'bash'), [SCRIPT], { encoding: 'utf8', env: { PATH: bin, FDBROKER_SKIP_TEST_DEPS: '1' } });
    expect(r.status).toBe(0);
  });
});
