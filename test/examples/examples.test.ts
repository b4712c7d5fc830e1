// Every framework example in examples/ swapped under keep-alive load through
// a real broker: 0 failed requests, every version serves, each old one leaves
// well before its drain deadline.
import { afterEach, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { CLI, cleanup, loadLoop, sleep, startBroker, tmpDir } from '../helpers';
import { python3Command } from '../requirements';
import { EXAMPLES, makeCert, OLD_GONE_MAX_MS, SWAP_BROKER_FLAGS, swapLoop } from '../swap-helpers';

const SWAPS = 3;
const BETWEEN_MS = 300;

afterEach(cleanup);

const python = python3Command;

const node = (file: string) => () => [process.execPath, path.join(EXAMPLES, file)];
const cases: Array<{ name: string; cmd: (sock: string) => string[]; check?: (stdout: string) => void; spec?: string; tls?: boolean }> = [
  { name: 'https', cmd: node('https.js'), tls: true },
  { name: 'express', cmd: node('express.js') },
  { name: 'koa', cmd: node('koa.js') },
  { name: 'hono', cmd: node('hono.js') },
  // Fastify's own onClose hooks run after the drain.
  { name: 'fastify', cmd: node('fastify.js'), check: (out) => expect(out).toMatch(/^onClose \d+$/m) },
  // A cluster: the primary joins, two workers adopt and serve (the body's first word is the primary's pid).
  { name: 'cluster (primary + 2 workers)', cmd: node('cluster.js'), check: (out) => expect(out).toMatch(/^drained \d+ workers 2$/m) },
  { name: 'python http.server via fdbroker exec', cmd: (sock) => [process.execPath, CLI, 'exec', sock, '--', python(), path.join(EXAMPLES, 'python_server.py')], spec: '?nodelay=1' },
];

describe(`examples under keep-alive load (${SWAPS} swaps each)`, () => {
  for (const c of cases) {
    it(`${c.name}: 0 failed requests`, async () => {
      // Python writes headers and body apart: without TCP_NODELAY each response waits on Nagle and a delayed ACK.
      const broker = await startBroker(tmpDir(), [`http=tcp://127.0.0.1:0${c.spec ?? ''}`], SWAP_BROKER_FLAGS);
      let load: ReturnType<typeof loadLoop> | undefined;
      const cert = c.tls ? makeCert(tmpDir()) : undefined;
      const r = await swapLoop(broker.sock, c.cmd(broker.sock), SWAPS, {
        env: cert ? { TLS_KEY: cert.key, TLS_CERT: cert.cert } : {},
        onReady: async () => {
          load = loadLoop(broker.ports.http!, { concurrency: 8, keepAlive: true, ...(cert ? { ca: fs.readFileSync(cert.cert) } : {}) });
          await sleep(BETWEEN_MS);
        },
        between: () => sleep(BETWEEN_MS),
      });
      await sleep(BETWEEN_MS);
      const stats = await load!.stop();
      console.log(JSON.stringify({ case: c.name, ok: stats.ok, failed: stats.failed, goneMs: r.goneMs }));
      expect(stats.byKind).toEqual({});
      expect(stats.failed).toBe(0);
      expect(Object.keys(stats.servedBy).length).toBe(SWAPS + 1);
      for (const ms of r.goneMs) expect(ms).toBeLessThan(OLD_GONE_MAX_MS);
      for (const p of r.all.slice(0, -1)) c.check?.(p.stdout());
    });
  }
});
