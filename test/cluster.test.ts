// Adoption inside Node cluster workers: each worker listens on its own
// duplicate of the broker's socket, never on whatever the primary has at that
// fd number.
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, get, startApp, startBroker, tmpDir } from './helpers';

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
