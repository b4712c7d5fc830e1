#!/usr/bin/env node
'use strict';
// Broker memory: VmRSS of `fdbroker serve` idle and with 1,000 clients
// connected at once, next to a bare `node -e 'setInterval(() => {}, 1e9)'`
// measured in the same run.
//
// A broker (its own process, LISTENERS tcp listeners) is sampled from /proc
// (VmRSS every ~20 ms, VmHWM) fresh (1 s after start), while CLIENTS
// connections are open (PROCS client processes each open CLIENTS/PROCS
// connections with BrokerConnection.connect(), adopt every listener once on
// each and close the fds, then hold the connections for HOLD_MS), and after
// they all disconnected. With --roots A,B the same run measures the broker of
// each checkout (e.g. main and a branch), one after the other.
//
//   node bench/memory.js [--quick] [--clients 1000] [--procs 4] [--listeners 4] [--roots DIR,DIR] [--broker-node-options OPTS]
// Prints one JSON object on stdout; progress goes to stderr.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const lib = require('./lib');

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const opt = (name, dflt) => lib.option(argv, name, dflt);
const CLIENTS = Number(opt('clients', 1000));
const PROCS = Number(opt('procs', 4));
const LISTENERS = Number(opt('listeners', 4));
const HOLD_MS = QUICK ? 500 : 2000;
// For experiments: NODE_OPTIONS for the broker process only (e.g. "--max-semi-space-size=1").
const BROKER_NODE_OPTIONS = opt('broker-node-options', '');
const ROOTS = String(opt('roots', lib.ROOT)).split(',').map((r) => path.resolve(r));
const log = (...a) => process.stderr.write(`[memory] ${a.join(' ')}\n`);
const mb = (kb) => (kb == null ? null : Math.round(kb / 102.4) / 10);

if (argv[0] === '--worker') {
  worker().catch((err) => { process.stderr.write(`[memory worker] ${err.stack || err}\n`); process.exit(1); });
} else {
  main().catch((err) => { process.stderr.write(`${err.stack || err}\n`); process.exit(1); });
}

// ---------------------------------------------------------------- worker ----

async function worker() {
  const root = argv[argv.indexOf('--root') + 1];
  const sock = argv[argv.indexOf('--sock') + 1];
  const count = Number(argv[argv.indexOf('--count') + 1]);
  const { BrokerConnection } = require(path.join(root, 'dist', 'client', 'connection.js'));
  const conns = [];
  const errors = {};
  // A few at a time, so the broker's accept queue (and the client limit) see a steady climb, not a refusal storm.
  for (let i = 0; i < count; i += 25) {
    await Promise.all(Array.from({ length: Math.min(25, count - i) }, async () => {
      try {
        const conn = await BrokerConnection.connect(sock, { timeout: 20_000 });
        const got = await conn.adopt(undefined, 20_000);
        for (const l of got) require('node:fs').closeSync(l.fd);
        conns.push(conn);
      } catch (err) {
        errors[err.code || err.message] = (errors[err.code || err.message] || 0) + 1;
      }
    }));
  }
  process.stdout.write(`${JSON.stringify({ type: 'connected', ok: conns.length, errors })}\n`);
  readline.createInterface({ input: process.stdin }).on('line', () => {
    for (const c of conns) c.close();
    process.stdout.write(`${JSON.stringify({ type: 'closed' })}\n`);
    setTimeout(() => process.exit(0), 50);
  });
}

// ------------------------------------------------------------ orchestrator ----

function lines(child) {
  const queue = [];
  const waiters = [];
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    let m;
    try { m = JSON.parse(l); } catch { return; }
    const w = waiters.shift();
    if (w) w(m); else queue.push(m);
  });
  return () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r)));
}

