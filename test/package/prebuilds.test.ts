// The committed prebuilt binaries (prebuilds/, made by `npm run prebuilds`):
// built from the current sources, for the right machine, loadable on any
// glibc >= 2.28 distribution, and the arm64 one serving under qemu.
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLI, ROOT, cleanup, tmpDir } from '../helpers';
import { smoke } from './smoke';

afterEach(cleanup);

/**
 * Newest glibc symbol version a prebuild may need: 2.28 is what Node 20's own
 * Linux binaries require (Debian 10, RHEL 8, Ubuntu 20.04 and later).
 */
const MAX_GLIBC = '2.28';
/**
 * Newest libstdc++ symbol version a prebuild may need: 3.4.25 is GCC 8's
 * libstdc++, the one RHEL 8 and Debian 10 ship.
 */
const MAX_GLIBCXX = '3.4.25';
/** The C++ ABI symbols of that same libstdc++ (GCC 8). */
const MAX_CXXABI = '1.3.11';
/** Shared libraries a prebuild may link against: the C and C++ runtimes only. */
const ALLOWED_NEEDED = ['libc.so.6', 'libgcc_s.so.1', 'libm.so.6', 'libstdc++.so.6'];
/** The arm64 Node under qemu-user is slow to start. */
const QEMU_STEP_TIMEOUT_MS = 60_000;
/** Where Debian's libc6-arm64-cross (a dependency of g++-aarch64-linux-gnu) puts the arm64 loader and libs. */
const ARM64_SYSROOT = '/usr/aarch64-linux-gnu';

const PREBUILDS = [
  { dir: 'linux-x64', machine: 62 /* EM_X86_64 */ },
  { dir: 'linux-arm64', machine: 183 /* EM_AARCH64 */ },
];

function need(tool: string, install: string): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(`${tool} is not installed: apt-get install ${install}`);
  }
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The highest version of each symbol-version family (GLIBC, GLIBCXX, ...) the file's dynamic symbols need. */
function highestRequired(file: string): Record<string, string> {
  const out = execFileSync(need('objdump', 'binutils'), ['-T', file], { encoding: 'utf8' });
  const highest: Record<string, string> = {};
  for (const [, family, version] of out.matchAll(/\*UND\*\s+\S+\s+\(?([A-Z]+)_([0-9.]+)\)?/g)) {
    if (!highest[family!] || compareVersions(version!, highest[family!]!) > 0) highest[family!] = version!;
  }
  return highest;
}

function neededLibraries(file: string): string[] {
  const out = execFileSync('objdump', ['-p', file], { encoding: 'utf8' });
  return [...out.matchAll(/^\s*NEEDED\s+(\S+)$/gm)].map((m) => m[1]!).sort();
}

describe('prebuilt binaries', () => {
  for (const { dir, machine } of PREBUILDS) {
    const file = path.join(ROOT, 'prebuilds', dir, 'fdbroker.glibc.node');

    it(`${dir}: an ELF shared object for that machine`, () => {
      const header = fs.readFileSync(file).subarray(0, 20);
      expect(header.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
      expect(header.readUInt16LE(16)).toBe(3 /* ET_DYN */);
      expect(header.readUInt16LE(18)).toBe(machine);
    });

    it(`${dir}: needs glibc <= ${MAX_GLIBC} and libstdc++ <= GLIBCXX_${MAX_GLIBCXX}, and no other library`, () => {
      const highest = highestRequired(file);
      const bounds: Record<string, string> = { GLIBC: MAX_GLIBC, GLIBCXX: MAX_GLIBCXX, CXXABI: MAX_CXXABI };
      expect(highest.GLIBC, 'no glibc symbol versions found: is objdump reading the file?').toBeDefined();
      for (const [family, version] of Object.entries(highest)) {
        expect(bounds, `needs ${family}_${version}, a library with no bound here`).toHaveProperty(family);
        expect(compareVersions(version, bounds[family]!), `needs ${family}_${version}, newer than ${family}_${bounds[family]}`).toBeLessThanOrEqual(0);
      }
      for (const lib of neededLibraries(file)) expect(ALLOWED_NEEDED).toContain(lib);
    });
  }

  it('are built from the current native sources (else run `npm run prebuilds`)', () => {
    const recorded = fs.readFileSync(path.join(ROOT, 'prebuilds', 'SOURCE_HASH'), 'utf8');
    const current = execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'source-hash.js')], { encoding: 'utf8' });
    expect(recorded, 'prebuilds/ is stale: run `npm run prebuilds` and commit prebuilds/').toBe(current);
  });

  it('node-gyp-build picks the glibc prebuild for this machine, and it loads', () => {
    const script = `const b = require('node-gyp-build'); const p = b.path(${JSON.stringify(ROOT)});
      console.log(JSON.stringify({ p, max: b(${JSON.stringify(ROOT)}).constants.SCM_MAX_FD }))`;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: ROOT, env: { ...process.env, PREBUILDS_ONLY: '1' }, encoding: 'utf8' }));
    expect(out.p).toBe(path.join(ROOT, 'prebuilds', `linux-${process.arch}`, 'fdbroker.glibc.node'));
    expect(out.max).toBe(253);
  });

  it('on musl (LIBC=musl) node-gyp-build finds no prebuild, so the install builds from source', () => {
    const script = `try { require('node-gyp-build').path(${JSON.stringify(ROOT)}); console.log('found') } catch (e) { console.log(e.message.split('\\n')[0]) }`;
    const out = execFileSync(process.execPath, ['-e', script], { cwd: ROOT, env: { ...process.env, PREBUILDS_ONLY: '1', LIBC: 'musl' }, encoding: 'utf8' });
    expect(out).toMatch(/^No native build was found for .*libc=musl/);
  });

  it('linux-arm64: an arm64 Node under qemu serves, adopts and answers HTTP with it', async () => {
    const qemu = need('qemu-aarch64-static', 'qemu-user-static');
    if (!fs.existsSync(path.join(ARM64_SYSROOT, 'lib', 'ld-linux-aarch64.so.1'))) {
      throw new Error(`no arm64 sysroot at ${ARM64_SYSROOT}: apt-get install g++-aarch64-linux-gnu (brings libc6-arm64-cross, libstdc++6-arm64-cross)`);
    }
    const armNode = execFileSync(path.join(ROOT, '.ci', 'node-bin'), ['20', 'arm64'], { encoding: 'utf8' }).trim();
    const r = await smoke({
      node: [qemu, '-L', ARM64_SYSROOT, armNode],
      cli: CLI,
      dir: tmpDir(),
      module: path.join(ROOT, 'dist'),
      // Not build/ (an x64 build when present): the prebuild only.
      env: { PREBUILDS_ONLY: '1' },
      stepTimeoutMs: QEMU_STEP_TIMEOUT_MS,
    });
    expect(r.appArch).toBe('arm64');
    expect(r.body).toBe(`served by ${r.appPid}\n`);
  }, 3 * QEMU_STEP_TIMEOUT_MS);
});
