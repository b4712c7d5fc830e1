// examples/systemd/fdbroker-run.service under a REAL systemd user manager
// (test/systemd/manager.ts): one unit that is the broker and runs the app.
// Type=notify, `systemctl reload` as a deploy, and a SIGKILL of run itself
// under load: systemd restarts it with the listeners from the fd store.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CLI, ROOT, cleanup, get, sleep, statusOf } from '../helpers';
import { describeWith, ss } from '../requirements';
import { managerNeeds, UserManager } from './manager';
import { failuresByKind, KILLED_PROCESS_KINDS, RUN_APP, timedLoad } from '../run-helpers';
import type { StatusMessage } from '../../src/protocol/messages';

const UNIT = path.join(ROOT, 'examples', 'systemd', 'fdbroker-run.service');

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The inode of the socket listening on 127.0.0.1:port (ss). */
function listeningInodes(port: number): string[] {
  const out = execFileSync('ss', ['-Hltne', `sport = :${port}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return [...out.matchAll(/ino:(\d+)/g)].map((x) => x[1]!);
}

async function tryStatus(sock: string): Promise<StatusMessage | undefined> {
  try { return await statusOf(sock); } catch { return undefined; }
}

describeWith([...managerNeeds(), ss()], 'fdbroker run under a real systemd user manager', () => {
  let m: UserManager;
  beforeAll(async () => { m = await UserManager.start(); }, 30_000);
  afterAll(async () => { await m?.stop(); }, 30_000);
  afterEach(async () => { await cleanup(); });

  it('one unit: start returns with the app serving soon after; `systemctl reload` deploys under load; SIGKILL of run under load: restarted with the same socket, 0 refused', async () => {
    const port = await freePort();
    const log = path.join(m.runtimeDir, 'app.log');
    let text = fs.readFileSync(UNIT, 'utf8');
    for (const [from, to] of [
      ['/usr/local/bin/fdbroker', `${process.execPath} ${CLI}`],
      ['--listen http=tcp://0.0.0.0:8080', `--listen http=tcp://127.0.0.1:${port}`],
      ['/usr/bin/node /srv/app/server.js', `${process.execPath} ${RUN_APP}`],
    ] as const) {
      if (!text.includes(from)) throw new Error(`examples/systemd/fdbroker-run.service no longer has "${from}"`);
      text = text.split(from).join(to);
    }
    text = text.replace('[Service]\n', `[Service]\nStandardOutput=append:${log}\nStandardError=append:${log}\n`);
    await m.install({ 'app.service': text });
    const sock = path.join(m.runtimeDir, 'app', 'control.sock');
    await m.systemctl('start', 'app.service');
    expect(await m.show('app.service', 'ActiveState')).toBe('active');
    const runPid = Number(await m.show('app.service', 'MainPID'));
    const s1 = await until('the app ready', async () => { const s = await tryStatus(sock); return s?.generations.some((g) => g.state === 'ready') ? s : undefined; });
    expect(s1.broker.pid).toBe(runPid);
    const app1 = s1.generations[0]!.pid;

    const loads = [timedLoad(port, { concurrency: 4 }), timedLoad(port, { concurrency: 4, keepAlive: true })];
    await sleep(500);
    // `systemctl reload` = SIGHUP = a deploy.
    await m.systemctl('reload', 'app.service');
    const s2 = await until('the new version alone', async () => {
      const s = await tryStatus(sock);
      return s && s.generations.length === 1 && s.generations[0]!.pid !== app1 && s.generations[0]!.state === 'ready' ? s : undefined;
    });
    await sleep(500);
    const afterDeploy = (await Promise.all(loads.map((l) => l.stop()))).flat();
    expect(failuresByKind(afterDeploy)).toEqual({});

    // SIGKILL run itself under load: systemd restarts it; the socket comes back from the fd store.
    const loads2 = [timedLoad(port, { concurrency: 4 }), timedLoad(port, { concurrency: 4, keepAlive: true })];
    await sleep(500);
    const inodes = listeningInodes(port);
    expect(inodes).toHaveLength(1);
    await m.systemctl('kill', '--signal=SIGKILL', '--kill-whom=main', 'app.service');
    const s3 = await until('a new run with a ready app', async () => {
      const s = await tryStatus(sock);
      return s && s.broker.pid !== runPid && s.generations.some((g) => g.state === 'ready') ? s : undefined;
    }, 30_000);
    await sleep(500);
    const results = (await Promise.all(loads2.map((l) => l.stop()))).flat();
    const failed = failuresByKind(results);
    console.log(`systemd: SIGKILL of run under load: ${results.length} requests, failed ${JSON.stringify(failed)}; app ${s2.generations[0]!.pid} -> ${s3.generations.map((g) => g.pid).join(',')}`);
    for (const kind of Object.keys(failed)) expect(KILLED_PROCESS_KINDS.has(kind), JSON.stringify(failed)).toBe(true);
    expect(failed.ECONNREFUSED ?? 0).toBe(0);
    expect(await m.show('app.service', 'NRestarts')).toBe('1');
    expect((await get(port)).status).toBe(200);
    // The very socket systemd kept in its fd store.
    expect(listeningInodes(port)).toEqual(inodes);
    await m.systemctl('stop', 'app.service');
    expect(await m.show('app.service', 'Result')).toBe('success');
  }, 90_000);
});
