#!/usr/bin/env node
'use strict';
// Broker scale: 1,000 clients adopting at once.
//
// A broker (`bin/fdbroker.js serve`, its own process, LISTENERS tcp listeners
// on 127.0.0.1:0) is hit by PROCS client processes, each running PER_PROC
// adoptListeners() calls concurrently (Promise.all), ROUNDS times; the first
// round starts in every process at the same moment ("go"). Each adopt closes
// its fds. Reported: adopts per second, latency, errors by code, and the
// broker's VmRSS and open fds (from /proc) idle before, at peak (sampled every
// ~20 ms during the load) and after the run.
//
//   node bench/scale.js [--quick]
// Prints one JSON object on stdout; progress goes to stderr.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const lib = require('./lib');

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};

if (argv.includes('--worker')) {
  worker().catch((err) => {
    process.stderr.write(`[scale worker] ${err.stack || err}\n`);
    process.exit(1);
  });
} else {
  main().catch((err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(1);
  });
}

// ---------------------------------------------------------------- worker ----

async function worker() {
  const fdb = lib.requireDist();
  const sock = argv[argv.indexOf('--sock') + 1];
  const names = argv[argv.indexOf('--names') + 1].split(',');
  const perProc = opt('per-proc', 250);
  const rounds = opt('rounds', 1);
  const send = (m) => process.stdout.write(`${JSON.stringify(m)}\n`);

  // Warm up (loads the addon, JITs the path) before the synchronized start.
  const w = await fdb.adoptListeners(sock, { names });
  for (const k in w) w[k].close();
  send({ type: 'ready', pid: process.pid, nofile: lib.nofile() });
  // Each round starts on the orchestrator's "go", sent once every process has
  // finished the previous round: every round is 1,000 adopts at once.
  const gos = [];
  let goWaiter;
  readline.createInterface({ input: process.stdin }).on('line', (l) => {
    if (l.trim() !== 'go') return;
    if (goWaiter) { const w = goWaiter; goWaiter = undefined; w(); } else gos.push(1);
  });
  const go = () => (gos.length > 0 ? (gos.pop(), Promise.resolve()) : new Promise((r) => { goWaiter = r; }));

  const latMs = [];
  const errors = {};
  const samples = [];
  const roundMs = [];
  let ok = 0;
  const t0 = performance.now();
  let waitedMs = 0;
  for (let r = 0; r < rounds; r++) {
    if (r > 0) send({ type: 'round', r });
    const ws = performance.now();
    await go();
    waitedMs += performance.now() - ws;
    const rs = performance.now();
    await Promise.all(Array.from({ length: perProc }, async () => {
      const s = performance.now();
      try {
        const ls = await fdb.adoptListeners(sock, { names });
        latMs.push(performance.now() - s);
        let count = 0;
        for (const k in ls) { ls[k].close(); count++; }
        if (count !== names.length) throw Object.assign(new Error('short'), { code: 'SHORT_ADOPT' });
        ok++;
      } catch (err) {
        const code = err.code || err.message;
        errors[code] = (errors[code] || 0) + 1;
        if (samples.length < 5) samples.push(String(err.stack || err).split('\n').slice(0, 6).join(' | '));
      }
    }));
    roundMs.push(performance.now() - rs);
  }
  const fdsLeft = fs.readdirSync('/proc/self/fd').length;
  send({ type: 'done', ok, errors, errorSamples: samples, latMs, roundMs, totalMs: performance.now() - t0, waitedMs, fdsLeft });
}

// ------------------------------------------------------------ orchestrator ----

