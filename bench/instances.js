#!/usr/bin/env node
// Instances: how evenly N processes that serve one port share a uniform
// new-connection load. Prints JSON on stdout, progress on stderr.
//   node bench/instances.js [--instances=2,4] [--seconds=4] [--concurrency=16] [--apps=hello,busy]
// Designs (each process runs bench/instances/worker.js, the restarts app):
//   shared      one listening socket (made here, as the broker makes it),
//               inherited by every process: all accept on the one queue.
//               Linux wakes epoll waiters on a shared socket roughly LIFO, and
//               libuv accepts until EAGAIN, so one process may take most.
//   reuseport   N sockets bound with SO_REUSEPORT to the same address (made
//               here, as the broker would hold them), one per process: the
//               kernel picks a socket per connection by a hash of its 4-tuple.
//   cluster     Node's cluster module (round-robin: the primary accepts and
//               hands each connection to the next worker); PM2's cluster
//               mode is this same module.
//   fdbroker    `fdbroker run --instances N --library` (instances/fdb-worker.js):
//               the shared design as shipped, the broker's socket.
//   pm2         `pm2 start worker.js -i N` (PM2 cluster mode), for reference
//               (PM2 from FDBROKER_BENCH_PM2_PREFIX, default ./node_modules).
// Load: CONCURRENCY loops of GET on a new connection each (never retried).
// Spread: the busiest instance's count over the mean (1.0 is perfect).
'use strict';
const { execFile, spawn, fork } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const WORKER = path.join(__dirname, 'instances', 'worker.js');
const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const m = a.match(/^--([^=]+)(?:=(.*))?$/);
  if (!m) throw new Error(`unknown argument ${a}`);
  return [m[1], m[2] ?? true];
}));
const INSTANCES = String(args.instances ?? '2,4').split(',').map(Number);
const SECONDS = Number(args.seconds ?? 4);
const CONCURRENCY = Number(args.concurrency ?? 16);
const APPS = String(args.apps ?? 'hello,busy').split(',');
const DESIGNS = String(args.designs ?? 'shared,reuseport,cluster,fdbroker,pm2').split(',');
const CLI = path.join(ROOT, 'bin', 'fdbroker.js');
const PM2_BIN = path.join(process.env.FDBROKER_BENCH_PM2_PREFIX || ROOT, 'node_modules', 'pm2', 'bin', 'pm2');
/** Before counting: every instance is up and the load has run this long. */
const WARMUP_MS = 500;

