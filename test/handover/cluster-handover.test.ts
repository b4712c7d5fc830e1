// The original request (nodejs/node-v0.x-archive#5050): replace a Node
// cluster's primary without downtime. Both patterns, under load.
import { afterEach, expect, it } from 'vitest';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { cleanup, FIXTURES, loadLoop, run, sleep, startBroker, tmpDir, type Proc } from '../helpers';

afterEach(cleanup);

const APP = path.join(FIXTURES, 'cluster-gen.js');

function startCluster(sock: string, pattern: string): Proc {
  return run(process.execPath, [APP], { env: { FDBROKER_SOCK: sock, PATTERN: pattern, WORKERS: '2' } });
}

for (const pattern of ['direct', 'primary']) {
  for (const keepAlive of [true, false]) {
    it(`${pattern === 'direct' ? 'workers adopt from the broker' : 'the primary adopts, workers listen through cluster'}: `
      + `3 primary replacements, ${keepAlive ? 'keep-alive' : 'new connection per request'}: 0 failed`, async () => {
      const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0?backlog=1024'], ['--quiet']);
      let current = startCluster(broker.sock, pattern);
      await current.waitFor(/^ready \d+/m);
      const load = loadLoop(broker.ports.http!, { concurrency: 16, keepAlive });
      await sleep(300);
      const primaries: number[] = [current.pid];
      for (let i = 0; i < 3; i++) {
        const next = startCluster(broker.sock, pattern);
        await next.waitFor(/^ready \d+/m);
        expect((await current.exited).code).toBe(0);
        current = next;
        primaries.push(next.pid);
        await sleep(200);
      }
      const stats = await load.stop();
      expect(stats.byKind).toEqual({});
      expect(stats.failed).toBe(0);
      // Served by workers of every generation, never by a primary.
      expect(Object.keys(stats.servedBy).length).toBeGreaterThanOrEqual(4);
      for (const p of primaries) expect(stats.servedBy[String(p)]).toBeUndefined();
      // The backlog the broker set is still in force.
      const ss = execFileSync('ss', ['-ltnH', `sport = :${broker.ports.http}`], { encoding: 'utf8' });
      expect(ss.trim().split(/\s+/)[2]).toBe('1024');
    }, 90_000);
  }
}
