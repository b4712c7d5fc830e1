// Bun and Deno (npm devDependencies): what works under `fdbroker exec`
// (serving the inherited fd 3) and through the library, each cell of the
// table in docs/guides/other-languages.md measured here.
//   - exec, node:net listen({ fd: 3 }): both serve the held socket; a deploy
//     under load loses nothing.
//   - exec, node:http listen({ fd: 3 }): Deno serves it; Bun binds a new
//     port of its own and leaves the held socket unserved (its bug; the
//     test asserts it, so a Bun that fixes it shows here).
//   - library (startGeneration(), adoptListeners(), Broker.start()): refused at once with
//     ERR_FDBROKER_UNSUPPORTED_RUNTIME (Bun would abort in uv_poll_init,
//     Deno would wait for replies that never come).
import * as path from 'node:path';
import * as http from 'node:http';
import { afterEach, describe, expect } from 'vitest';
import { CLI, FIXTURES, ROOT, cleanup, run, startBroker, tmpDir, type Proc } from '../helpers';
import { file, itWith, type Requirement } from '../requirements';
import { OLD_GONE_MAX_MS, SWAP_BROKER_FLAGS, execDeployUnderLoad } from '../swap-helpers';

afterEach(cleanup);

/** A library call refused for the runtime must end this soon (no hang until a protocol timeout). */
const REFUSED_WITHIN_MS = 5_000;
/** How long the held port is watched for an answer that must not come (Bun's node:http). */
const UNSERVED_WATCH_MS = 2_000;
/** At least this many requests served per kind of load. */
const MIN_OK = 50;

interface Runtime { name: string; bin: string; args: string[]; needs: () => Requirement[] }
const RUNTIMES: Runtime[] = [
  { name: 'Bun', bin: path.join(ROOT, '.test-runtimes', 'node_modules', '.bin', 'bun'), args: [],
    needs: () => [file(path.join(ROOT, '.test-runtimes', 'node_modules', '.bin', 'bun'), 'bun (from npm)', 'bash scripts/test-runtimes.sh')] },
  { name: 'Deno', bin: path.join(ROOT, '.test-runtimes', 'node_modules', '.bin', 'deno'), args: ['run', '-A'],
    needs: () => [file(path.join(ROOT, '.test-runtimes', 'node_modules', '.bin', 'deno'), 'deno (from npm)', 'bash scripts/test-runtimes.sh')] },
];

/** One GET on a fresh connection; 'timeout' when nothing answers within `ms`. */
function getOrTimeout(port: number, ms: number): Promise<{ status: number; body: string } | 'timeout'> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: ms }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => { req.destroy(); resolve('timeout'); });
    req.on('error', reject);
  });
}

for (const rt of RUNTIMES) {
  describe(`${rt.name}`, () => {
    itWith(rt.needs(), `${rt.name} under fdbroker exec, node:net listen({ fd: 3 }): serves the held socket; a deploy under load loses nothing`, async () => {
      const dir = tmpDir();
      const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], SWAP_BROKER_FLAGS);
      const port = broker.ports.http!;
      const start = (): Proc => run(process.execPath, [CLI, 'exec', broker.sock, '--ready', 'immediate', '--',
        rt.bin, ...rt.args, path.join(FIXTURES, 'runtime-net-app.cjs')]);
      const r = await execDeployUnderLoad(broker.sock, port, start);
      const { keepAlive: ka, newConnections: nc } = r;
      console.error(JSON.stringify({ case: `${rt.name} exec node:net`, keepAlive: { ok: ka.ok, failed: ka.failed, byKind: ka.byKind },
        newConnections: { ok: nc.ok, failed: nc.failed, byKind: nc.byKind }, goneMs: r.goneMs }));
      expect(r.before.status, r.first.stderr()).toBe(200);
      expect(r.before.body).toMatch(new RegExp(`^\\d+ ${rt.name.toLowerCase()}\\n$`));
      expect(r.first.stdout()).toContain(`"port":${port}`);
      expect(r.firstExit.code, r.first.stderr()).toBe(0);
      expect(r.goneMs).toBeLessThan(OLD_GONE_MAX_MS);
      expect(r.after.status, r.second.stderr()).toBe(200);
      expect(r.after.body.split(' ')[0]).not.toBe(r.before.body.split(' ')[0]);
      expect(ka.byKind).toEqual({});
      expect(nc.byKind).toEqual({});
      expect(ka.ok).toBeGreaterThan(MIN_OK);
      expect(nc.ok).toBeGreaterThan(MIN_OK);
    }, 40_000);

    itWith(rt.needs(), rt.name === 'Bun'
      ? 'Bun under fdbroker exec, node:http listen({ fd: 3 }): binds a new port instead; the held socket stays unserved'
      : 'Deno under fdbroker exec, node:http listen({ fd: 3 }): serves the held socket', async () => {
      const dir = tmpDir();
      const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
      const port = broker.ports.http!;
      const p = run(process.execPath, [CLI, 'exec', broker.sock, '--ready', 'immediate', '--',
        rt.bin, ...rt.args, path.join(FIXTURES, 'exec-listen-fds.js')]);
      await p.waitFor(/^serving \d+/m, 15_000);
      const got = await getOrTimeout(port, UNSERVED_WATCH_MS);
      if (rt.name === 'Bun') {
        expect(got).toBe('timeout');
      } else {
        expect(got).toEqual({ status: 200, body: expect.stringMatching(/^\d+ exec\n$/) as unknown as string });
      }
    }, 30_000);

    for (const api of ['startGeneration', 'adoptListeners', 'Broker.start'] as const) {
      itWith(rt.needs(), `${rt.name}, the library's ${api}(): ERR_FDBROKER_UNSUPPORTED_RUNTIME at once, no crash and no hang`, async () => {
        const dir = tmpDir();
        const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
        const fixture = { startGeneration: 'gen-app.js', adoptListeners: 'runtime-adopt.cjs', 'Broker.start': 'runtime-broker.cjs' }[api];
        const t0 = Date.now();
        const p = run(rt.bin, [...rt.args, path.join(FIXTURES, fixture)], { env: { FDBROKER_SOCK: broker.sock, DIR: dir } });
        const ex = await p.exited;
        const ms = Date.now() - t0;
        expect(ex.code, p.stderr()).toBe(3);
        expect(p.stdout() + p.stderr()).toContain('ERR_FDBROKER_UNSUPPORTED_RUNTIME');
        expect(ms).toBeLessThan(REFUSED_WITHIN_MS);
      }, 30_000);
    }
  });
}
