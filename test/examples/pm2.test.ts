// The PM2 recipe: broker and app under PM2 (fork mode, examples/pm2.config.js),
// `pm2 reload app` under keep-alive load: 0 failed requests. PM2 runs with
// its own PM2_HOME in a temp dir and is killed (`pm2 kill`) afterwards.
import { afterEach, describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { cleanup, loadLoop, ROOT, sleep, tmpDir, waitText } from '../helpers';

const PM2 = path.join(ROOT, 'node_modules', '.bin', 'pm2');
const RELOADS = 3;
let home: string | undefined;

afterEach(async () => {
  if (home) {
    try { execFileSync(PM2, ['kill'], { env: { ...process.env, PM2_HOME: home }, stdio: 'ignore', timeout: 20_000 }); } catch { /* already gone */ }
    home = undefined;
  }
  await cleanup();
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

describe('PM2 (fork mode) recipe', () => {
  it(`${RELOADS} x pm2 reload under keep-alive load: 0 failed requests`, async () => {
    if (!fs.existsSync(PM2)) throw new Error(`pm2 is not installed (npm ci installs it as a devDependency): ${PM2}`);
    const dir = tmpDir();
    home = path.join(dir, 'pm2');
    const sock = path.join(dir, 'app.sock');
    const port = await freePort();
    const env = { ...process.env, PM2_HOME: home, FDBROKER_SOCK: sock, PORT: String(port) };
    // Asynchronous: a blocked event loop would stall the load clients in this process.
    const pm2 = (...args: string[]) => promisify(execFile)(PM2, args, { env, cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    await pm2('start', path.join(ROOT, 'examples', 'pm2.config.js'));
    const appLog = () => { try { return fs.readFileSync(path.join(home!, 'logs', 'app-out.log'), 'utf8'); } catch { return ''; } };
    await waitText(appLog, /^ready \d+/m, 20_000);
    const load = loadLoop(port, { concurrency: 8, keepAlive: true });
    await sleep(500);
    for (let i = 1; i <= RELOADS; i++) {
      await pm2('reload', 'app');
      await waitText(() => String((appLog().match(/^ready \d+/gm) ?? []).length), new RegExp(`^${i + 1}$`), 30_000);
      await sleep(500);
    }
    const s = await load.stop();
    console.log(JSON.stringify({ case: 'pm2 reload (fork mode)', ok: s.ok, failed: s.failed, byKind: s.byKind, servedBy: Object.keys(s.servedBy).length }));
    expect(s.byKind).toEqual({});
    expect(Object.keys(s.servedBy).length).toBe(RELOADS + 1);
  });
});
