#!/usr/bin/env node
// The crash gap, side by side: the app is SIGKILLed under load and its
// supervisor brings the next one; what do clients see? Per method, KILLS
// kills (each once the previous one has recovered), the same hello-world app
// (restarts/handler.js) and a load of new-connection clients that never
// retry. Prints JSON on stdout, progress on stderr.
//   node bench/crash-gap.js [--kills=5] [--concurrency=8] [--methods=run,run-spare,pm2]
// Methods:
//   run         `fdbroker run --library -- node pm2/fdb-fork-app.js`: the broker
//               keeps the socket; the next process starts at once (the first
//               crash of a window has no backoff) and serves the queue.
//   run-spare   the same with --spare: a process started ahead of time joins
//               as a spare (it holds the listeners, not accepting) and is
//               promoted the moment the serving one dies: it attaches and
//               accepts. Each kill waits until the new spare has joined (warm).
//   pm2         `pm2 start restarts/naive-app.js` (fork mode, autorestart, no
//               restart delay): the app owns the port; PM2 restarts it.
// Per kill: refused (ECONNREFUSED), other failures by kind, the longest wait
// of a request that succeeded while the app was dead (started before the
// next one served, finished after the kill), and the time from the kill to
// the first answer to a request made after it.
'use strict';
const { execFile, spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'bin', 'fdbroker.js');
const PM2_BIN = path.join(ROOT, 'node_modules', 'pm2', 'bin', 'pm2');
const APP = path.join(__dirname, 'pm2', 'fdb-fork-app.js');
const NAIVE = path.join(__dirname, 'restarts', 'naive-app.js');
/** Load before the first kill. */
const STEADY_MS = 1_000;
/** After a kill, at least this long under load before the next (and recovery must be seen): 5 kills then span more than run's crash-loop window (5 in 10 s). */
const AFTER_KILL_MS = 3_000;
/** A request with no answer by then is a timeout. */
const TIMEOUT_MS = 5_000;

const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const m = a.match(/^--([^=]+)(?:=(.*))?$/);
  if (!m) throw new Error(`unknown argument ${a}`);
  return [m[1], m[2] ?? true];
}));
const KILLS = Number(args.kills ?? 5);
const CONCURRENCY = Number(args.concurrency ?? 8);
const METHODS = String(args.methods ?? 'run,run-spare,pm2').split(',');

