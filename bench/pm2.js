#!/usr/bin/env node
// PM2's own zero-downtime reload (cluster mode) against fdbroker run under
// PM2 (fork mode), the same app and the same shutdown in both: the bench's
// hello-world handler (restarts/handler.js) stopping with fdbroker's drain()
// (restarts/shutdown.js: 1 s spread, 5 s idle grace, 10 s deadline; PM2's
// kill_timeout 12 s). Per cell: a load generator in its own process
// (restarts/load.js: never retries, counts every failure by kind), a steady
// window, RELOADS x `pm2 reload`, a tail. Prints JSON on stdout, progress on
// stderr.
//   node bench/pm2.js [--reloads=6] [--concurrency=32] [--clients=keepalive,close]
// Methods:
//   pm2-cluster      `pm2 start restarts/naive-app.js -i 2` (PM2 cluster mode:
//                    its primary shares the port), `pm2 reload app`: per worker,
//                    a new one, wait for it to listen, SIGINT to the old one.
//   fdbroker-fork    `pm2 start bin/fdbroker.js -- serve ...` and
//                    `pm2 start pm2/fdb-fork-app.js` (fork mode), `pm2 reload app`:
//                    PM2 stops the old process (SIGINT: it drains and leaves),
//                    then starts the new one; meanwhile connections wait in
//                    the broker's accept queue.
// PM2 is the project's devDependency (node_modules/pm2), with a private
// PM2_HOME under a temp dir, and `pm2 kill`ed at the end of every cell.
'use strict';
const { execFile, fork } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { KILL_AFTER_MS } = require('./restarts/shutdown');

const ROOT = path.resolve(__dirname, '..');
const PM2_BIN = path.join(ROOT, 'node_modules', 'pm2', 'bin', 'pm2');
const CLI = path.join(ROOT, 'bin', 'fdbroker.js');
/** Per-request deadline of the load generator: a request with no complete response by then is a timeout. */
const TIMEOUT_MS = 5_000;
/** Load before the first reload, and after the last. */
const STEADY_MS = 2_000;
/** Pause between reloads, under load. */
const BETWEEN_MS = 1_000;

const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const m = a.match(/^--([^=]+)(?:=(.*))?$/);
  if (!m) throw new Error(`unknown argument ${a}`);
  return [m[1], m[2] ?? true];
}));
const RELOADS = Number(args.reloads ?? 6);
const CONCURRENCY = Number(args.concurrency ?? 32);
const CLIENTS = String(args.clients ?? 'keepalive,close').split(',');
const METHODS = String(args.methods ?? 'pm2-cluster,fdbroker-fork').split(',');

const log = (...a) => process.stderr.write(`[pm2] ${a.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function execp(file, argv, env, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    execFile(file, argv, { env: { ...process.env, ...env }, cwd: ROOT, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

async function waitServing(port, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => { s.end('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'); });
      let got = '';
      s.on('data', (d) => { got += d; });
      s.on('close', () => resolve(got.startsWith('HTTP/1.1 200')));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing serves on port ${port}`);
    await sleep(100);
  }
}

function startLoad(opts) {
  const child = fork(path.join(__dirname, 'restarts', 'load.js'), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: [] });
  const msgs = [];
  const waiters = [];
  child.on('message', (m) => { msgs.push(m); for (const w of waiters.splice(0)) w(); });
  const next = (type) => new Promise((resolve) => {
    const look = () => { const i = msgs.findIndex((m) => m.type === type); if (i >= 0) resolve(msgs.splice(i, 1)[0]); else waiters.push(look); };
    look();
  });
  child.send({ cmd: 'start', ...opts });
  return { started: next('started'), stop: () => { child.send({ cmd: 'stop', phases: {}, bucketMs: 1000 }); return next('result'); } };
}

/** The pids PM2 lists for `name` (its workers, or its one forked process). */
async function pidsOf(pm2, name) {
  const list = JSON.parse((await pm2('jlist')).stdout);
  return list.filter((p) => p.name === name && p.pid > 0).map((p) => p.pid).sort();
}

