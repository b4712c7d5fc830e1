// docs/guides/other-languages.md, "A Node program under exec": the guide's
// snippet (a Node server on fd 3 that says READY=1 through the library's
// SdNotifier and drains on SIGTERM), run under `fdbroker exec` and deployed
// twice with examples/blue-green.sh under keep-alive load: each version
// becomes ready by its own READY=1, the old one drains and exits 0, and no
// request fails.
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLI, cleanup, get, loadLoop, ROOT, run, sleep, startBroker, tmpDir } from '../helpers';

const GUIDE = path.join(ROOT, 'docs', 'guides', 'other-languages.md');
const SCRIPT = path.join(ROOT, 'examples', 'blue-green.sh');
const deployed = new Set<number>();

afterEach(async () => {
  // blue-green.sh starts each version in a session of its own (setsid): end those groups too.
  for (const pid of deployed) { try { process.kill(-pid, 'SIGTERM'); } catch { /* gone */ } }
  deployed.clear();
  await cleanup();
});

/** The js block of the guide's section "A Node program under `exec`". */
function guideSnippet(): string {
  const text = fs.readFileSync(GUIDE, 'utf8');
  const at = text.indexOf('\n## A Node program under `exec`\n');
  const m = at < 0 ? null : /```js\n([\s\S]*?)```/.exec(text.slice(at));
  if (!m || !m[1]!.includes('SdNotifier')) throw new Error('docs/guides/other-languages.md: no js block with SdNotifier under "A Node program under `exec`"');
  return m[1]!;
}

describe('a Node program under fdbroker exec (the guide\'s recipe)', () => {
  it('says READY=1 with SdNotifier, drains on the retire signal: 2 deploys under keep-alive load, 0 failed', async () => {
    // The snippet as an app folder of its own, with fdbroker resolvable as a dependency.
    const app = tmpDir();
    fs.writeFileSync(path.join(app, 'server.js'), guideSnippet());
    fs.mkdirSync(path.join(app, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(app, 'node_modules', 'fdbroker'));
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const deploy = async () => {
      const d = run('bash', [SCRIPT, broker.sock, process.execPath, CLI, 'exec', broker.sock, '--', process.execPath, path.join(app, 'server.js')],
        { env: { FDBROKER: `${process.execPath} ${CLI}`, TIMEOUT_MS: '15000', LOG: path.join(app, 'deploy.log') }, cwd: app });
      const r = await d.exited;
      const pid = Number(/started pid (\d+)/.exec(d.stderr())?.[1]);
      deployed.add(pid);
      expect(r.code, `${d.stderr()}\n${fs.readFileSync(path.join(app, 'deploy.log'), 'utf8')}`).toBe(0);
      return { pid, verdict: JSON.parse(d.stdout().trim()) as { verdict: string; wait: { pid: number; state: string } } };
    };
    const v1 = await deploy();
    expect(v1.verdict).toMatchObject({ verdict: 'deployed', wait: { pid: v1.pid, state: 'ready' } });
    const port = broker.ports.http!;
    const first = await get(port);
    expect(first.body).toMatch(/^hello from \d+\n$/);
    const load = loadLoop(port, { concurrency: 6, keepAlive: true });
    await sleep(300);
    const v2 = await deploy();
    expect(v2.verdict).toMatchObject({ verdict: 'deployed', wait: { pid: v2.pid, state: 'ready' } });
    const v3 = await deploy();
    expect(v3.verdict.verdict).toBe('deployed');
    await sleep(300);
    const stats = await load.stop();
    console.log(`node under exec: ${stats.ok} requests over 2 deploys, ${stats.failed} failed ${JSON.stringify(stats.byKind)}`);
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
    // The old versions drained and left (gone, or a zombie waiting for this container's init to reap it); v3 serves.
    const state = (pid: number) => { try { return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0]; } catch { return 'gone'; } };
    for (const pid of [v1.pid, v2.pid]) expect(['gone', 'Z']).toContain(state(pid));
    expect(['gone', 'Z']).not.toContain(state(v3.pid));
    // Another process answers now than before the deploys.
    const last = await get(port);
    expect(last.body).toMatch(/^hello from \d+\n$/);
    expect(last.body).not.toBe(first.body);
  });
});
