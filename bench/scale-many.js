#!/usr/bin/env node
'use strict';
// Broker scale, wide: LISTENERS listeners and GENERATIONS connected
// generations (plus the same number of plain clients) at once. Reported:
// `status` and adopt-everything latency (p50/p99, measured one at a time
// from this process while all of them are connected), the broker's CPU while
// idle in that state (its periodic work: accept-queue sampling, listener and
// generation checks) and its VmRSS.
//
// Generations join with one listener each (not all: 1,000 x 1,000 fds would
// be a million), half of them then say ready one after another; the plain
// clients connect and say hello only.
//
//   node bench/scale-many.js [--quick] [--listeners 1000] [--generations 1000] [--procs 4] [--roots DIR,DIR]
// Prints one JSON object on stdout; progress goes to stderr.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const lib = require('./lib');

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const opt = (name, dflt) => lib.option(argv, name, dflt);
const LISTENERS = Number(opt('listeners', 1000));
const GENERATIONS = Number(opt('generations', 1000));
const PROCS = Number(opt('procs', 4));
const STATUS_RUNS = QUICK ? 20 : 100;
const ADOPT_RUNS = QUICK ? 20 : 100;
const IDLE_MS = QUICK ? 2000 : 5000;
const ROOTS = String(opt('roots', lib.ROOT)).split(',').map((r) => path.resolve(r));
const log = (...a) => process.stderr.write(`[scale-many] ${a.join(' ')}\n`);
const mb = (kb) => (kb == null ? null : Math.round(kb / 102.4) / 10);

if (argv[0] === '--worker') {
  worker().catch((err) => { process.stderr.write(`[scale-many worker] ${err.stack || err}\n`); process.exit(1); });
} else {
  main().catch((err) => { process.stderr.write(`${err.stack || err}\n`); process.exit(1); });
}

// ---------------------------------------------------------------- worker ----

async function worker() {
  const root = argv[argv.indexOf('--root') + 1];
  const sock = argv[argv.indexOf('--sock') + 1];
  const from = Number(argv[argv.indexOf('--from') + 1]);
  const count = Number(argv[argv.indexOf('--count') + 1]);
  const { BrokerConnection } = require(path.join(root, 'dist', 'client', 'connection.js'));
  const gens = [];
  const plain = [];
  const errors = {};
  const note = (err) => { errors[err.code || err.message] = (errors[err.code || err.message] || 0) + 1; };
  for (let i = 0; i < count; i += 20) {
    await Promise.all(Array.from({ length: Math.min(20, count - i) }, async (_, j) => {
      const k = from + i + j;
      try {
        const conn = await BrokerConnection.connect(sock, { timeout: 30_000 });
        const { listeners } = await conn.join([`l${k % LISTENERS}`], `g${k}`, 30_000);
        for (const l of listeners) fs.closeSync(l.fd);
        conn.onNotice = () => {};
        gens.push(conn);
        plain.push(await BrokerConnection.connect(sock, { timeout: 30_000 }));
      } catch (err) { note(err); }
    }));
  }
  // Half of them ready, one after another.
  for (let i = 0; i < gens.length; i += 2) {
    try { await gens[i].ready(30_000); } catch (err) { note(err); }
  }
  process.stdout.write(`${JSON.stringify({ type: 'connected', generations: gens.length, clients: plain.length, errors })}\n`);
  readline.createInterface({ input: process.stdin }).on('line', () => {
    for (const c of [...gens, ...plain]) c.close();
    setTimeout(() => process.exit(0), 50);
  });
}

// ------------------------------------------------------------ orchestrator ----

function cpuMs(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * (1000 / 100); // utime + stime, in clock ticks of 10 ms
}

async function timeEach(runs, fn) {
  const samples = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    samples.push(process.hrtime.bigint() - t0);
  }
  const s = lib.summarizeNs(samples);
  return { runs: s.runs, p50_ms: s.p50_us / 1000, p99_ms: s.p99_us / 1000, max_ms: s.max_us / 1000 };
}