function spawnWorker(sock, names, perProc, rounds, needFds) {
  const args = [__filename, '--worker', '--sock', sock, '--names', names.join(','), '--per-proc', String(perProc), '--rounds', String(rounds)];
  const lim = lib.nofile();
  let child;
  let raised = null;
  if (lim && lim.soft < needFds) {
    // Raise the soft limit within the hard one for the worker only.
    const to = Math.min(lim.hard, Math.max(needFds, 4096));
    raised = to;
    const q = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
    child = spawn('/bin/sh', ['-c', `ulimit -n ${to} && exec ${q(process.execPath)} ${args.map(q).join(' ')}`], { stdio: ['pipe', 'pipe', 'inherit'] });
  } else {
    child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  }
  const messages = [];
  const waiters = [];
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    let m;
    try { m = JSON.parse(l); } catch { return; }
    const w = waiters.findIndex((x) => x.type === m.type);
    if (w >= 0) waiters.splice(w, 1)[0].resolve(m);
    else messages.push(m);
  });
  const exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig)));
  const next = (type) => new Promise((resolve, reject) => {
    const i = messages.findIndex((m) => m.type === type);
    if (i >= 0) { resolve(messages.splice(i, 1)[0]); return; }
    waiters.push({ type, resolve });
    exited.then((c) => reject(new Error(`worker ${child.pid} exited (${c}) before "${type}"`)));
  });
  return { child, next, exited, raised };
}

