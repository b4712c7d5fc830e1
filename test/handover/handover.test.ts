// Real processes, real sockets, real HTTP on 127.0.0.1: the broker keeps the
// listener, apps come and go, clients never see a refused or reset connection.
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, get, loadLoop, sleep, startApp, startBroker, tmpDir } from '../helpers';

afterEach(cleanup);

describe('handover between app processes', () => {
  it('an app adopts the broker\'s listener and serves HTTP', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const app = await startApp(broker.sock);
    const res = await get(broker.ports.http!);
    expect(res.status).toBe(200);
    expect(res.body).toBe(`${app.pid} ok\n`);
  });

  it('a second app adopts while the first serves, then the first exits: no refused or reset connection', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const v1 = await startApp(broker.sock);
    const load = loadLoop(broker.ports.http!, { concurrency: 8 });
    await sleep(500);
    const v2 = await startApp(broker.sock);
    await sleep(500);
    v1.kill('SIGTERM');
    expect((await v1.exited).code).toBe(0);
    await sleep(500);
    const stats = await load.stop();
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
    expect(stats.servedBy[String(v1.pid)]).toBeGreaterThan(0);
    expect(stats.servedBy[String(v2.pid)]).toBeGreaterThan(0);
    expect(stats.ok).toBeGreaterThan(100);
  });

  it('SIGKILL the app and start another a second later: connections made in the gap wait in the queue and succeed', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const v1 = await startApp(broker.sock);
    v1.kill('SIGKILL');
    await v1.exited;
    // Requests sent while no process serves: they queue in the broker-held backlog.
    const gap = Array.from({ length: 20 }, () => get(broker.ports.http!));
    await sleep(1000);
    const v2 = await startApp(broker.sock);
    const results = await Promise.all(gap);
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(new Set(results.map((r) => r.body))).toEqual(new Set([`${v2.pid} ok\n`]));
  });
});
