// Load generator for bench/restarts.js, run in its own process (forked with an
// IPC channel) so it never shares an event loop with the servers it measures.
//
// N concurrent loops, each sending one GET at a time to 127.0.0.1:port, with a
// per-request deadline. Every request ends exactly once, as one of:
//   ok        2xx response, body read to the end
//   refused   ECONNREFUSED
//   reset     ECONNRESET, EPIPE, 'socket hang up', response aborted mid-body
//   timeout   no complete response within timeoutMs (the request is destroyed)
//   non2xx    any other status
//   other     anything else (kept by error code in `other`)
// No retries, no reconnect-and-forget: a request on a keep-alive socket that the
// server closed counts as failed, as a client without retry logic sees it.
//
// IPC: parent sends {cmd:'start', port, concurrency, keepAlive, timeoutMs};
// we answer {type:'started', t0} (epoch ms). Parent sends {cmd:'stop', phases:
// {name: [fromMs, toMs] relative to t0}, bucketMs}; we stop starting requests,
// let in-flight ones finish (each is bounded by timeoutMs), and answer
// {type:'result', ...} with totals, per-phase stats and a time series.
'use strict';
const http = require('node:http');

const KINDS = ['ok', 'refused', 'reset', 'timeout', 'non2xx', 'other'];
const K = Object.fromEntries(KINDS.map((k, i) => [k, i]));

class Rec {
  constructor() { this.n = 0; this.cap = 1 << 16; this.alloc(); }
  alloc(old) {
    const t = new Float64Array(this.cap), l = new Float64Array(this.cap), k = new Uint8Array(this.cap);
    if (old) { t.set(old.t.subarray(0, this.n)); l.set(old.l.subarray(0, this.n)); k.set(old.k.subarray(0, this.n)); }
    this.t = t; this.l = l; this.k = k;
  }
  push(t, l, k) {
    if (this.n === this.cap) { const old = { t: this.t, l: this.l, k: this.k }; this.cap *= 2; this.alloc(old); }
    this.t[this.n] = t; this.l[this.n] = l; this.k[this.n] = k; this.n++;
  }
}

function classify(err) {
  const code = err && err.code;
  if (code === 'ECONNREFUSED') return ['refused'];
  if (code === 'ECONNRESET' || code === 'EPIPE' || (err && /socket hang up|aborted/i.test(err.message || ''))) return ['reset'];
  if (code === 'ETIMEOUT_BENCH') return ['timeout'];
  return ['other', String(code || (err && err.message) || err)];
}

function pct(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return Math.round(sorted[i] * 100) / 100;
}

