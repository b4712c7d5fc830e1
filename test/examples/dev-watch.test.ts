// The node --watch recipe: restarts on file changes while clients (new
// connection per request, and keep-alive) see no refused or reset request.
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cleanup, loadLoop, run, sleep, startBroker, tmpDir, waitText } from '../helpers';
import { EXAMPLES } from '../swap-helpers';

const RESTARTS = 3;
afterEach(cleanup);

describe('node --watch dev mode (examples/dev.js)', () => {
  it(`${RESTARTS} restarts under load: 0 failed requests, 0 refused`, async () => {
    const dir = tmpDir();
    const watched = path.join(dir, 'src');
    fs.mkdirSync(watched);
    fs.writeFileSync(path.join(watched, 'x.js'), '0');
    const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const dev = run(process.execPath, ['--watch-path', watched, path.join(EXAMPLES, 'dev.js')], { env: { FDBROKER_SOCK: broker.sock } });
    await dev.waitFor(/^ready \d+/m);
    const fresh = loadLoop(broker.ports.http!, { concurrency: 4, keepAlive: false });
    const kept = loadLoop(broker.ports.http!, { concurrency: 4, keepAlive: true });
    await sleep(300);
    for (let i = 1; i <= RESTARTS; i++) {
      fs.writeFileSync(path.join(watched, 'x.js'), String(i));
      const readies = () => (dev.stdout().match(/^ready \d+/gm) ?? []).length;
      await waitText(() => String(readies()), new RegExp(`^${i + 1}$`), 15_000);
      await sleep(400);
    }
    const a = await fresh.stop();
    const b = await kept.stop();
    console.log(JSON.stringify({ case: 'node --watch', fresh: { ok: a.ok, failed: a.failed }, keepAlive: { ok: b.ok, failed: b.failed }, servedBy: Object.keys(a.servedBy).length }));
    expect(a.byKind).toEqual({});
    expect(b.byKind).toEqual({});
    expect(Object.keys(a.servedBy).length).toBe(RESTARTS + 1);
  });
});
