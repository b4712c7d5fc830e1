// Adoption inside Node cluster workers: each worker listens on its own
// duplicate of the broker's socket, never on whatever the primary has at that
// fd number.
import { afterEach, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import * as path from 'node:path';
import { cleanup, get, startApp, startBroker, tmpDir } from '../helpers';

afterEach(cleanup);

describe('cluster workers', () => {
  it('two workers adopt from the broker and both serve', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const primary = await startApp(broker.sock, { WORKERS: '2' }, 'cluster-app.js');
    const pids = new Set<string>();
    for (let i = 0; i < 400 && pids.size < 2; i++) {
      const r = await get(broker.ports.http!);
      expect(r.status).toBe(200);
      pids.add(r.body.split(' ')[0]!);
    }
    expect(pids.size).toBe(2);
    expect(pids.has(String(primary.pid))).toBe(false);
  });
});

describe('cluster workers and unix listeners', () => {
  it('a unix listener passed by fd through cluster (the primary adopts) serves from the workers: no EEXIST (nodejs/node#44035)', async () => {
    const dir = tmpDir();
    const unixPath = path.join(dir, 'app.http.sock');
    const broker = await startBroker(dir, [`http=unix:${unixPath}`]);
    const primary = await startApp(broker.sock, { WORKERS: '2', PATTERN: 'primary' }, 'cluster-gen.js');
    const pids = new Set<string>();
    for (let i = 0; i < 200 && pids.size < 2; i++) {
      const body = await new Promise<string>((resolve, reject) => {
        http.get({ socketPath: unixPath, path: '/', agent: false }, (res) => {
          let b = '';
          res.on('data', (d) => { b += d; });
          res.on('end', () => resolve(b));
        }).on('error', reject);
      });
      pids.add(body.split(' ')[0]!);
    }
    expect(pids.size).toBe(2);
    expect(pids.has(String(primary.pid))).toBe(false);
    expect(primary.stderr()).not.toMatch(/EEXIST|EADDRINUSE/);
  });
});