async function measure(root, bareKb) {
  const dir = lib.tmpDir('memory');
  const sock = path.join(dir, 'broker.sock');
  const { child: broker } = await lib.startBroker(sock, LISTENERS, {
    root, env: BROKER_NODE_OPTIONS ? { ...process.env, NODE_OPTIONS: BROKER_NODE_OPTIONS } : process.env,
  });
  const workers = [];
  try {
    await lib.sleep(1000);
    const fresh = lib.procSample(broker.pid);
    const samples = [];
    const sampler = setInterval(() => { const s = lib.procSample(broker.pid); if (s) samples.push(s); }, 20);
    const per = Math.ceil(CLIENTS / PROCS);
    const t0 = performance.now();
    for (let i = 0; i < PROCS; i++) {
      const count = Math.min(per, CLIENTS - i * per);
      const child = spawn(process.execPath, [__filename, '--worker', '--root', root, '--sock', sock, '--count', String(count)], { stdio: ['pipe', 'pipe', 'inherit'] });
      workers.push({ child, next: lines(child), exited: new Promise((r) => child.on('exit', r)) });
    }
    const connected = await Promise.all(workers.map((w) => w.next()));
    const connectMs = performance.now() - t0;
    await lib.sleep(HOLD_MS);
    const held = lib.procSample(broker.pid);
    clearInterval(sampler);
    for (const w of workers) w.child.stdin.write('close\n');
    await Promise.all(workers.map((w) => w.next()));
    await Promise.all(workers.map((w) => w.exited));
    await lib.sleep(1000);
    const after1s = lib.procSample(broker.pid);
    await lib.sleep(2000);
    const after3s = lib.procSample(broker.pid);
    const peakKb = Math.max(...samples.map((s) => s.rss_kb), held?.rss_kb ?? 0);
    const errors = {};
    for (const c of connected) for (const [k, v] of Object.entries(c.errors)) errors[k] = (errors[k] || 0) + v;
    return {
      root,
      clients_connected: connected.reduce((a, c) => a + c.ok, 0),
      errors,
      connect_all_ms: Math.round(connectMs),
      fresh_rss_mb: mb(fresh?.rss_kb),
      fresh_above_bare_node_mb: mb(fresh && bareKb ? fresh.rss_kb - bareKb : null),
      held_rss_mb: mb(held?.rss_kb),
      peak_rss_mb: mb(peakKb),
      vm_hwm_mb: mb(Math.max(...samples.map((s) => s.hwm_kb), held?.hwm_kb ?? 0)),
      after_1s_rss_mb: mb(after1s?.rss_kb),
      after_3s_rss_mb: mb(after3s?.rss_kb),
      fds: { fresh: fresh?.fds, held: held?.fds, after_3s: after3s?.fds },
      targets: {
        peak_under_50mb: { met: peakKb < 50 * 1024, peak_rss_mb: mb(peakKb) },
        idle_within_10mb_of_bare_node: { met: !!fresh && !!bareKb && fresh.rss_kb - bareKb <= 10 * 1024, fresh_rss_mb: mb(fresh?.rss_kb), bare_node_rss_mb: mb(bareKb) },
      },
    };
  } finally {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
    await lib.stopChild(broker);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const started = Date.now();
  const machineBefore = lib.machine();
  const bareKb = await lib.bareNodeRss(1000);
  const results = [];
  for (const root of ROOTS) {
    log(`${root}: broker with ${LISTENERS} listeners, ${CLIENTS} clients from ${PROCS} processes`);
    results.push(await measure(root, bareKb));
    log(`${root}: fresh ${results.at(-1).fresh_rss_mb} MB, peak ${results.at(-1).peak_rss_mb} MB`);
  }
  const out = {
    bench: 'memory',
    mode: QUICK ? 'quick' : 'full',
    what: `VmRSS of bin/fdbroker.js serve (${LISTENERS} tcp listeners): fresh, with ${CLIENTS} connected clients (each adopted once), after they left; bare node = node -e 'setInterval(() => {}, 1e9)'`,
    machine: { ...machineBefore, loadavg_before: machineBefore.loadavg, loadavg_after: lib.machine().loadavg },
    node: process.version,
    broker_node_options: BROKER_NODE_OPTIONS || undefined,
    bare_node_rss_mb: mb(bareKb),
    results,
    duration_s: Math.round((Date.now() - started) / 100) / 10,
  };
  delete out.machine.loadavg;
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}