async function main() {
  lib.requireDist();
  const started = Date.now();
  const machineBefore = lib.machine();
  const PROCS = opt('procs', 4);
  const PER_PROC = opt('per-proc', 250);
  const ROUNDS = opt('rounds', QUICK ? 2 : 20);
  const LISTENERS = opt('listeners', 4);
  const log = (...a) => process.stderr.write(`[scale] ${a.join(' ')}\n`);

  const dir = lib.tmpDir('scale');
  const sock = path.join(dir, 'broker.sock');
  // Every client here is the same uid: lift the per-uid client limit (default
  // 64) above the concurrency, where this broker has one; --max-clients stays
  // at its default (1024).
  const brokerArgs = lib.cliHasFlag('max-clients-per-uid') ? ['--max-clients-per-uid', String(PROCS * PER_PROC + 64)] : [];
  const broker = await lib.startBroker(sock, LISTENERS, { extraArgs: brokerArgs });
  const workers = [];
  try {
    const brokerNofile = lib.nofile(broker.pid);
    await lib.sleep(300);
    const idleFresh = lib.procSample(broker.pid);

    // Per worker: one control socket + LISTENERS fds per in-flight adopt, plus Node's own.
    const needFds = PER_PROC * (1 + LISTENERS) + 256;
    log(`${PROCS} processes x ${PER_PROC} concurrent adopts x ${ROUNDS} rounds, ${LISTENERS} listeners; broker pid ${broker.pid}`);
    for (let i = 0; i < PROCS; i++) workers.push(spawnWorker(sock, broker.names, PER_PROC, ROUNDS, needFds));
    const readies = await Promise.all(workers.map((w) => w.next('ready')));
    await lib.sleep(300);
    // Idle, after each worker's one warm-up adopt, before the load.
    const idleBefore = lib.procSample(broker.pid);

    const samples = [];
    const sampler = setInterval(() => {
      const s = lib.procSample(broker.pid);
      if (s) samples.push({ t_ms: Math.round(performance.now() - t0), ...s });
    }, 20);
    const t0 = performance.now();
    for (let r = 0; r < ROUNDS; r++) {
      if (r > 0) await Promise.all(workers.map((w) => w.next('round')));
      for (const w of workers) w.child.stdin.write('go\n');
    }
    const dones = await Promise.all(workers.map((w) => w.next('done')));
    const wallMs = performance.now() - t0; // includes the barriers between rounds (a few ms each)
    clearInterval(sampler);
    const lastLoad = lib.procSample(broker.pid);
    if (lastLoad) samples.push({ t_ms: Math.round(wallMs), ...lastLoad });
    await Promise.all(workers.map((w) => { w.child.stdin.end(); return w.exited; }));

    // After: once every client process has exited, and again a little later.
    await lib.sleep(1000);
    const after1s = lib.procSample(broker.pid);
    await lib.sleep(2000);
    const after3s = lib.procSample(broker.pid);
    const nodeIdleRssKb = await lib.bareNodeRss(700);

    const ok = dones.reduce((a, d) => a + d.ok, 0);
    const errors = {};
    for (const d of dones) for (const [k, v] of Object.entries(d.errors)) errors[k] = (errors[k] || 0) + v;
    const lat = dones.flatMap((d) => d.latMs);
    const firstRound = dones.map((d) => d.roundMs[0]);
    const peakRss = Math.max(...samples.map((s) => s.rss_kb));
    const peakFds = Math.max(...samples.map((s) => s.fds));
    const mb = (kb) => (kb == null ? null : Math.round(kb / 102.4) / 10);

    const out = {
      bench: 'scale',
      mode: QUICK ? 'quick' : 'full',
      what: `${PROCS} client processes x ${PER_PROC} concurrent adoptListeners() (${PROCS * PER_PROC} at once) x ${ROUNDS} rounds, ${LISTENERS} tcp listeners each, broker = bin/fdbroker.js serve in its own process`,
      machine: { ...machineBefore, loadavg_before: machineBefore.loadavg, loadavg_after: lib.machine().loadavg, broker_nofile: brokerNofile, worker_nofile: readies.map((r) => r.nofile), worker_nofile_raised_to: workers[0]?.raised ?? null },
      concurrency: PROCS * PER_PROC,
      broker_args: brokerArgs,
      adopts_ok: ok,
      adopts_failed: lat.length === ok ? Object.values(errors).reduce((a, b) => a + b, 0) : undefined,
      errors,
      error_samples: dones.flatMap((d) => d.errorSamples).slice(0, 5),
      wall_s: Math.round(wallMs) / 1000,
      adopts_per_s: Math.round(ok / (wallMs / 1000)),
      round_ms: lib.summarizeMs(dones.flatMap((d) => d.roundMs)),
      first_burst_ms: { slowest_process: Math.round(Math.max(...firstRound)), per_process: firstRound.map((x) => Math.round(x)) },
      latency: lib.summarizeMs(lat),
      broker: {
        idle_fresh: { ...idleFresh, rss_mb: mb(idleFresh?.rss_kb) },
        idle_before: { ...idleBefore, rss_mb: mb(idleBefore?.rss_kb) },
        peak: { rss_kb: peakRss, rss_mb: mb(peakRss), fds: peakFds, vm_hwm_kb: Math.max(...samples.map((s) => s.hwm_kb)), samples: samples.length },
        after_1s: { ...after1s, rss_mb: mb(after1s?.rss_kb) },
        after_3s: { ...after3s, rss_mb: mb(after3s?.rss_kb) },
        fd_growth_after: after3s && idleBefore ? after3s.fds - idleBefore.fds : null,
      },
      idle_node_process_rss_mb: mb(nodeIdleRssKb),
      worker_fds_left_after_run: dones.map((d) => d.fdsLeft),
      targets: {
        broker_rss_under_50mb_at_1000: { met: peakRss < 50 * 1024, peak_rss_mb: mb(peakRss), idle_rss_mb: mb(idleBefore?.rss_kb), bare_node_rss_mb: mb(nodeIdleRssKb) },
        no_fd_growth_after_run: { met: !!after3s && !!idleBefore && after3s.fds <= idleBefore.fds, before: idleBefore?.fds, after: after3s?.fds },
      },
      rss_timeline_mb: downsample(samples, 25).map((s) => [s.t_ms, mb(s.rss_kb), s.fds]),
      duration_s: Math.round((Date.now() - started) / 100) / 10,
    };
    delete out.machine.loadavg;
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
    await broker.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function downsample(arr, n) {
  if (arr.length <= n) return arr;
  const out = [];
  for (let i = 0; i < n; i++) out.push(arr[Math.round((i * (arr.length - 1)) / (n - 1))]);
  return out;
}