async function measure(root) {
  const dir = lib.tmpDir('scale-many');
  const sock = path.join(dir, 'broker.sock');
  const { child: broker } = await lib.startBroker(sock, LISTENERS, {
    root, timeoutMs: 120_000, extraArgs: ['--max-clients', String(2 * GENERATIONS + 64)],
  });
  const workers = [];
  const { BrokerConnection } = require(path.join(root, 'dist', 'client', 'connection.js'));
  const { adoptListeners } = require(path.join(root, 'dist', 'index.js'));
  const names = Array.from({ length: LISTENERS }, (_, i) => `l${i}`);
  try {
    await lib.sleep(1000);
    const c0 = cpuMs(broker.pid);
    await lib.sleep(IDLE_MS);
    const idleEmptyCpu = (cpuMs(broker.pid) - c0) / IDLE_MS;
    const fresh = lib.procSample(broker.pid);
    const per = Math.ceil(GENERATIONS / PROCS);
    const t0 = performance.now();
    for (let i = 0; i < PROCS; i++) {
      const count = Math.min(per, GENERATIONS - i * per);
      const child = spawn(process.execPath, [__filename, '--worker', '--root', root, '--sock', sock, '--from', String(i * per), '--count', String(count), '--listeners', String(LISTENERS)],
        { stdio: ['pipe', 'pipe', 'inherit'] });
      const lines = readline.createInterface({ input: child.stdout });
      workers.push({ child, connected: new Promise((r) => lines.once('line', (l) => r(JSON.parse(l)))), exited: new Promise((r) => child.on('exit', r)) });
    }
    const connected = await Promise.all(workers.map((w) => w.connected));
    const connectMs = performance.now() - t0;
    await lib.sleep(500);
    const joined = lib.procSample(broker.pid);
    const c1 = cpuMs(broker.pid);
    await lib.sleep(IDLE_MS);
    const idleFullCpu = (cpuMs(broker.pid) - c1) / IDLE_MS;
    const conn = await BrokerConnection.connect(sock, { timeout: 30_000 });
    let statusCounts;
    const status = await timeEach(STATUS_RUNS, async () => {
      const s = await conn.status(30_000);
      statusCounts = { listeners: s.listeners.length, clients: s.clients.length, generations: s.generations.length };
    });
    conn.close();
    const afterStatus = lib.procSample(broker.pid);
    const adopt = await timeEach(ADOPT_RUNS, async () => {
      const ls = await adoptListeners(sock, { names, timeout: 30_000 });
      for (const k in ls) ls[k].close();
    });
    const held = lib.procSample(broker.pid);
    const errors = {};
    for (const c of connected) for (const [k, v] of Object.entries(c.errors)) errors[k] = (errors[k] || 0) + v;
    return {
      root,
      generations: connected.reduce((a, c) => a + c.generations, 0),
      clients: connected.reduce((a, c) => a + c.clients, 0),
      errors,
      connect_all_ms: Math.round(connectMs),
      status_seen: statusCounts,
      status,
      adopt_all_listeners: adopt,
      broker_idle_cpu_pct: { no_clients: Math.round(idleEmptyCpu * 1000) / 10, all_connected: Math.round(idleFullCpu * 1000) / 10 },
      broker_rss_mb: { fresh: mb(fresh?.rss_kb), all_connected: mb(joined?.rss_kb), after_status_runs: mb(afterStatus?.rss_kb), after_adopt_runs: mb(held?.rss_kb) },
    };
  } finally {
    for (const w of workers) { try { w.child.stdin.end('close\n'); } catch { /* gone */ } }
    await Promise.race([Promise.all(workers.map((w) => w.exited)), lib.sleep(5000)]);
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
    await lib.stopChild(broker);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const started = Date.now();
  const machineBefore = lib.machine();
  const results = [];
  for (const root of ROOTS) {
    log(`${root}: ${LISTENERS} listeners, ${GENERATIONS} generations + ${GENERATIONS} clients from ${PROCS} processes`);
    results.push(await measure(root));
    const r = results.at(-1);
    log(`${root}: status p99 ${r.status.p99_ms} ms, adopt p99 ${r.adopt_all_listeners.p99_ms} ms, idle cpu ${r.broker_idle_cpu_pct.all_connected}%`);
  }
  const out = {
    bench: 'scale-many',
    mode: QUICK ? 'quick' : 'full',
    what: `bin/fdbroker.js serve with ${LISTENERS} tcp listeners, ${GENERATIONS} generations (one listener each, half ready) and ${GENERATIONS} plain clients connected; status and adopt-all timed one at a time`,
    machine: { ...machineBefore, loadavg_before: machineBefore.loadavg, loadavg_after: lib.machine().loadavg },
    node: process.version,
    results,
    duration_s: Math.round((Date.now() - started) / 100) / 10,
  };
  delete out.machine.loadavg;
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}