function run(cfg) {
  const { port, concurrency, keepAlive, timeoutMs } = cfg;
  const host = cfg.host || '127.0.0.1';
  const agent = keepAlive ? new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency }) : false;
  const rec = new Rec();
  const other = {};
  const t0 = Date.now();
  const h0 = process.hrtime.bigint();
  const now = () => Number(process.hrtime.bigint() - h0) / 1e6; // ms since t0, monotonic
  let stopping = false;
  let inflight = 0;

  const one = () => new Promise((resolve) => {
    const start = now();
    let done = false;
    inflight++;
    const finish = (kind, detail) => {
      if (done) return;
      done = true;
      inflight--;
      clearTimeout(timer);
      const end = now();
      rec.push(end, end - start, K[kind]);
      if (kind === 'other') other[detail] = (other[detail] || 0) + 1;
      resolve();
    };
    const fail = (err) => { const [kind, detail] = classify(err); finish(kind, detail); };
    const req = http.request({ host, port, path: '/', method: 'GET', agent }, (res) => {
      res.on('data', () => {});
      res.on('end', () => {
        // 'end' after an abort does not fire; a complete body does.
        if (res.statusCode >= 200 && res.statusCode < 300) finish('ok'); else finish('non2xx');
      });
      res.on('aborted', () => fail(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })));
      res.on('error', fail);
    });
    const timer = setTimeout(() => {
      const e = Object.assign(new Error('timeout'), { code: 'ETIMEOUT_BENCH' });
      fail(e);
      req.destroy(e);
    }, timeoutMs);
    req.on('error', fail);
    req.end();
  });

  const loops = Array.from({ length: concurrency }, async () => {
    // Bounded: stops on 'stop' or after maxMs.
    const deadline = Date.now() + (cfg.maxMs || 30 * 60_000);
    while (!stopping && Date.now() < deadline) await one();
  });

  return {
    t0,
    async stop(phases, bucketMs = 100) {
      stopping = true;
      await Promise.all(loops);
      if (agent) agent.destroy();
      const n = rec.n;
      const endMs = now();
      const totals = Object.fromEntries(KINDS.map((k) => [k, 0]));
      for (let i = 0; i < n; i++) totals[KINDS[rec.k[i]]]++;
      const nb = Math.ceil(endMs / bucketMs) + 1;
      const okB = new Array(nb).fill(0), failB = new Array(nb).fill(0), maxB = new Array(nb).fill(0);
      for (let i = 0; i < n; i++) {
        const b = Math.floor(rec.t[i] / bucketMs);
        if (rec.k[i] === 0) { okB[b]++; if (rec.l[i] > maxB[b]) maxB[b] = rec.l[i]; } else failB[b]++;
      }
      for (let b = 0; b < nb; b++) maxB[b] = Math.round(maxB[b]);
      const phaseStats = {};
      for (const [name, [from, to]] of Object.entries(phases || {})) {
        const lat = [];
        const byKind = Object.fromEntries(KINDS.map((k) => [k, 0]));
        for (let i = 0; i < n; i++) {
          if (rec.t[i] < from || rec.t[i] >= to) continue;
          byKind[KINDS[rec.k[i]]]++;
          if (rec.k[i] === 0) lat.push(rec.l[i]);
        }
        const sorted = Float64Array.from(lat).sort();
        const secs = (to - from) / 1000;
        phaseStats[name] = {
          fromMs: Math.round(from), toMs: Math.round(to),
          ok: byKind.ok, failed: n && (Object.values(byKind).reduce((a, b) => a + b, 0) - byKind.ok), byKind,
          okPerSec: secs > 0 ? Math.round(byKind.ok / secs) : null,
          latencyMs: { p50: pct(sorted, 50), p99: pct(sorted, 99), max: sorted.length ? Math.round(sorted[sorted.length - 1] * 100) / 100 : null },
        };
      }
      const allLat = [];
      for (let i = 0; i < n; i++) if (rec.k[i] === 0) allLat.push(rec.l[i]);
      const sortedAll = Float64Array.from(allLat).sort();
      return {
        type: 'result', t0, durationMs: Math.round(endMs), requests: n,
        ok: totals.ok, failed: n - totals.ok,
        failedByKind: { refused: totals.refused, reset: totals.reset, timeout: totals.timeout, non2xx: totals.non2xx, other: totals.other },
        otherKinds: other,
        latencyMs: { p50: pct(sortedAll, 50), p99: pct(sortedAll, 99), max: sortedAll.length ? Math.round(sortedAll[sortedAll.length - 1] * 100) / 100 : null },
        phases: phaseStats,
        series: { bucketMs, ok: okB, failed: failB, maxLatencyMs: maxB }, // by completion time
      };
    },
    inflight: () => inflight,
  };
}

if (require.main === module) {
  if (!process.send) { process.stderr.write('load.js: run me with fork() (IPC)\n'); process.exit(2); }
  let r;
  process.on('message', async (m) => {
    if (m.cmd === 'start') {
      r = run(m);
      process.send({ type: 'started', t0: r.t0 });
    } else if (m.cmd === 'stop') {
      const res = await r.stop(m.phases, m.bucketMs);
      process.send(res, () => process.exit(0));
    }
  });
  process.on('disconnect', () => process.exit(0));
}

module.exports = { run, classify };
