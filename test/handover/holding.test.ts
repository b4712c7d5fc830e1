// The "holding" report under load, with real processes: a retiring generation
// holding WebSockets, event streams and slow responses tells the broker what
// it still holds; `fdbroker status --json` shows the counts go down, and the
// generation leaves the table once they reach the end. Keep-alive load runs
// throughout with no retries.
import { afterEach, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as path from 'node:path';
import WebSocket from 'ws';
import { CLI, FIXTURES, cleanup, loadLoop, run, sleep, startBroker, statusOf, tmpDir, type Proc } from '../helpers';
import { HOLDING_REPORT_MS } from '../../src/handover/defaults';
import type { GenerationInfo } from '../../src/core/generation-info';
import { python3Command } from '../requirements';

afterEach(cleanup);

const WEBSOCKETS = 8;
const STREAMS = 4;
/** Slow plain responses, answered 1.0, 1.5, ... s after they are asked. */
const SLOW = 4;
const SLOW_BASE_MS = 1_000;
const SLOW_STEP_MS = 500;
/** How often the test reads status while the old generation drains. */
const POLL_MS = 100;
/** Timer slack allowed on the report's minimum interval. */
const SLACK_MS = 30;

async function startHoldingApp(sock: string): Promise<Proc> {
  const p = run(process.execPath, [path.join(FIXTURES, 'holding-app.js')], { env: { FDBROKER_SOCK: sock, SPREAD_MS: '3000' } });
  await p.waitFor(/^ready \d+ gen \d+/m);
  return p;
}

function openWebSocket(port: number): Promise<{ ws: WebSocket; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
    ws.on('open', () => resolve({ ws, closed }));
    ws.on('error', reject);
  });
}

/** A GET that resolves with its status and body once the response ends (or the error's code). */
function getAll(port: number, pathName: string): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathName, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
  });
}

describe('holding: a retiring generation reports what it still holds', () => {
  it('status --json shows the counts of WebSockets, streams and slow responses going down, then the generation leaves', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const port = broker.ports.http!;
    const old = await startHoldingApp(broker.sock);
    const oldGen = Number(old.stdout().match(/gen (\d+)/)![1]);
    const load = loadLoop(port, { concurrency: 4, keepAlive: true });
    const sockets = await Promise.all(Array.from({ length: WEBSOCKETS }, () => openWebSocket(port)));
    const streams = Array.from({ length: STREAMS }, () => getAll(port, '/stream'));
    const slow = Array.from({ length: SLOW }, (_, i) => getAll(port, `/slow?ms=${SLOW_BASE_MS + i * SLOW_STEP_MS}`));
    await sleep(200); // every request above has reached the old generation

    const next = await startHoldingApp(broker.sock);
    const seen: NonNullable<GenerationInfo['holding']>[] = [];
    let text = '';
    const started = Date.now();
    let gone = false;
    while (Date.now() - started < 15_000) {
      const g = (await statusOf(broker.sock)).generations.find((x) => x.number === oldGen);
      if (!g) { gone = true; break; }
      if (g.holding && seen.at(-1)?.at !== g.holding.at) seen.push(g.holding);
      if (!text && g.holding) {
        // The text form, once, while it still holds something.
        text = (await promisify(execFile)(process.execPath, [CLI, 'status', broker.sock])).stdout;
      }
      await sleep(POLL_MS);
    }
    const stats = await load.stop();
    const codes = await Promise.all(sockets.map((s) => s.closed));
    const streamResults = await Promise.all(streams);
    const slowResults = await Promise.all(slow);
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'status', '--json', broker.sock]);
    console.log(JSON.stringify({ case: 'holding', reports: seen.map((h) => `${h.connections}/${h.sessions}/${h.upgraded}/${h.hooked}`), goneMs: Date.now() - started, load: stats }));

    expect(gone).toBe(true);
    expect(await old.exited).toEqual({ code: 0, signal: null });
    expect(old.stdout()).toMatch(/drained \d+ forced 0 /);
    // The first report (at retire) holds everything: the WebSockets and
    // streams are hooked, the WebSockets upgraded; the load's keep-alive
    // connections and the slow responses are plain connections.
    const first = seen[0]!;
    expect(first.upgraded).toBe(WEBSOCKETS);
    expect(first.hooked).toBeGreaterThan(WEBSOCKETS + STREAMS - 3); // a few may have passed their moment already
    expect(first.connections).toBeGreaterThanOrEqual(WEBSOCKETS + STREAMS + SLOW);
    expect(first.sessions).toBe(0);
    // Then the counts only go down, through several distinct reports, and the
    // reports come at most every HOLDING_REPORT_MS.
    for (let i = 1; i < seen.length; i++) {
      expect(seen[i]!.connections).toBeLessThanOrEqual(seen[i - 1]!.connections);
      expect(seen[i]!.upgraded).toBeLessThanOrEqual(seen[i - 1]!.upgraded);
      expect(Date.parse(seen[i]!.at) - Date.parse(seen[i - 1]!.at)).toBeGreaterThanOrEqual(HOLDING_REPORT_MS - SLACK_MS);
    }
    expect(seen.length).toBeGreaterThanOrEqual(4);
    expect(seen.at(-1)!.connections).toBeLessThan(first.connections);
    expect(text).toMatch(new RegExp(`#${oldGen} pid ${old.pid} retiring since \\S+ \\(ready since \\S+\\) holding \\d+ conns? \\(`));
    // The old generation is gone from --json once it has left; the new one carries no report.
    const after = JSON.parse(stdout) as { generations: GenerationInfo[] };
    expect(after.generations.map((g) => g.number)).not.toContain(oldGen);
    expect(after.generations.find((g) => g.pid === next.pid)?.holding).toBeUndefined();
    // Nothing failed on the way.
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
    expect(codes).toEqual(Array(WEBSOCKETS).fill(1012));
    for (const r of streamResults) expect(r).toMatchObject({ status: 200, body: expect.stringMatching(/retry: 100/) });
    for (const r of slowResults) expect(r).toEqual({ status: 200, body: `${old.pid} slow\n` });
  }, 30_000);
});

