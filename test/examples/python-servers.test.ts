// gunicorn (WSGI) and uvicorn (ASGI) under `fdbroker exec`, swapped 3 times
// under keep-alive load with no retries, every failure counted by kind: what
// each server's own shutdown does to keep-alive clients, and the recipes that
// lose nothing (examples/gunicorn_app.py, examples/uvicorn_app.py; README,
// the `exec` recipe). Debian's packages: apt-get install gunicorn uvicorn.
import { afterEach, describe, expect } from 'vitest';
import { CLI, cleanup, loadLoop, run, sleep, startBroker, tmpDir, type LoadStats } from '../helpers';
import { gunicorn, itWith, uvicorn } from '../requirements';
import { EXAMPLES, OLD_GONE_MAX_MS, SWAP_BROKER_FLAGS, execReady } from '../swap-helpers';

const SWAPS = 3;
/** Load before, between and after the swaps. */
const BETWEEN_MS = 500;
const CONCURRENCY = 8;
/** What a server closing a keep-alive connection under a client's next request looks like to Node's client. */
const RESET_KINDS = ['ECONNRESET', 'socket hang up', 'EPIPE'];

afterEach(cleanup);

const ready = execReady;

/** Starts `cmd`, then `swaps` successors, each once the one before is ready; returns ms from each ready to the old one's exit. */
async function swaps(sock: string, cmd: string[], n: number, onFirst: () => Promise<void>): Promise<number[]> {
  let cur = run(cmd[0]!, cmd.slice(1));
  await ready(sock, cur);
  await onFirst();
  const goneMs: number[] = [];
  for (let i = 0; i < n; i++) {
    const next = run(cmd[0]!, cmd.slice(1));
    await ready(sock, next);
    const t0 = Date.now();
    const ex = await cur.exited;
    goneMs.push(Date.now() - t0);
    if (ex.code !== 0) throw new Error(`version ${cur.pid} exited ${ex.code ?? ex.signal}; stderr:\n${cur.stderr()}`);
    cur = next;
    await sleep(BETWEEN_MS);
  }
  return goneMs;
}

const exec = (sock: string, execArgs: string[], cmd: string[]) => [process.execPath, CLI, 'exec', sock, ...execArgs, '--', ...cmd];
// No --bind: gunicorn takes fd 3 from LISTEN_FDS (exec sets it); `--bind fd://3` as well would make it open fd 3 twice (EBADF).
const GUNICORN = ['gunicorn', '--workers', '2', '--graceful-timeout', '10', '--chdir', EXAMPLES];
const UVICORN = ['uvicorn', '--fd', '3', '--timeout-keep-alive', '2', '--app-dir', EXAMPLES, 'uvicorn_app:app'];

const cases: Array<{ name: string; needs: () => ReturnType<typeof gunicorn>; cmd: (sock: string) => string[]; zero: boolean }> = [
  { name: 'gunicorn, sync workers (no keep-alive: Connection: close on every response)', needs: gunicorn, zero: true,
    cmd: (sock) => exec(sock, [], [...GUNICORN, 'gunicorn_app:app']) },
  { name: 'gunicorn, gthread workers, keep-alive 2 s (its default)', needs: gunicorn, zero: false,
    cmd: (sock) => exec(sock, [], [...GUNICORN, '--worker-class', 'gthread', '--threads', '4', '--keep-alive', '2', 'gunicorn_app:app']) },
  { name: 'gunicorn, gthread workers, --keep-alive 0', needs: gunicorn, zero: true,
    cmd: (sock) => exec(sock, [], [...GUNICORN, '--worker-class', 'gthread', '--threads', '4', '--keep-alive', '0', 'gunicorn_app:app']) },
  { name: 'uvicorn, its own SIGTERM shutdown', needs: uvicorn, zero: false,
    cmd: (sock) => exec(sock, [], UVICORN) },
  { name: 'uvicorn, the app drains on SIGUSR1 (examples/uvicorn_app.py)', needs: uvicorn, zero: true,
    cmd: (sock) => exec(sock, ['--retire-signal', 'SIGUSR1'], UVICORN) },
];

describe(`gunicorn and uvicorn via fdbroker exec under keep-alive load (${SWAPS} swaps each)`, () => {
  for (const c of cases) {
    itWith([c.needs()], c.zero ? `${c.name}: 0 failed requests` : `${c.name}: failures are resets only, counted`, async () => {
      // ?nodelay=1: uvicorn (--fd) never sets TCP_NODELAY itself; gunicorn does, and it does no harm there.
      const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0?nodelay=1'], SWAP_BROKER_FLAGS);
      let load: ReturnType<typeof loadLoop> | undefined;
      const goneMs = await swaps(broker.sock, c.cmd(broker.sock), SWAPS, async () => {
        load = loadLoop(broker.ports.http!, { concurrency: CONCURRENCY, keepAlive: true });
        await sleep(BETWEEN_MS);
      });
      const stats: LoadStats = await load!.stop();
      console.log(JSON.stringify({ case: c.name, ok: stats.ok, failed: stats.failed, byKind: stats.byKind, goneMs }));
      expect(Object.keys(stats.servedBy).length).toBe(SWAPS + 1);
      expect(stats.ok).toBeGreaterThan(500);
      for (const ms of goneMs) expect(ms).toBeLessThan(OLD_GONE_MAX_MS);
      if (c.zero) {
        expect(stats.byKind).toEqual({});
        expect(stats.failed).toBe(0);
      } else {
        for (const kind of Object.keys(stats.byKind)) expect(RESET_KINDS).toContain(kind);
      }
    }, 60_000);
  }
});
