// `npm run demo` is the README's blue/green demo: it must serve from both
// versions and fail nothing.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ROOT } from '../helpers';

describe('npm run demo', () => {
  it('swaps v1 for v2 under load with 0 failed requests', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'examples', 'demo.js')], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/requests failed: 0\n/);
    expect(r.stdout).toMatch(/v1: [1-9]\d*, v2: [1-9]\d*/);
    expect(r.status).toBe(0);
  });
});
