// `fdbroker run --instances N`: N processes serve the broker's listeners at
// once, one per instance slot, each on its socket of the listener's
// SO_REUSEPORT group (held by the broker). Real processes, real HTTP load on 127.0.0.1
// (new-connection and keep-alive clients that never retry), failures counted
// by kind; the only excused failures are requests on connections a SIGKILLed
// instance had accepted. Capacity (instances ready, per the broker's status)
// is sampled throughout. How evenly the instances share the load is measured
// by bench/instances.js, not asserted here (a timed spread is noise on a
// shared machine).
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { alive, CLI, cleanup, FIXTURES, run, sleep, statusOf, tmpDir, waitText } from '../helpers';
import { failuresByKind, KILLED_PROCESS_KINDS, readyPid, RUN_APP, startRun, timedLoad } from '../run-helpers';

afterEach(cleanup);

const N = 2;
const EXEC_APP = path.join(FIXTURES, 'exec-listen-fds.js');
/** How often the capacity sampler asks the broker for its status. */
const SAMPLE_EVERY_MS = 20;

/** Samples how many generations the broker has ready, until stopped; the smallest count seen in each phase. */
function capacitySampler(sock: string) {
  let phase = 'start';
  const minByPhase: Record<string, number> = {};
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      const p = phase;
      try {
        const st = await statusOf(sock);
        const ready = st.generations.filter((g) => g.state === 'ready').length;
        minByPhase[p] = Math.min(minByPhase[p] ?? Infinity, ready);
      } catch { /* a status that fails is no sample */ }
      await sleep(SAMPLE_EVERY_MS);
    }
  })();
  return { setPhase: (p: string) => { phase = p; }, stop: async () => { stop = true; await loop; return minByPhase; } };
}

/** Listening TCP sockets on 127.0.0.1:`port` (/proc/net/tcp, state 0A). */
function listeningSockets(port: number): number {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').filter((l) => {
    const f = l.trim().split(/\s+/);
    return f[1]?.endsWith(hex) && f[3] === '0A';
  }).length;
}

/** The pids that answered (run-app answers "<pid> gen <n>"). */
async function servers(port: number, tries: number): Promise<Set<number>> {
  const seen = new Set<number>();
  const http = await import('node:http');
  for (let i = 0; i < tries; i++) {
    const body = await new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, agent: false }, (r) => { let b = ''; r.on('data', (d) => { b += d; }); r.on('end', () => resolve(b)); }).on('error', reject);
    });
    seen.add(Number(body.split(' ')[0]));
  }
  return seen;
}

