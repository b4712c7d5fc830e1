// `npm run bench -- --quick` as a CI smoke test: every benchmark runs, prints
// JSON, and the properties that must hold on any machine hold (numbers that
// depend on the machine are reported by the full run, not asserted here).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ROOT } from '../helpers';

describe('npm run bench -- --quick', () => {
  it('measures handoff cost against the C floor, broker scale and restarts, and fdbroker fails no request', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bench', 'run.js'), '--quick'], { cwd: ROOT, encoding: 'utf8', timeout: 240_000 });
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.mode).toBe('quick');

    // Handoff: every N, with the floor measured in the same run.
    const ns = out.handoff.results.map((x: { n: number }) => x.n);
    expect(ns).toEqual([1, 16, 253, 1024]);
    for (const x of out.handoff.results) {
      expect(x.fdbroker.p50_us).toBeGreaterThan(0);
      expect(x.floor.p50_us).toBeGreaterThan(0);
      expect(x.ratio_p50).toBeGreaterThan(0);
    }

    // Scale: every adopt succeeded and the broker holds no more fds afterwards.
    expect(out.scale.adopts_failed).toBe(0);
    expect(out.scale.broker.fd_growth_after).toBe(0);

    // Restarts: fdbroker fails no request, in every cell the quick run measures.
    const cells = out.restarts.summary.filter((s: { method: string }) => s.method === 'fdbroker');
    expect(cells.length).toBeGreaterThan(0);
    for (const c of cells) expect({ cell: `${c.app}/${c.client}`, failed: c.failed }).toEqual({ cell: `${c.app}/${c.client}`, failed: 0 });
    // Crash gap: the app is SIGKILLed and the next starts 1 s later. Connections
    // wait in the broker's queue meanwhile: none refused, none timed out; only
    // requests in flight in the killed process fail (at most one per client loop).
    const crash = out.restarts.scenarios['crash-gap'];
    const fc = crash.summary.filter((s: { method: string }) => s.method === 'fdbroker');
    expect(fc.length).toBeGreaterThan(0);
    for (const c of fc) {
      expect(c.restarts).toBe(crash.config.restarts);
      expect({ refused: c.refused, timeout: c.timeout, other: c.other }).toEqual({ refused: 0, timeout: 0, other: 0 });
      expect(c.failed).toBeLessThanOrEqual(crash.config.concurrency * crash.config.restarts);
    }
    // Broker restart: the broker (the socket's owner) is replaced by --takeover,
    // or SIGKILLed and restarted with --adopt-from the app; the app serves on
    // and rejoins: every restart done, no request failed.
    const br = out.restarts.scenarios['broker-restart'];
    const methods = br.summary.map((s: { method: string }) => s.method).sort();
    expect(methods).toEqual(['fdbroker-adopt-from', 'fdbroker-takeover']);
    for (const c of br.summary) {
      expect({ method: c.method, error: c.error, restarts: c.restarts, failed: c.failed }).toEqual({ method: c.method, error: undefined, restarts: br.config.restarts, failed: 0 });
      expect(c.requests).toBeGreaterThan(0);
    }
    // The load generator's self-check: it counts failures it is shown.
    expect(out.restarts.selfcheck.pass).toBe(true);
  }, 300_000);
});