async function cell(method, clients) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'fdb-pm2-'));
  const port = await freePort();
  const sock = path.join(home, 'app.sock');
  const env = { PM2_HOME: home, PORT: String(port), FDBROKER_SOCK: sock };
  const pm2 = (...a) => execp(process.execPath, [PM2_BIN, ...a], env);
  const commands = [];
  const pm2Logged = (...a) => { commands.push(`pm2 ${a.map((x) => (x.startsWith(ROOT) ? path.relative(ROOT, x) : x)).join(' ')}`); return pm2(...a); };
  try {
    if (method === 'pm2-cluster') {
      await pm2Logged('start', path.join(__dirname, 'restarts', 'naive-app.js'), '-i', '2', '--name', 'app', '--kill-timeout', String(KILL_AFTER_MS));
    } else {
      await pm2Logged('start', CLI, '--name', 'fdbroker', '--', 'serve', sock, '--listen', `http=tcp://127.0.0.1:${port}`, '--quiet');
      await pm2Logged('start', path.join(__dirname, 'pm2', 'fdb-fork-app.js'), '--name', 'app', '--kill-timeout', String(KILL_AFTER_MS));
    }
    await waitServing(port);
    await sleep(500);
    const load = startLoad({ port, concurrency: CONCURRENCY, keepAlive: clients === 'keepalive', timeoutMs: TIMEOUT_MS });
    await load.started;
    await sleep(STEADY_MS);
    const reloadMs = [];
    let replaced = 0;
    for (let i = 0; i < RELOADS; i++) {
      const before = await pidsOf(pm2, 'app');
      const t0 = Date.now();
      await pm2Logged('reload', 'app');
      reloadMs.push(Date.now() - t0);
      const after = await pidsOf(pm2, 'app');
      if (after.length === before.length && after.every((p) => !before.includes(p))) replaced++;
      await sleep(BETWEEN_MS);
    }
    await sleep(STEADY_MS);
    const r = await load.stop();
    const result = {
      method, clients, reloads: RELOADS, replaced, requests: r.requests, ok: r.ok, failed: r.failed,
      failedByKind: r.failedByKind, otherKinds: r.otherKinds, latencyMs: r.latencyMs, reloadMs,
      commands: [...new Set(commands)],
    };
    log(JSON.stringify({ method, clients, failed: r.failed, byKind: r.failedByKind, replaced }));
    return result;
  } finally {
    await pm2('kill').catch((e) => log(`pm2 kill: ${e.message}`));
    const pidFile = path.join(home, 'pm2.pid');
    if (fs.existsSync(pidFile)) { try { process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGKILL'); } catch { /* gone */ } }
    fs.rmSync(home, { recursive: true, force: true });
  }
}

async function main() {
  if (!fs.existsSync(PM2_BIN)) throw new Error(`pm2 is not installed: run npm ci (it is a devDependency): ${PM2_BIN}`);
  if (!fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) throw new Error('dist/ is missing: npm run build');
  const pm2Version = JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'pm2', 'package.json'), 'utf8')).version;
  const started = new Date().toISOString();
  const cells = [];
  for (const method of METHODS) for (const clients of CLIENTS) cells.push(await cell(method, clients));
  const cpus = os.cpus();
  process.stdout.write(`${JSON.stringify({
    bench: 'pm2', started, finished: new Date().toISOString(),
    machine: { cpu: cpus[0]?.model, cores: cpus.length, kernel: os.release(), node: process.version, pm2: pm2Version, loadavg: os.loadavg() },
    config: { reloads: RELOADS, concurrency: CONCURRENCY, timeoutMs: TIMEOUT_MS, steadyMs: STEADY_MS, betweenMs: BETWEEN_MS, killTimeoutMs: KILL_AFTER_MS },
    cells,
  }, null, 2)}\n`);
}
main().catch((err) => { process.stderr.write(`bench/pm2.js: ${err.stack || err.message}\n`); process.exitCode = 1; });