const log = (...a) => process.stderr.write(`[crash-gap] ${a.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

function execp(file, argv, env) {
  return new Promise((resolve, reject) => {
    execFile(file, argv, { env: { ...process.env, ...env }, cwd: ROOT, timeout: 60_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

/** Loops of GET on new connections, never retried; each request's start, end and outcome. */
function load(port) {
  const res = [];
  let stop = false;
  const one = () => new Promise((resolve) => {
    const start = performance.now();
    const done = (ok, kind) => { res.push({ start, end: performance.now(), ok, kind }); resolve(); };
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: TIMEOUT_MS }, (r) => {
      r.resume();
      r.on('end', () => done(r.statusCode === 200, r.statusCode === 200 ? undefined : `status-${r.statusCode}`));
      r.on('error', (e) => done(false, e.code ?? e.message));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
    req.on('error', (e) => done(false, e.code ?? e.message));
  });
  const loops = Array.from({ length: CONCURRENCY }, async () => {
    while (!stop) {
      await one();
      // A refused connect returns at once: pace the loop so refusals count attempts, not a spin.
      if (res[res.length - 1]?.kind === 'ECONNREFUSED') await sleep(1);
    }
  });
  return { res, stop: async () => { stop = true; await Promise.all(loops); return res; } };
}

/** One kill's figures from the requests around it. */
function around(res, killAt, until) {
  const window = res.filter((r) => r.end >= killAt && r.start < until);
  const firstAfter = res.filter((r) => r.ok && r.start >= killAt).sort((a, b) => a.end - b.end)[0];
  const byKind = {};
  // A failure belongs to the kill before it ended (a request in flight at the next kill is that kill's).
  for (const r of window) if (!r.ok && r.end < until) byKind[r.kind] = (byKind[r.kind] ?? 0) + 1;
  const waits = window.filter((r) => r.ok && (!firstAfter || r.start <= firstAfter.end)).map((r) => r.end - r.start);
  return {
    refused: byKind.ECONNREFUSED ?? 0,
    failedByKind: byKind,
    longestWaitMs: waits.length ? Math.round(Math.max(...waits)) : null,
    firstServedAfterKillMs: firstAfter ? Math.round(firstAfter.end - killAt) : null,
  };
}

async function fdbrokerRun(spare) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdb-gap-'));
  const port = await freePort();
  const p = spawn(process.execPath, [CLI, 'run', path.join(dir, 'app.sock'), '--listen', `http=tcp://127.0.0.1:${port}`, '--library', '--quiet',
    ...(spare ? ['--spare'] : []), '--', process.execPath, APP], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  const readyCount = () => (out.match(/^ready \d+ gen/gm) ?? []).length;
  const wait = async (pred, what) => {
    const deadline = Date.now() + 20_000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`${what}: not seen; output:\n${out}`);
      await sleep(10);
    }
  };
  await wait(() => readyCount() >= 1, 'first ready');
  const command = `fdbroker run PATH --listen http=tcp://127.0.0.1:PORT --library${spare ? ' --spare' : ''} -- node bench/pm2/fdb-fork-app.js`;
  return {
    port, command,
    servingPid: () => Number([...out.matchAll(/^ready (\d+) gen/gm)].at(-1)[1]),
    prepared: async (n) => {
      // Recovered: the n-th process is ready, and with --spare a new spare waits.
      await wait(() => readyCount() >= n, `ready #${n}`);
      if (spare) await wait(() => (out.match(/warm spare pid \d+ joined as generation/g) ?? []).length >= n, `spare #${n}`);
    },
    close: async () => { if (p.exitCode === null && p.signalCode === null) { p.kill('SIGTERM'); await new Promise((r) => p.on('exit', r)); } fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

async function pm2Method() {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'fdb-gap-pm2-'));
  const port = await freePort();
  const env = { PM2_HOME: home, PORT: String(port) };
  const pm2 = (...a) => execp(process.execPath, [PM2_BIN, ...a], env);
  await pm2('start', NAIVE, '--name', 'app');
  const pidNow = async () => JSON.parse((await pm2('jlist')).stdout).find((x) => x.name === 'app')?.pid ?? 0;
  let last = 0;
  return {
    port, command: 'pm2 start bench/restarts/naive-app.js --name app (fork mode, autorestart, restart_delay 0)',
    servingPid: () => last,
    prepared: async () => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const pid = await pidNow();
        const ok = pid > 0 && pid !== last && await new Promise((resolve) => {
          http.get({ host: '127.0.0.1', port, agent: false }, (r) => { r.resume(); r.on('end', () => resolve(r.statusCode === 200)); }).on('error', () => resolve(false));
        });
        if (ok) { last = pid; return; }
        if (Date.now() > deadline) throw new Error('pm2: the app did not come back');
        await sleep(50);
      }
    },
    close: async () => { await pm2('kill').catch(() => {}); fs.rmSync(home, { recursive: true, force: true }); },
  };
}

async function measure(method) {
  const m = method === 'pm2' ? await pm2Method() : await fdbrokerRun(method === 'run-spare');
  try {
    await m.prepared(1);
    const l = load(m.port);
    await sleep(STEADY_MS);
    const kills = [];
    for (let i = 0; i < KILLS; i++) {
      const pid = m.servingPid();
      const killAt = performance.now();
      process.kill(pid, 'SIGKILL');
      await sleep(AFTER_KILL_MS);
      await m.prepared(i + 2);
      kills.push({ killAt, until: performance.now() });
    }
    const res = await l.stop();
    const per = kills.map((k) => around(res, k.killAt, k.until));
    const sum = (f) => per.reduce((a, p) => a + f(p), 0);
    const byKind = {};
    for (const r of res) if (!r.ok) byKind[r.kind] = (byKind[r.kind] ?? 0) + 1;
    return {
      method, command: m.command, kills: KILLS, concurrency: CONCURRENCY, requests: res.length, ok: res.filter((r) => r.ok).length,
      refused: sum((p) => p.refused), failedByKind: byKind,
      longestWaitMs: Math.max(...per.map((p) => p.longestWaitMs ?? 0)),
      medianFirstServedAfterKillMs: per.map((p) => p.firstServedAfterKillMs).sort((a, b) => a - b)[Math.floor(per.length / 2)],
      perKill: per,
    };
  } finally {
    await m.close();
  }
}

async function main() {
  const out = { bench: 'crash-gap', node: process.version, cpus: os.cpus().length, loadavgBefore: os.loadavg(), results: [] };
  for (const method of METHODS) {
    log(`${method}: ${KILLS} kills, ${CONCURRENCY} new-connection clients`);
    const r = await measure(method);
    log(`${method}: longest wait ${r.longestWaitMs} ms, first served after kill (median) ${r.medianFirstServedAfterKillMs} ms, refused ${r.refused}, failed ${JSON.stringify(r.failedByKind)}`);
    out.results.push(r);
  }
  out.loadavgAfter = os.loadavg();
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}

main().catch((err) => { process.stderr.write(`crash-gap: ${err.stack ?? err}\n`); process.exit(1); });