const log = (...a) => process.stderr.write(`[instances] ${a.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A listening TCP socket on 127.0.0.1:port (0: any), as the broker makes one; `reusePort` for a group. */
function listenSocket(port, reusePort) {
  const n = require(path.join(ROOT, 'dist', 'native', 'binding.js')).native();
  const c = n.constants;
  const fd = n.socket(c.AF_INET, c.SOCK_STREAM);
  if (fd < 0) throw new Error(`socket: ${fd}`);
  n.setsockoptInt(fd, c.SOL_SOCKET, c.SO_REUSEADDR, 1);
  if (reusePort) n.setsockoptInt(fd, c.SOL_SOCKET, c.SO_REUSEPORT, 1);
  if (n.bind(fd, { family: 'inet', address: '127.0.0.1', port }) < 0) throw new Error('bind failed');
  if (n.listen(fd, 511) < 0) throw new Error('listen failed');
  return { fd, port: n.sockname(fd).port, close: () => n.close(fd) };
}

async function startDesign(design, count, env) {
  const procs = [];
  const waitListening = (p) => new Promise((resolve, reject) => {
    let out = '';
    p.stdout.on('data', (d) => { out += d; if (out.includes('listening')) resolve(); });
    p.on('exit', (code) => reject(new Error(`worker exited ${code}`)));
  });
  if (design === 'fdbroker') {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdb-inst-'));
    const p = spawn(process.execPath, [CLI, 'run', path.join(dir, 'run.sock'), '--listen', 'http=tcp://127.0.0.1:0', '--library', '--quiet',
      '--instances', String(count), '--', process.execPath, path.join(__dirname, 'instances', 'fdb-worker.js')], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    const deadline = Date.now() + 20_000;
    while ((out.match(/^ready \d+ gen/gm) ?? []).length < count) {
      if (Date.now() > deadline || p.exitCode !== null) throw new Error(`fdbroker run --instances: not ready:\n${out}`);
      await sleep(20);
    }
    const port = Number(out.match(/http=tcp:\/\/127\.0\.0\.1:(\d+)/)[1]);
    return { port, close: async () => { p.kill('SIGTERM'); await new Promise((r) => p.on('exit', r)); fs.rmSync(dir, { recursive: true, force: true }); } };
  }
  if (design === 'pm2') {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'fdb-inst-pm2-'));
    const s = listenSocket(0, false);
    const port = s.port;
    s.close();
    const penv = { ...process.env, ...env, PM2_HOME: home, PORT: String(port) };
    const pm2 = (...a) => new Promise((resolve, reject) => execFile(process.execPath, [PM2_BIN, ...a], { env: penv, timeout: 60_000 }, (e, o) => (e ? reject(e) : resolve(o))));
    await pm2('start', WORKER, '-i', String(count), '--name', 'inst');
    const deadline = Date.now() + 20_000;
    for (;;) {
      const list = JSON.parse(await pm2('jlist'));
      if (list.filter((x) => x.pm2_env?.status === 'online').length >= count) break;
      if (Date.now() > deadline) throw new Error('pm2: instances not online');
      await sleep(100);
    }
    await sleep(500);
    return { port, close: async () => { await pm2('kill').catch(() => {}); fs.rmSync(home, { recursive: true, force: true }); } };
  }
  if (design === 'cluster') {
    const port = listenSocket(0, false);
    const p = port.port;
    port.close();
    const primary = fork(path.join(__dirname, 'instances', 'cluster-primary.js'), [String(count)], { env: { ...process.env, ...env, PORT: String(p) }, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    await new Promise((resolve, reject) => { primary.on('message', (m) => { if (m === 'up') resolve(); }); primary.on('exit', reject); });
    return { port: p, close: async () => { primary.kill('SIGTERM'); await new Promise((r) => primary.on('exit', r)); } };
  }
  const sockets = [];
  const first = listenSocket(0, design === 'reuseport');
  sockets.push(first);
  for (let i = 1; i < count; i++) sockets.push(design === 'reuseport' ? listenSocket(first.port, true) : first);
  for (let i = 0; i < count; i++) {
    const p = spawn(process.execPath, [WORKER], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit', sockets[i].fd] });
    procs.push(p);
    await waitListening(p);
  }
  return {
    port: first.port,
    close: async () => {
      for (const p of procs) p.kill('SIGKILL');
      await Promise.all(procs.map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.on('exit', r)) : null)));
      for (const s of new Set(sockets)) s.close();
    },
  };
}

async function measure(design, count, app) {
  const d = await startDesign(design, count, app === 'busy' ? { BUSY: '1' } : {});
  const perPid = new Map();
  let counting = false;
  let stop = false;
  let failed = 0;
  const one = () => new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port: d.port, path: '/', agent: false }, (r) => {
      r.resume();
      r.on('end', () => {
        if (counting) { const pid = r.headers['x-pid']; perPid.set(pid, (perPid.get(pid) ?? 0) + 1); }
        resolve();
      });
    }).on('error', () => { if (counting) failed++; resolve(); });
  });
  const loops = Array.from({ length: CONCURRENCY }, async () => { while (!stop) await one(); });
  await sleep(WARMUP_MS);
  counting = true;
  const t0 = Date.now();
  await sleep(SECONDS * 1000);
  counting = false;
  const ms = Date.now() - t0;
  stop = true;
  await Promise.all(loops);
  await d.close();
  const counts = [...perPid.values()];
  while (counts.length < count) counts.push(0);
  counts.sort((a, b) => b - a);
  const total = counts.reduce((a, b) => a + b, 0);
  const mean = total / count;
  return { design, instances: count, app, requests: total, failed, perSecond: Math.round(total / (ms / 1000)), perInstance: counts, busiestOverMean: Number((counts[0] / mean).toFixed(2)) };
}

async function main() {
  const out = { bench: 'instances', node: process.version, cpus: os.cpus().length, loadavgBefore: os.loadavg(), concurrency: CONCURRENCY, seconds: SECONDS, results: [] };
  for (const app of APPS) {
    for (const count of INSTANCES) {
      for (const design of DESIGNS) {
        const r = await measure(design, count, app);
        log(`${design} x${count} ${app}: busiest/mean ${r.busiestOverMean} (${r.perInstance.join(', ')}) ${r.perSecond}/s failed ${r.failed}`);
        out.results.push(r);
      }
    }
  }
  out.loadavgAfter = os.loadavg();
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}

main().catch((err) => { process.stderr.write(`instances: ${err.stack ?? err}\n`); process.exit(1); });
