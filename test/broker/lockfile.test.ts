// `<path>.lock`: a broker that fails to start removes the lock file it took,
// and the lock still lets exactly one broker hold a path, also while failing
// starts remove the file under the others.
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { CLI, cleanup, run, tmpDir } from '../helpers';
import { isLockAtPath } from '../../src/broker/control-path';

const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await cleanup();
  for (const c of closers.splice(0)) await c();
});

/** Brokers started together per round: one that can start, the rest on a port in use. */
const RACERS = 4;
const ROUNDS = 8;
const READY_TIMEOUT_MS = 15_000;

async function busyPort(): Promise<number> {
  const busy = net.createServer();
  closers.push(() => new Promise((r) => busy.close(r)));
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  return (busy.address() as net.AddressInfo).port;
}

function serve(sock: string, listen: string) {
  return run(process.execPath, [CLI, 'serve', sock, '--listen', listen]);
}

describe('<path>.lock', () => {
  it('a start that fails after taking the lock (a port in use) leaves no lock file and no control socket', async () => {
    const sock = path.join(tmpDir(), 'broker.sock');
    const p = serve(sock, `web=tcp://127.0.0.1:${await busyPort()}`);
    expect((await p.exited).code).toBe(1);
    expect(p.stderr()).toMatch(/EADDRINUSE/);
    expect(fs.existsSync(`${sock}.lock`)).toBe(false);
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('a broker that fails to start because one runs leaves the running one its lock file', async () => {
    const sock = path.join(tmpDir(), 'broker.sock');
    const first = serve(sock, 'web=tcp://127.0.0.1:0');
    await first.waitFor(/ready on/);
    const second = serve(sock, 'web=tcp://127.0.0.1:0');
    expect((await second.exited).code).toBe(1);
    expect(second.stderr()).toMatch(/^fdbroker: ERR_FDBROKER_BROKER_RUNNING: another broker holds .*\.lock/m);
    expect(fs.existsSync(`${sock}.lock`)).toBe(true);
  });

  it(`failing starts racing a good one (${ROUNDS} rounds of ${RACERS}): at most one broker, and it holds the lock at the path`, async () => {
    const port = await busyPort();
    for (let round = 0; round < ROUNDS; round++) {
      const sock = path.join(tmpDir(), 'broker.sock');
      const ps = Array.from({ length: RACERS }, (_, k) => serve(sock, k === 0 ? 'web=tcp://127.0.0.1:0' : `web=tcp://127.0.0.1:${port}`));
      const outcome = await Promise.all(ps.map((p) => Promise.race([
        p.waitFor(/^fdbroker: ready on /m, READY_TIMEOUT_MS).then(() => 'ready', () => 'exited'),
        p.exited.then(() => 'exited'),
      ])));
      const live = ps.filter((_, k) => outcome[k] === 'ready');
      expect(live.length, `round ${round}: ${outcome.join(', ')}`).toBeLessThanOrEqual(1);
      for (const p of ps.filter((_, k) => outcome[k] !== 'ready')) expect((await p.exited).code).toBe(1);
      if (live.length === 1) {
        // Refused by the lock at the path, not only by the live socket: the
        // live broker's lock file is the one at the path.
        const late = serve(sock, 'web=tcp://127.0.0.1:0');
        expect((await late.exited).code).toBe(1);
        expect(late.stderr(), `round ${round}`).toMatch(/another broker holds .*\.lock/);
        live[0]!.kill('SIGTERM');
        await live[0]!.exited;
      } else {
        expect(fs.existsSync(`${sock}.lock`), `round ${round}: no broker runs, yet the lock file stayed`).toBe(false);
      }
    }
  }, ROUNDS * 2 * READY_TIMEOUT_MS);

  it('isLockAtPath: true for the file at the path, false once it is removed or replaced', () => {
    const lock = path.join(tmpDir(), 'x.lock');
    const fd = fs.openSync(lock, 'w');
    try {
      expect(isLockAtPath(fd, lock)).toBe(true);
      fs.rmSync(lock);
      expect(isLockAtPath(fd, lock)).toBe(false);
      fs.writeFileSync(lock, '');
      expect(isLockAtPath(fd, lock)).toBe(false);
    } finally {
      fs.closeSync(fd);
    }
  });
});
