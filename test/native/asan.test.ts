// The native receive/send paths and the Poller under AddressSanitizer:
// test/native/asan-drive/run.sh builds the addon with -fsanitize=address in a temp dir and
// runs test/native/asan-drive/drive.js against it with the compiler's libasan preloaded
// into node. Nothing is installed: it needs g++ and node's headers, as
// `npm install` does.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers';

function runAsan(): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(ROOT, 'test', 'native', 'asan-drive', 'run.sh')], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FDBROKER_ASAN_SEED: '' },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    // The build alone takes ~20 s on a busy 2-core machine; the drive ~10 s.
    const timer = setTimeout(() => child.kill('SIGKILL'), 170_000);
    child.on('error', reject);
    child.on('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal, out }); });
  });
}

describe('native layer under AddressSanitizer', () => {
  it('truncated, oversized and fd-carrying messages, bad arguments and odd Poller orders: no ASan report, every check passes', async () => {
    const { code, signal, out } = await runAsan();
    expect(out).not.toMatch(/ERROR: AddressSanitizer/);
    expect(out).toMatch(/asan drive: seed \d+, \d+ checks, 0 failed, \d+ ms, asan=true/);
    expect({ code, signal }, out).toEqual({ code: 0, signal: null });
  }, 180_000);
});
