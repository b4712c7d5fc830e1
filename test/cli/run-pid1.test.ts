// `fdbroker run` as a container's main process: PID 1 of its own PID
// namespace (unshare --pid --fork --mount-proc; the network is shared, so the
// load runs on 127.0.0.1 as usual). A crash and a deploy under load, orphans
// reaped, and SIGTERM a graceful stop of everything with exit 0.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import { afterEach } from 'vitest';
import { CLI, cleanup, run, sleep, tmpDir, waitText } from '../helpers';
import { failuresByKind, KILLED_PROCESS_KINDS, RUN_APP, timedLoad } from '../run-helpers';
import { describeWith, itWith, root, tool } from '../requirements';
import { RUN_EXIT } from '../../src/cli/run';
import { DEPLOY_EXIT } from '../../src/cli/deploy';
import { REAP_INTERVAL_MS } from '../../src/run/reaper';

afterEach(cleanup);

const unshare = tool('unshare', ['--version'], 'unshare (util-linux)', 'apt-get install util-linux');

/** Processes whose parent is `ppid` (host pids), with their state and command line. */
function children(ppid: number): Array<{ pid: number; state: string; cmd: string }> {
  const out: Array<{ pid: number; state: string; cmd: string }> = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) !== ppid) continue;
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').join(' ');
      out.push({ pid: Number(e), state: rest[0]!, cmd });
    } catch { /* gone */ }
  }
  return out;
}

async function childMatching(ppid: number, re: RegExp, not?: number): Promise<number> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const c = children(ppid).find((x) => re.test(x.cmd) && x.pid !== not && x.state !== 'Z');
    if (c) return c.pid;
    if (Date.now() > deadline) throw new Error(`no child of ${ppid} matching ${re}: ${JSON.stringify(children(ppid))}`);
    await sleep(20);
  }
}

describeWith([root('a PID namespace'), unshare], 'fdbroker run as PID 1', () => {
  itWith([], 'reaps orphans, restarts a SIGKILLed app and deploys under load (0 refused), and stops gracefully on SIGTERM with exit 0', async () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'run.sock');
    const u = run('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, CLI, 'run', sock, '--listen', 'http=tcp://127.0.0.1:0', '--library',
      '--', process.execPath, RUN_APP], { env: { SPAWN_ORPHANS: '3' } });
    const m = await u.waitFor(/fdbroker: ready on .* \(pid (\d+)\): http=tcp:\/\/127\.0\.0\.1:(\d+)/);
    expect(Number(m[1])).toBe(1);
    const port = Number(m[2]);
    const runPid = await childMatching(u.pid, /fdbroker\.js run /);
    const app1 = await childMatching(runPid, /run-app\.js/);
    await waitText(u.stdout, /^ready \d+ gen 1$/m, 15_000);
    const loads = [timedLoad(port, { concurrency: 4 }), timedLoad(port, { concurrency: 4, keepAlive: true })];
    await sleep(300);

    process.kill(app1, 'SIGKILL');
    await waitText(u.stdout, /^ready \d+ gen 2$/m, 15_000);
    const d = run(process.execPath, [CLI, 'deploy', sock, '--timeout', '15000']);
    expect((await d.exited).code, d.stderr()).toBe(DEPLOY_EXIT.deployed);
    await sleep(300);
    const results = (await Promise.all(loads.map((l) => l.stop()))).flat();
    const failed = failuresByKind(results);
    for (const kind of Object.keys(failed)) expect(KILLED_PROCESS_KINDS.has(kind), JSON.stringify(failed)).toBe(true);
    expect(Object.values(failed).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(8);
    expect(results.filter((r) => r.ok).length).toBeGreaterThan(50);

    // Each of the three versions left 3 orphans; none stays a zombie.
    await waitText(u.stdout, /(?:reaped orphan pid \d+ \(code 0\)[\s\S]*){9}/, 5_000);
    await sleep(REAP_INTERVAL_MS);
    expect(children(runPid).filter((c) => c.state === 'Z')).toEqual([]);

    // SIGTERM: the serving app drains (it prints "drained"), run exits 0, and so does unshare.
    const app3 = await childMatching(runPid, /run-app\.js/);
    process.kill(runPid, 'SIGTERM');
    const ex = await u.exited;
    expect(ex.code, u.stderr()).toBe(RUN_EXIT.ok);
    expect(u.stdout()).toMatch(/SIGTERM: stopping every process/);
    expect(u.stdout()).toMatch(/^drained \d+$/m);
    expect(fs.existsSync(`/proc/${app3}`)).toBe(false);
    expect(fs.existsSync(sock)).toBe(false);
  }, 60_000);
});