describe('holding: an older broker without the feature', () => {
  it('is never sent a "holding" report, so it keeps the retiring generation connected until it has drained', async () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'old.sock');
    const fake = run(python3Command(), [path.join(FIXTURES, 'old_broker.py'), sock]);
    const port = Number((await fake.waitFor(/^ready (\d+)/m))[1]);
    const app = run(process.execPath, [path.join(FIXTURES, 'holding-app.js')], { env: { FDBROKER_SOCK: sock, SPREAD_MS: '1000' } });
    await app.waitFor(/^ready \d+ gen 1/m);
    // A WebSocket keeps the drain going over several report intervals.
    const { closed } = await openWebSocket(port);
    expect(await closed).toBe(1012);
    expect(await app.exited).toEqual({ code: 0, signal: null });
    expect(app.stdout()).toMatch(/drained \d+ forced 0 hooked 1 /);
    await fake.exited;
    expect(fake.stdout()).toMatch(/^left hello,join,ready(,pong)*$/m);
    expect(fake.stdout()).not.toMatch(/unknown/);
  }, 20_000);
});

describe('holding across a broker takeover', () => {
  it('a retiring generation rejoins the new broker still retiring, with its last report, and reports to it from then on', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const port = broker.ports.http!;
    const old = await startHoldingApp(broker.sock);
    const oldGen = Number(old.stdout().match(/gen (\d+)/)![1]);
    const slow = Array.from({ length: SLOW }, (_, i) => getAll(port, `/slow?ms=${4_000 + i * SLOW_STEP_MS}`));
    await sleep(200);
    const next = await startHoldingApp(broker.sock);
    const genOf = async () => (await statusOf(broker.sock)).generations.find((g) => g.number === oldGen);
    const deadline = Date.now() + 5_000;
    while (!(await genOf())?.holding && Date.now() < deadline) await sleep(POLL_MS);
    const before = (await genOf())!;
    expect(before).toMatchObject({ state: 'retiring', holding: { connections: SLOW } });

    const t = run(process.execPath, [CLI, 'serve', broker.sock, '--takeover', '--quiet']);
    await t.waitFor(/^fdbroker: ready on /m);
    const movedAt = Date.now();
    // Rejoined (attached, not detached) and still retiring; the report came along, then a fresh one to the new broker.
    let g: GenerationInfo | undefined;
    while (Date.now() - movedAt < 5_000) {
      const s = await statusOf(broker.sock);
      g = s.generations.find((x) => x.number === oldGen);
      if (s.broker.pid === t.pid && g && g.clientId !== 0 && g.holding && Date.parse(g.holding.at) >= movedAt - SLACK_MS) break;
      await sleep(POLL_MS);
    }
    expect(g).toMatchObject({ pid: old.pid, state: 'retiring', holding: { connections: SLOW } });
    expect(g!.clientId).not.toBe(0);
    expect(Date.parse(g!.holding!.at)).toBeGreaterThanOrEqual(movedAt - SLACK_MS);
    // It drains and leaves the new broker as it would have left the old one.
    for (const r of await Promise.all(slow)) expect(r).toEqual({ status: 200, body: `${old.pid} slow\n` });
    expect(await old.exited).toEqual({ code: 0, signal: null });
    expect((await statusOf(broker.sock)).generations.map((x) => x.pid)).toEqual([next.pid]);
  }, 30_000);
});