describe('fdbroker run --instances', () => {
  it(`${N} instances under load: a deploy replaces them one at a time with ${N} ready throughout, a crashed one restarts alone; 0 failed but the killed one's`, async () => {
    const r = await startRun(tmpDir(), ['--library', '--quiet', '--instances', String(N)], [process.execPath, RUN_APP]);
    const first = [await readyPid(r, 1), await readyPid(r, 2)];
    const st = await statusOf(r.sock);
    expect(st.generations.filter((g) => g.state === 'ready').map((g) => g.slot ?? 0).sort()).toEqual([0, 1]);
    // The listener is a SO_REUSEPORT group of N listening sockets (the broker holds them all).
    expect(listeningSockets(r.port)).toBe(N);
    // Both serve: a few hundred new connections reach each.
    expect(await servers(r.port, 200)).toEqual(new Set(first));

    const cap = capacitySampler(r.sock);
    const loads = [timedLoad(r.port, { concurrency: 4 }), timedLoad(r.port, { concurrency: 4, keepAlive: true })];
    await sleep(500);
    cap.setPhase('deploy');
    const d = run(process.execPath, [CLI, 'deploy', r.sock, '--timeout', '30000']);
    expect((await d.exited).code, d.stderr() + d.stdout()).toBe(0);
    const second = [await readyPid(r, 3), await readyPid(r, 4)];
    expect(second.filter((p) => first.includes(p))).toEqual([]);
    await r.waitFor(new RegExp(`drained ${first[0]}[\\s\\S]*drained ${first[1]}|drained ${first[1]}[\\s\\S]*drained ${first[0]}`));
    cap.setPhase('after-deploy');
    await sleep(300);

    // One instance is SIGKILLed: it alone is restarted; the other serves on meanwhile (connections hashed to
    // the killed one's socket wait in its queue for the restart).
    cap.setPhase('crash');
    process.kill(second[0]!, 'SIGKILL');
    const third = await readyPid(r, 5);
    expect(third).not.toBe(second[1]);
    expect(alive(second[1]!)).toBe(true);
    cap.setPhase('after-crash');
    await sleep(500);
    const results = (await Promise.all(loads.map((l) => l.stop()))).flat();
    const minByPhase = await cap.stop();

    const failed = failuresByKind(results);
    for (const kind of Object.keys(failed)) expect(KILLED_PROCESS_KINDS.has(kind), `failure kind ${kind}: ${JSON.stringify(failed)}`).toBe(true);
    // At most the 8 clients' requests in flight on the killed instance's connections.
    expect(Object.values(failed).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(8);
    expect(results.filter((x) => x.ok).length).toBeGreaterThan(100);
    // Capacity: N ready throughout the deploy, and again once the crashed slot restarted.
    expect(minByPhase.deploy, JSON.stringify(minByPhase)).toBe(N);
    expect(minByPhase['after-deploy'], JSON.stringify(minByPhase)).toBe(N);
    expect(minByPhase['after-crash'], JSON.stringify(minByPhase)).toBe(N);
    expect(await servers(r.port, 200)).toEqual(new Set([second[1], third]));
  });

  it('exec contract: each `fdbroker exec` wrapper joins in its slot; a deploy under load rolls both with 0 failed', async () => {
    const r = await startRun(tmpDir(), ['--ready', 'immediate', '--quiet', '--instances', String(N)], [process.execPath, EXEC_APP]);
    const serving = async (n: number) => Number((await r.waitFor(new RegExp(`(?:^serving \\d+\\n[\\s\\S]*){${n - 1}}^serving (\\d+)`, 'm')))[1]);
    await serving(N);
    const ready = async () => (await statusOf(r.sock)).generations.filter((g) => g.state === 'ready');
    for (let i = 0; (await ready()).length < N; i++) {
      if (i > 500) throw new Error('the instances are not ready');
      await sleep(20);
    }
    expect((await ready()).map((g) => g.slot ?? 0).sort()).toEqual([0, 1]);
    const before = (await ready()).map((g) => g.pid);
    const cap = capacitySampler(r.sock);
    const loads = [timedLoad(r.port, { concurrency: 4 }), timedLoad(r.port, { concurrency: 4, keepAlive: true })];
    await sleep(300);
    cap.setPhase('deploy');
    const d = run(process.execPath, [CLI, 'deploy', r.sock, '--timeout', '30000']);
    expect((await d.exited).code, d.stderr() + d.stdout()).toBe(0);
    await serving(2 * N);
    for (const pid of before) await waitText(() => String(alive(pid)), /^false$/);
    await sleep(300);
    const results = (await Promise.all(loads.map((l) => l.stop()))).flat();
    const minByPhase = await cap.stop();
    expect(failuresByKind(results)).toEqual({});
    expect(minByPhase.deploy, JSON.stringify(minByPhase)).toBe(N);
    const after = await ready();
    expect(after.map((g) => g.slot ?? 0).sort()).toEqual([0, 1]);
    expect(after.some((g) => before.includes(g.pid))).toBe(false);
    expect(listeningSockets(r.port)).toBe(N);
  });

  it('--instances with --spare, or out of range: exit 2, nothing started', async () => {
    for (const [flags, re] of [
      [['--instances', '2', '--spare', '--library'], /--spare and --instances do not go together/],
      [['--instances', '0'], /--instances must be a whole number from 1 to 64/],
    ] as const) {
      const p = run(process.execPath, [CLI, 'run', 'x.sock', '--listen', 'http=tcp://127.0.0.1:0', ...flags, '--', 'node']);
      expect((await p.exited).code).toBe(2);
      expect(p.stderr()).toMatch(re);
    }
  });
});
