// What `npm pack` puts in the tarball: exactly what an app installing
// fdbroker needs (the compiled library, the CLI, the prebuilt binaries, the
// native sources for a fallback build, the deploy script, the examples and
// service units the docs use, the docs and the licence), and nothing else.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../helpers';

/** A bound on the packed size, so an accidentally added directory shows (493 kB at 0.1.0: dist 1.0 MB unpacked, both prebuilds 227 kB, docs). */
const MAX_TARBALL_BYTES = 560 * 1024;

interface PackedFile { path: string; size: number; mode: number }

/** Every .ts under src/, as the .js and .d.ts tsc emits into dist/. */
function expectedDist(dir = path.join(ROOT, 'src'), rel = ''): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.isDirectory()) return expectedDist(path.join(dir, e.name), `${rel}${e.name}/`);
    if (!e.name.endsWith('.ts') || e.name.endsWith('.d.ts')) return [];
    const base = `dist/${rel}${e.name.slice(0, -3)}`;
    return [`${base}.js`, `${base}.d.ts`];
  });
}

/** Every file under `rel` (recursively), as repository-relative paths. */
function filesUnder(rel: string): string[] {
  return fs.readdirSync(path.join(ROOT, rel), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(`${rel}/${e.name}`) : [`${rel}/${e.name}`]);
}

describe('npm pack', () => {
  // --ignore-scripts: list the dist/ that `pretest` built; the prepare script
  // would rebuild it under the feet of tests running beside this one.
  const [pack] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' })) as
    Array<{ size: number; files: PackedFile[] }>;
  const files = pack!.files.map((f) => f.path).sort();

  it('holds exactly the files a user needs', () => {
    const nativeSources = fs.readdirSync(path.join(ROOT, 'native')).map((f) => `native/${f}`);
    expect(files).toEqual([
      'LICENSE',
      'PROTOCOL.md',
      'README.md',
      'bin/fdbroker.js',
      'binding.gyp',
      ...expectedDist(),
      ...filesUnder('examples'),
      ...filesUnder('docs').filter((f) => f.endsWith('.md')),
      ...nativeSources,
      'package.json',
      'prebuilds/SOURCE_HASH',
      'prebuilds/linux-arm64/fdbroker.glibc.node',
      'prebuilds/linux-x64/fdbroker.glibc.node',
      'scripts/install.js',
    ].sort());
    // So: no test/, bench/, fixtures, src/, build/, source maps, nor docs/ beyond its markdown (no bench JSON, no chart).
  });

  it('package.json points to the repository, its home page and its issues', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Record<string, { url?: string } | string>;
    expect(pkg.repository).toEqual({ type: 'git', url: 'git+https://github.com/fdbroker/fdbroker.git' });
    expect(pkg.homepage).toBe('https://github.com/fdbroker/fdbroker#readme');
    expect(pkg.bugs).toEqual({ url: 'https://github.com/fdbroker/fdbroker/issues' });
  });

  it('keeps the CLI and the deploy script executable', () => {
    for (const f of ['bin/fdbroker.js', 'examples/blue-green.sh']) {
      expect(pack!.files.find((p) => p.path === f)!.mode & 0o111, f).not.toBe(0);
    }
  });

  it(`is under ${MAX_TARBALL_BYTES / 1024} KiB packed`, () => {
    expect(pack!.size).toBeLessThan(MAX_TARBALL_BYTES);
  });

  it('the licence is MIT, as package.json says', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { license: string };
    expect(pkg.license).toBe('MIT');
    expect(fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n\nCopyright \(c\) 2026 fdbroker contributors\n/);
  });
});
