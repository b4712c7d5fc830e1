#!/usr/bin/env node
// Restarts under load, compared across methods, in one run. Prints JSON on
// stdout (progress on stderr).
//
//   node bench/restarts.js              full: every scenario below, about 25 min on 2 cores
//   node bench/restarts.js --quick      CI smoke: restart (fdbroker + naive, 2 restarts in 3 s,
//                                       hello app), crash-gap (fdbroker, 1 crash) and broker-restart
//                                       (fdbroker's two ways, new connections, 1 restart)
//   node bench/restarts.js --selfcheck  only the load generator's self-check
//   options: --scenarios=restart,crash-gap,busy-accept,cluster-primary,rollback-after-ready,broker-restart
//            --methods=a,b --clients=keepalive,close (filters) --apps=hello,busy (restart only)
//            --restarts=K --seconds=S --concurrency=N --steady=SEC --no-selfcheck
//
// Scenarios (SCENARIOS below), each a set of cells (method x app x client):
//   restart          the fair comparison: 7 restart methods x (hello, busy) x
//                    (keep-alive, new connection per request), 8 restarts in 20 s
//   crash-gap        the app is SIGKILLed, the next starts 1 s later
//   busy-accept      ~5 ms sync handler, 64 connections, new connection per
//                    request: the accept queue is never empty at a restart
//   cluster-primary  replace a Node cluster primary: fdbroker vs plain vs PM2
//   rollback-after-ready  the new version dies 200 ms after ready: fdbroker's
//                    standby resumes the old one; naive and SO_REUSEPORT start it again
//   broker-restart   restart or upgrade the process that owns the listening socket:
//                    fdbroker --takeover, the broker SIGKILLed and restarted with
//                    --adopt-from the app's expose(), vs the peers' socket owner
//                    restarted (naive app, SO_REUSEPORT overlap, cluster primary, pm2 update)
// Fairness: every method's app stops with the same code, fdbroker's drain()
// (restarts/shutdown.js: 1 s spread, 5 s idle grace, 10 s deadline; PM2's
// kill_timeout and the rolling primary's kill wait 12 s), so the cells differ
// only in how each method restarts.
//
// Every method serves the same app (restarts/handler.js: hello-world, or
// "busy", ~1 ms CPU per request) to the same load generator (restarts/load.js,
// its own process, never retries, counts every failure by kind). Per cell:
// warm-up, a steady window with no restart, then K restarts (or crashes)
// spread over S seconds (one that overruns its slot delays the next, so the
// window can grow), a tail, and a second steady window. Steady state = both
// steady windows of the same cell (the machine may be shared: note loadavg in
// the JSON). Methods: see METHODS below.
// PM2 is installed only for the benchmark, into /tmp/fdbroker-bench-pm2
// (never a dependency of this package).
// Self-check (--selfcheck, and at the start of every run): the load generator
// against a server broken on purpose must count every failure it causes.
'use strict';
const { spawn, fork, execFile } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const DIR = path.join(__dirname, 'restarts');
const CLI = path.join(ROOT, 'bin', 'fdbroker.js');
const PM2_PREFIX = process.env.FDBROKER_BENCH_PM2_PREFIX || '/tmp/fdbroker-bench-pm2';
const PM2_BIN = path.join(PM2_PREFIX, 'node_modules', 'pm2', 'bin', 'pm2');

const log = (...a) => process.stderr.write(`[restarts] ${a.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- arguments
function parseArgs(argv) {
  const o = {};
  for (const a of argv) {
    const m = a.match(/^--([^=]+)(?:=(.*))?$/);
    if (!m) throw new Error(`unknown argument ${a}`);
    o[m[1]] = m[2] === undefined ? true : m[2];
  }
  return o;
}
const ARGS = parseArgs(process.argv.slice(2));
const QUICK = !!ARGS.quick;
const { DRAIN_SPREAD_MS, DRAIN_DEADLINE_MS, IDLE_GRACE_MS, KILL_AFTER_MS } = require('./restarts/shutdown');
const ALL_METHODS = ['fdbroker', 'naive', 'cluster-replace', 'cluster-rolling', 'reuseport', 'pm2-reload', 'pm2-kill', 'fdbroker-cluster', 'pm2-update', 'fdbroker-takeover', 'fdbroker-adopt-from', 'fdbroker-instances'];
/** Crash gap: the new app starts this long after the old one was SIGKILLed (a supervisor's restart delay). */
const CRASH_GAP_MS = 1_000;
/** Rollback after ready: the bad version SIGKILLs itself this long after it said ready. */
const BAD_VERSION_DIES_AFTER_MS = 200;
const CFG = {
  mode: QUICK ? 'quick' : 'full',
  warmupMs: QUICK ? 500 : 750,
  steadyMs: Number(ARGS.steady || (QUICK ? 1.5 : 2)) * 1000, // twice: before and after the restarts
  tailMs: 1000,
  requestTimeoutMs: 5000,
  bucketMs: 100,
  selfcheck: ARGS.selfcheck ? 'only' : ARGS['no-selfcheck'] ? 'off' : 'on',
  // The one shutdown every method's app uses (restarts/shutdown.js).
  shutdown: {
    code: "bench/restarts/shutdown.js: fdbroker's drain() from dist, in every method's app",
    drainSpreadMs: DRAIN_SPREAD_MS, drainDeadlineMs: DRAIN_DEADLINE_MS, idleGraceMs: IDLE_GRACE_MS,
    supervisorKillAfterMs: KILL_AFTER_MS,
  },
  crashGapMs: CRASH_GAP_MS,
};

// ---------------------------------------------------------------- scenarios
// A scenario is a set of cells (method x app x client), each run the same way
// (runCell: warm-up, steady, K actions spread over S seconds, tail, steady),
// with the same load generator. `action` names the method function that one
// event of the scenario calls: 'restart' (a deploy: the method's own way to
// replace the app) or 'crash' (SIGKILL the app; the next one starts
// CRASH_GAP_MS later). A new scenario is one more entry here, plus that
// action in each method it lists (rollback after ready: action 'badDeploy';
// broker restart: action 'restartOwner', restart the socket's owner).
const SCENARIOS = {
  restart: {
    describe: 'the fair comparison: every method restarts the same app, which stops with the same drain (restarts/shutdown.js); only the restart method differs',
    action: 'restart',
    methods: QUICK ? ['fdbroker', 'naive'] : ['fdbroker', 'naive', 'cluster-replace', 'cluster-rolling', 'reuseport', 'pm2-reload', 'pm2-kill', 'fdbroker-instances'],
    apps: QUICK ? ['hello'] : ['hello', 'busy'],
    clients: ['keepalive', 'close'],
    concurrency: QUICK ? 20 : 50,
    restarts: QUICK ? 2 : 8,
    restartWindowMs: (QUICK ? 3 : 20) * 1000,
  },
  'crash-gap': {
    describe: `the app is SIGKILLed and a new one starts ${CRASH_GAP_MS} ms later (a supervisor's restart delay); for PM2 its own autorestart with --restart-delay ${CRASH_GAP_MS}`,
    action: 'crash',
    methods: QUICK ? ['fdbroker'] : ['fdbroker', 'naive', 'cluster-replace', 'pm2-reload'],
    apps: ['hello'],
    clients: QUICK ? ['close'] : ['keepalive', 'close'],
    concurrency: QUICK ? 20 : 50,
    restarts: QUICK ? 1 : 4,
    restartWindowMs: (QUICK ? 2.5 : 12) * 1000,
  },
  'busy-accept': {
    describe: 'busy app with new connections: ~5 ms of synchronous CPU per request, 64 connections, a new connection per request, so the accept queue is never empty at a restart. One process: fdbroker, reuseport; two workers: fdbroker-cluster, cluster-rolling, pm2-reload',
    action: 'restart',
    methods: QUICK ? [] : ['fdbroker', 'reuseport', 'fdbroker-cluster', 'fdbroker-instances', 'cluster-rolling', 'pm2-reload'],
    apps: ['busy5'],
    clients: ['close'],
    concurrency: 64,
    restarts: 4,
    restartWindowMs: 12 * 1000,
  },
  'rollback-after-ready': {
    describe: `a bad deploy: the new version says ready, then dies (SIGKILL) ${BAD_VERSION_DIES_AFTER_MS} ms later. fdbroker: the old generation stands by (the library's warm standby within the broker's --standby window, default 5 s) and resumes; naive (stop, start) and SO_REUSEPORT (start, stop the old): the old version is stopped or draining by then, so the supervisor starts the old version again once the new one died`,
    action: 'badDeploy',
    methods: QUICK ? [] : ['fdbroker', 'naive', 'reuseport'],
    apps: ['hello'],
    clients: ['keepalive', 'close'],
    concurrency: 50,
    restarts: 3,
    restartWindowMs: 12 * 1000,
  },
  // The process that owns the listening socket restarts (an upgrade of it, or
  // it died and its supervisor starts it again), under the same load. For
  // fdbroker that is the broker: the app keeps serving and rejoins. For the
  // peers the owner is the app (naive, SO_REUSEPORT) or the cluster primary
  // (cluster-replace, PM2's daemon), so restarting the owner is their restart.
  // fdbroker's killed broker comes back with --adopt-from the app's
  // gen.expose(), not the systemd fd store: test/systemd/manager.ts needs root,
  // a private mount namespace and a TypeScript loader, which a plain-node bench
  // run on a developer's machine has not (the fd store path is tested there).
  'broker-restart': {
    describe: 'restart or upgrade the process that owns the listening socket. fdbroker: the broker (`serve --takeover` replaces it while it runs; or it is SIGKILLed and a new one starts with `--adopt-from` the app\'s `gen.expose()`), the app does not restart and rejoins the new broker; naive and SO_REUSEPORT: the app owns the socket, so it restarts as in the fair comparison; cluster-replace: the primary owns it; pm2-update: PM2\'s daemon (its cluster primary) is replaced',
    action: 'restartOwner',
    methods: QUICK ? ['fdbroker-takeover', 'fdbroker-adopt-from'] : ['fdbroker-takeover', 'fdbroker-adopt-from', 'naive', 'reuseport', 'cluster-replace', 'pm2-update'],
    apps: ['hello'],
    clients: QUICK ? ['close'] : ['keepalive', 'close'],
    concurrency: QUICK ? 20 : 50,
    restarts: QUICK ? 1 : 4,
    restartWindowMs: (QUICK ? 2 : 12) * 1000,
  },
  'cluster-primary': {
    describe: 'replace a Node cluster primary (2 workers): fdbroker (the primary is a generation, workers listen through it) vs stopping and starting a plain cluster primary vs `pm2 update` (PM2 replaces its daemon, the cluster primary)',
    action: 'restart',
    methods: QUICK ? [] : ['fdbroker-cluster', 'cluster-replace', 'pm2-update'],
    apps: ['hello'],
    clients: ['keepalive', 'close'],
    concurrency: 50,
    restarts: 4,
    restartWindowMs: 12 * 1000,
  },
};
// Command-line overrides apply to every scenario; --methods/--apps/--clients filter.
const pick = (list, arg) => (arg ? list.filter((x) => String(arg).split(',').includes(x)) : list);
for (const [name, sc] of Object.entries(SCENARIOS)) {
  sc.methods = pick(sc.methods, ARGS.methods);
  sc.apps = ARGS.apps && name === 'restart' ? String(ARGS.apps).split(',') : sc.apps;
  sc.clients = pick(sc.clients, ARGS.clients);
  if (ARGS.concurrency) sc.concurrency = Number(ARGS.concurrency);
  if (ARGS.restarts) sc.restarts = Number(ARGS.restarts);
  if (ARGS.seconds) sc.restartWindowMs = Number(ARGS.seconds) * 1000;
}
const SCENARIO_NAMES = ARGS.scenarios ? String(ARGS.scenarios).split(',') : Object.keys(SCENARIOS);
for (const n of SCENARIO_NAMES) if (!SCENARIOS[n]) throw new Error(`unknown scenario ${n} (have ${Object.keys(SCENARIOS).join(', ')})`);
if (ARGS.methods) for (const m of String(ARGS.methods).split(',')) if (!ALL_METHODS.includes(m)) throw new Error(`unknown method ${m} (have ${ALL_METHODS.join(', ')})`);

// ---------------------------------------------------------------- processes
// Every process we start gets its own process group (detached), so cleanup can
// kill it and its children (cluster workers) by that group id, and only those.
const groups = new Set();

function start(file, args = [], env = {}, { node = true } = {}) {
  const cmd = node ? process.execPath : file;
  const argv = node ? [file, ...args] : args;
  const child = spawn(cmd, argv, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  groups.add(child.pid);
  let out = '';
  let err = '';
  const waiters = [];
  const check = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const m = out.match(waiters[i].re);
      if (m) { waiters[i].done(m); waiters.splice(i, 1); }
    }
  };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { out += d; check(); });
  child.stderr.on('data', (d) => { err += d; if (err.length > 20000) err = err.slice(-10000); });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })));
  const p = {
    child, pid: child.pid, stdout: () => out, stderr: () => err, exited,
    alive: () => child.exitCode === null && child.signalCode === null,
    kill(sig = 'SIGTERM') { if (p.alive()) child.kill(sig); },
    waitFor(re, timeoutMs = 15000) {
      return new Promise((resolve, reject) => {
        const m = out.match(re);
        if (m) return resolve(m);
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${re} from ${path.basename(file)} ${p.pid}; stdout: ${out.slice(-500)} stderr: ${err.slice(-500)}`)), timeoutMs);
        waiters.push({ re, done: (mm) => { clearTimeout(t); resolve(mm); } });
        exited.then(({ code, signal }) => { clearTimeout(t); reject(new Error(`${path.basename(file)} ${p.pid} exited (${code ?? signal}) before ${re}; stderr: ${err.slice(-500)}`)); });
      });
    },
  };
  return p;
}

async function withTimeout(promise, ms, what) {
  let t;
  try {
    return await Promise.race([promise, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout (${ms} ms): ${what}`)), ms); })]);
  } finally { clearTimeout(t); }
}

function killGroups() {
  for (const h of [...pm2Homes]) pm2KillSync(h);
  for (const g of groups) {
    try { process.kill(-g, 'SIGKILL'); } catch { /* gone */ }
  }
  groups.clear();
}

// A free port below the ephemeral range: while a method's port is closed, the
// load generator's refused connects would otherwise, one day, take that very
// port as their own local port (a TCP self-connect), and the next app's bind
// fails with EADDRINUSE.
function tryBind(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}
async function freePort() {
  let low = 32768;
  try { low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low; } catch { /* default */ }
  const from = Math.max(1024, low - 12000), to = low - 1;
  for (let i = 0; i < 200; i++) {
    const port = from + Math.floor(Math.random() * (to - from));
    if (await tryBind(port)) return port;
  }
  throw new Error(`no free port in ${from}-${to}`);
}

function probe(port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

async function waitServing(port, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe(port)) return;
    await sleep(25);
  }
  throw new Error(`nothing served on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

function execp(cmd, args, env, timeoutMs = 60000) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) { err.stdout = stdout; err.stderr = stderr; reject(err); } else resolve({ stdout, stderr });
    });
  });
}

/** hello: hello world; busy: ~1 ms of CPU per request; busy5: ~5 ms (the busy-accept scenario). */
function appEnv(app) {
  if (app === 'busy') return { BUSY: '1', BUSY_US: '1000' };
  if (app === 'busy5') return { BUSY: '1', BUSY_US: '5000' };
  if (app === 'hello') return { BUSY: '0' };
  throw new Error(`unknown app ${app}`);
}

/** SIGKILLs a process we started and its process group (cluster workers), and waits for its exit. */
async function killHard(p) {
  try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ }
  await withTimeout(p.exited, 10000, 'SIGKILLed app exit');
  return Date.now();
}

/** Waits until none of `pids` is alive (processes we did not start: PM2's workers). */
async function waitGone(pids, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const alive = pids.filter((pid) => { try { process.kill(pid, 0); return true; } catch { return false; } });
    if (!alive.length) return;
    if (Date.now() > deadline) throw new Error(`pids ${alive.join(',')} still alive after SIGKILL`);
    await sleep(10);
  }
}

// ---------------------------------------------------------------- methods
// Each method: setup(app) -> { port }; restart() -> { readyAt?, ...info }; teardown().
// A restart is over when the old version is gone and the new one serves.

const METHODS = {
  fdbroker: () => fdbrokerMethod('fdb-app.js', 'fdbroker blue/green: broker holds the port; start a new generation, `fdbroker wait --pid` until it is ready and the old one has drained (shared drain) and left; crash: SIGKILL the generation, start a new one 1 s later (the broker keeps the listening socket: connections wait in its queue)'),

  'fdbroker-cluster': () => fdbrokerMethod('fdb-cluster-app.js', 'fdbroker with a cluster: a new primary (2 workers, SCHED_NONE, listening through the primary on the broker\'s socket) is a new generation; `fdbroker wait --pid` until it is ready and the old primary has drained its workers (shared drain) and left'),

  'fdbroker-takeover': () => fdbrokerMethod('fdb-app.js', 'fdbroker, the broker replaced in place: `fdbroker serve <path> --takeover` takes the running broker\'s listeners (the same sockets), options and generations; done when the old broker has exited and the app (never restarted) has rejoined the new one', { owner: 'takeover' }),

  'fdbroker-adopt-from': () => fdbrokerMethod('fdb-app.js', 'fdbroker, the broker SIGKILLed and restarted: the app exposes its listeners (gen.expose(PATH)) once ready; SIGKILL the broker, start `fdbroker serve <path> --adopt-from PATH` on the same path; done when it is ready and the app (never restarted) has rejoined it', { owner: 'kill' }),

  naive: () => stopThenStart('naive-app.js', 'plain http app on the port; restart = SIGTERM (shared drain), wait for exit, start a new one, wait until it listens; crash: SIGKILL, start a new one 1 s later'),

  'cluster-replace': () => stopThenStart('cluster-app.js', 'cluster primary + 2 workers; restart = SIGTERM the primary (workers drain with the shared drain, primary exits after them), start a new primary, wait until both workers listen; crash: SIGKILL primary and workers, new primary 1 s later'),

  'cluster-rolling': () => {
    let cur, rolls = 0;
    return {
      describe: 'one long-lived cluster primary, 2 workers; restart = per worker: fork new, wait listening, tell the old one to stop (shared drain), wait for its exit (SIGKILL if still alive 12 s later)',
      async setup(app) {
        const port = await freePort();
        cur = start(path.join(DIR, 'cluster-rolling.js'), [], { PORT: String(port), ...appEnv(app) });
        await cur.waitFor(/^ready /m);
        return { port };
      },
      async restart() {
        const n = ++rolls;
        cur.kill('SIGUSR2');
        const m = await cur.waitFor(new RegExp(`^rolled ${n} forced (\\d+)`, 'm'), 30000);
        return { forcedKillsSoFar: Number(m[1]) };
      },
      async teardown() {
        const forced = cur?.stdout().match(/forced (\d+)\n?$/);
        cur?.kill('SIGKILL');
        return { forcedKills: forced ? Number(forced[1]) : null };
      },
    };
  },

  reuseport: () => {
    let cur, port, app, nodeReusePort;
    const startApp = (env = {}) => start(path.join(DIR, 'reuseport-app.js'), [], { PORT: String(port), REUSEPORT_NATIVE: nodeReusePort ? '0' : '1', ...appEnv(app), ...env });
    return {
      describe: 'SO_REUSEPORT overlap: every process binds its own listener; restart = start new, wait until it listens, SIGTERM old (shared drain), wait for its exit',
      async setup(a) {
        app = a;
        nodeReusePort = await nodeHasReusePort();
        port = await freePort();
        cur = startApp();
        await cur.waitFor(/^ready /m);
        return { port, listenerVia: nodeReusePort ? 'node server.listen({reusePort:true})' : 'fdbroker native(): socket + SO_REUSEPORT + bind + listen, server.listen({fd}, 511)' };
      },
      async restart() {
        const old = cur;
        const next = startApp();
        await next.waitFor(/^ready /m);
        const readyAt = Date.now();
        old.kill('SIGTERM');
        await withTimeout(old.exited, 15000, 'old exit');
        cur = next;
        const d = old.stdout().match(/drained \d+ forced (\d+) ms (\d+)/);
        return { readyAt, forced: d ? Number(d[1]) : null, drainMs: d ? Number(d[2]) : null };
      },
      // Start the new (it dies after ready), stop the old (it drains); once the new one died, start the old version again.
      async badDeploy() {
        const old = cur;
        const bad = startApp({ DIE_AFTER_READY_MS: String(BAD_VERSION_DIES_AFTER_MS) });
        cur = bad;
        await bad.waitFor(/^ready /m, 20000);
        const readyAt = Date.now();
        old.kill('SIGTERM');
        await withTimeout(bad.exited, 10000, 'bad version exit');
        const diedAt = Date.now();
        cur = startApp();
        await cur.waitFor(/^ready /m);
        const resumedAt = Date.now();
        await withTimeout(old.exited, 15000, 'old exit');
        return { readyAt, diedAt, resumedAt };
      },
      // The app owns the socket: restarting the owner is this method's restart.
      restartOwner() { return this.restart(); },
      async teardown() { cur?.kill('SIGKILL'); },
    };
  },

  'fdbroker-instances': () => {
    let dir, run, sock;
    const readyPids = () => [...run.stdout().matchAll(/^ready (\d+) gen/gm)].map((m) => Number(m[1]));
    return {
      describe: '`fdbroker run --instances 2 --library`: 2 processes (the restarts app through bench/pm2/fdb-fork-app.js) accept on the broker\'s one socket, one per instance slot; restart = `fdbroker deploy PATH` (the slots one at a time: a new process, ready, then its slot\'s old one retires with the shared drain), then wait until both old ones have exited; crash: SIGKILL one instance, run restarts that slot at once (the other serves meanwhile)',
      async setup(app) {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdbb-inst-'));
        sock = path.join(dir, 'run.sock');
        run = start(CLI, ['run', sock, '--listen', 'http=tcp://127.0.0.1:0', '--library', '--quiet', '--instances', '2', '--', process.execPath, path.join(__dirname, 'pm2', 'fdb-fork-app.js')], appEnv(app));
        const m = await run.waitFor(/http=tcp:\/\/127\.0\.0\.1:(\d+)/);
        await run.waitFor(/^ready \d+ gen[\s\S]*^ready \d+ gen/m);
        return { port: Number(m[1]) };
      },
      async restart() {
        const before = readyPids().slice(-2);
        const d = start(CLI, ['deploy', sock, '--timeout', '30000']);
        const r = await withTimeout(d.exited, 35000, 'fdbroker deploy');
        if (r.code !== 0) throw new Error(`fdbroker deploy exited ${r.code}: ${d.stderr()}${d.stdout()}`);
        const readyAt = Date.now();
        await waitGone(before, 20000);
        return { readyAt };
      },
      async crash() {
        const pid = readyPids().at(-1);
        const n = readyPids().length;
        process.kill(pid, 'SIGKILL');
        const killedAt = Date.now();
        const deadline = Date.now() + 20000;
        while (readyPids().length <= n) {
          if (Date.now() > deadline) throw new Error('the killed instance was not restarted');
          await sleep(10);
        }
        return { killedAt, readyAt: Date.now() };
      },
      async teardown() {
        run?.kill('SIGTERM');
        await withTimeout(run.exited, 20000, 'run exit').catch(() => run.kill('SIGKILL'));
        fs.rmSync(dir, { recursive: true, force: true });
        return {};
      },
    };
  },

  'pm2-reload': () => pm2Method('reload'),
  'pm2-kill': () => pm2Method('kill'),
  'pm2-update': () => pm2Method('update'),
};

function fdbrokerMethod(file, describe, { owner } = {}) {
  let dir, broker, cur, app, standby = false, resumes = 0, rejoins = 0;
  const expose = () => (owner === 'kill' ? { BENCH_EXPOSE: path.join(dir, 'expose.sock') } : {});
  const startApp = (env = {}) => start(path.join(DIR, file), [], { FDBROKER_SOCK: path.join(dir, 'b.sock'), ...(standby ? { BENCH_STANDBY: '1' } : {}), ...expose(), ...appEnv(app), ...env });
  return {
    describe,
    async setup(a, action) {
      app = a;
      standby = action === 'badDeploy';
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdbb-'));
      broker = start(CLI, ['serve', path.join(dir, 'b.sock'), '--listen', 'http=tcp://127.0.0.1:0', '--quiet']);
      const m = await broker.waitFor(/http=tcp:\/\/127\.0\.0\.1:(\d+)/);
      cur = startApp();
      await cur.waitFor(/^ready /m);
      return { port: Number(m[1]) };
    },
    async restart() {
      const old = cur;
      const next = startApp();
      const waiter = start(CLI, ['wait', path.join(dir, 'b.sock'), '--pid', String(next.pid), '--timeout', '20000']);
      let readyAt;
      next.waitFor(/^ready /m, 20000).then(() => { readyAt = Date.now(); }, () => {});
      const w = await withTimeout(waiter.exited, 25000, 'fdbroker wait');
      if (w.code !== 0) throw new Error(`fdbroker wait exited ${w.code}: ${waiter.stderr()}`);
      await withTimeout(old.exited, 15000, 'old generation exit');
      cur = next;
      const d = old.stdout().match(/drained \d+ forced (\d+) ms (\d+)/);
      return { readyAt, forced: d ? Number(d[1]) : null, drainMs: d ? Number(d[2]) : null };
    },
    async crash() {
      const killedAt = await killHard(cur);
      await sleep(CRASH_GAP_MS);
      cur = startApp();
      await cur.waitFor(/^ready /m);
      return { killedAt, readyAt: Date.now() };
    },
    // The new generation dies after ready; the broker tells the old one, standing by, to resume.
    async badDeploy() {
      const old = cur;
      const bad = startApp({ DIE_AFTER_READY_MS: String(BAD_VERSION_DIES_AFTER_MS) });
      await bad.waitFor(/^ready /m, 20000);
      const readyAt = Date.now();
      await withTimeout(bad.exited, 10000, 'bad version exit');
      const diedAt = Date.now();
      await old.waitFor(new RegExp(`^resumed ${old.pid} ${++resumes}$`, 'm'), 10000);
      return { readyAt, diedAt, resumedAt: Date.now() };
    },
    // The broker (the socket's owner) restarts; the app serves on and rejoins the new one.
    // takeover: a new broker replaces the running one; kill: SIGKILL it, start one with --adopt-from.
    async restartOwner() {
      if (!owner) throw new Error('restartOwner needs fdbroker-takeover or fdbroker-adopt-from');
      const old = broker;
      const sock = path.join(dir, 'b.sock');
      let killedAt;
      if (owner === 'kill') killedAt = await killHard(old);
      broker = start(CLI, owner === 'kill'
        ? ['serve', sock, '--adopt-from', path.join(dir, 'expose.sock'), '--quiet']
        : ['serve', sock, '--takeover', '--quiet']);
      await broker.waitFor(/^fdbroker: ready on /m, 20000);
      const readyAt = Date.now();
      if (owner === 'takeover') await withTimeout(old.exited, 15000, 'old broker exit');
      const oldGoneAt = Date.now();
      await cur.waitFor(new RegExp(`^rejoined ${cur.pid} ${++rejoins}$`, 'm'), 15000);
      return { killedAt, readyAt, oldGoneAt, rejoinedAt: Date.now() };
    },
    async teardown() {
      cur?.kill('SIGKILL');
      broker?.kill('SIGTERM');
      if (broker) await withTimeout(broker.exited, 5000, 'broker exit').catch(() => broker.kill('SIGKILL'));
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function stopThenStart(file, describe) {
  let cur, port, app;
  const startApp = () => start(path.join(DIR, file), [], { PORT: String(port), ...appEnv(app) });
  return {
    describe,
    async setup(a) {
      app = a;
      port = await freePort();
      cur = startApp();
      await cur.waitFor(/^ready /m);
      return { port };
    },
    async restart() {
      const old = cur;
      old.kill('SIGTERM');
      await withTimeout(old.exited, 15000, 'old exit');
      const stoppedAt = Date.now();
      cur = startApp();
      await cur.waitFor(/^ready /m);
      const d = old.stdout().match(/drained \d+ forced (\d+) ms (\d+)/);
      return { stoppedAt, readyAt: Date.now(), forced: d ? Number(d[1]) : null, drainMs: d ? Number(d[2]) : null };
    },
    async crash() {
      const killedAt = await killHard(cur);
      await sleep(CRASH_GAP_MS);
      cur = startApp();
      await cur.waitFor(/^ready /m);
      return { killedAt, readyAt: Date.now() };
    },
    // Stop the old, start the new, which dies after ready; the supervisor then starts the old version again.
    async badDeploy() {
      const old = cur;
      old.kill('SIGTERM');
      await withTimeout(old.exited, 15000, 'old exit');
      const bad = start(path.join(DIR, file), [], { PORT: String(port), ...appEnv(app), DIE_AFTER_READY_MS: String(BAD_VERSION_DIES_AFTER_MS) });
      cur = bad;
      await bad.waitFor(/^ready /m, 20000);
      const readyAt = Date.now();
      await withTimeout(bad.exited, 10000, 'bad version exit');
      const diedAt = Date.now();
      cur = startApp();
      await cur.waitFor(/^ready /m);
      return { readyAt, diedAt, resumedAt: Date.now() };
    },
    // The app (or cluster primary) owns the socket: restarting the owner is this method's restart.
    restartOwner() { return this.restart(); },
    async teardown() { cur?.kill('SIGKILL'); },
  };
}

let nodeReusePortCache;
async function nodeHasReusePort() {
  if (nodeReusePortCache !== undefined) return nodeReusePortCache;
  // Node before 22.12/23.1 ignores the reusePort option: the second bind then fails.
  const code = `const net=require('net');const a=net.createServer();a.listen({port:0,host:'127.0.0.1',reusePort:true},()=>{const b=net.createServer();b.on('error',()=>process.exit(1));b.listen({port:a.address().port,host:'127.0.0.1',reusePort:true},()=>process.exit(0))})`;
  nodeReusePortCache = await execp(process.execPath, ['-e', code], {}, 10000).then(() => true, () => false);
  return nodeReusePortCache;
}

let pm2Ready;
async function ensurePm2() {
  if (!pm2Ready) {
    pm2Ready = (async () => {
      if (!fs.existsSync(PM2_BIN)) {
        log(`installing pm2 into ${PM2_PREFIX} (benchmark only)`);
        fs.mkdirSync(PM2_PREFIX, { recursive: true });
        await execp('npm', ['install', '--prefix', PM2_PREFIX, '--no-audit', '--no-fund', '--no-save', 'pm2@latest'], {}, 240000);
      }
      // Not `pm2 --version`: that starts a daemon.
      return JSON.parse(fs.readFileSync(path.join(PM2_PREFIX, 'node_modules', 'pm2', 'package.json'), 'utf8')).version;
    })();
  }
  return pm2Ready;
}

// PM2 homes in use, so that an aborted run still stops their daemons.
const pm2Homes = new Set();
function pm2KillSync(home) {
  try { require('node:child_process').execFileSync(process.execPath, [PM2_BIN, 'kill'], { env: { ...process.env, PM2_HOME: home }, stdio: 'ignore', timeout: 20000 }); } catch { /* best effort */ }
  const pidFile = path.join(home, 'pm2.pid');
  if (fs.existsSync(pidFile)) { try { process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGKILL'); } catch { /* gone */ } }
  fs.rmSync(home, { recursive: true, force: true });
  pm2Homes.delete(home);
}

function pm2Method(kind) {
  let home, port, app, version;
  const env = () => ({ PM2_HOME: home, PORT: String(port), ...appEnv(app) });
  const pm2 = (...args) => execp(process.execPath, [PM2_BIN, ...args], env(), 60000);
  const startAll = async () => {
    // kill_timeout: PM2 waits for the shared drain before it kills (default 1.6 s);
    // restart_delay: PM2's own restart of a crashed worker comes CRASH_GAP_MS later.
    await pm2('start', path.join(DIR, 'naive-app.js'), '-i', '2', '--name', 'fdbbench', '--time',
      '--kill-timeout', String(KILL_AFTER_MS), '--restart-delay', String(CRASH_GAP_MS));
    await waitServing(port);
  };
  const workerPids = async () => (await pm2('pid', 'fdbbench')).stdout.split(/\s+/).filter(Boolean).map(Number).filter((n) => n > 0);
  const killDaemon = async () => {
    await pm2('kill').catch((e) => log(`pm2 kill: ${e.message}`));
    // pm2 kill waits for the daemon; make sure nothing of ours is left.
    const pidFile = path.join(home, 'pm2.pid');
    if (fs.existsSync(pidFile)) { try { process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGKILL'); } catch { /* gone */ } }
  };
  return {
    describe: {
      reload: `PM2 cluster mode (-i 2); restart = \`pm2 reload\` (per worker: new worker, wait listening, SIGINT old: shared drain, kill_timeout ${KILL_AFTER_MS} ms); crash: SIGKILL both workers, PM2 restarts them (restart_delay ${CRASH_GAP_MS} ms)`,
      kill: 'PM2 cluster mode (-i 2); restart = `pm2 kill` (daemon and apps: SIGINT, shared drain) then `pm2 start`, wait until the port serves',
      update: 'PM2 cluster mode (-i 2); restart = `pm2 update` (PM2 replaces its daemon, the cluster primary: save, kill daemon and apps, resurrect), wait until the port serves',
    }[kind],
    async setup(a) {
      version = await ensurePm2();
      app = a;
      home = fs.mkdtempSync(path.join(os.tmpdir(), 'fdbb-pm2-'));
      pm2Homes.add(home);
      port = await freePort();
      await startAll();
      await sleep(300); // both workers up
      return { port, pm2: version };
    },
    // PM2's daemon is its cluster primary, the socket's owner: `pm2 update` replaces it.
    restartOwner() {
      if (kind !== 'update') throw new Error(`pm2-${kind} has no restartOwner: use pm2-update`);
      return this.restart();
    },
    async restart() {
      if (kind === 'reload') { await pm2('reload', 'fdbbench'); return {}; }
      if (kind === 'update') {
        const before = fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8').trim();
        await pm2('update');
        const after = fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8').trim();
        if (after === before) throw new Error('pm2 update did not replace the daemon');
        await waitServing(port);
        return {};
      }
      await killDaemon();
      const stoppedAt = Date.now();
      await startAll();
      return { stoppedAt };
    },
    async crash() {
      const pids = await workerPids();
      if (pids.length !== 2) throw new Error(`pm2 lists ${pids.length} workers, not 2`);
      for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      await waitGone(pids);
      const killedAt = Date.now();
      // PM2 restarts both, CRASH_GAP_MS later; done when it serves and lists two new workers.
      await waitServing(port);
      const readyAt = Date.now();
      const deadline = Date.now() + 15000;
      for (;;) {
        const now = await workerPids();
        if (now.length === 2 && now.every((p) => !pids.includes(p))) break;
        if (Date.now() > deadline) throw new Error(`pm2 did not restart both workers (pids ${now.join(',')})`);
        await sleep(100);
      }
      return { killedAt, readyAt };
    },
    async teardown() {
      if (home) { await killDaemon(); fs.rmSync(home, { recursive: true, force: true }); pm2Homes.delete(home); }
    },
  };
}

// ---------------------------------------------------------------- load generator
function startLoad(opts) {
  const child = fork(path.join(DIR, 'load.js'), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: [] });
  const msgs = [];
  const waiters = [];
  child.on('message', (m) => { msgs.push(m); for (const w of waiters.splice(0)) w(); });
  const next = (type, timeoutMs) => withTimeout(new Promise((resolve) => {
    const look = () => { const i = msgs.findIndex((m) => m.type === type); if (i >= 0) resolve(msgs.splice(i, 1)[0]); else waiters.push(look); };
    look();
  }), timeoutMs, `load generator ${type}`);
  child.send({ cmd: 'start', ...opts });
  return {
    child,
    started: next('started', 10000),
    async stop(phases) {
      child.send({ cmd: 'stop', phases, bucketMs: CFG.bucketMs });
      return next('result', opts.timeoutMs + 30000);
    },
  };
}

// ---------------------------------------------------------------- self-check
// A server broken on purpose; the load generator must count every failure it
// causes. Every 10th request: the connection is destroyed mid-request (reset).
// Every 30th (+3): 503. Every 50th (+7): never answered (timeout). From 1.0 s
// to 1.7 s the listener is closed (refused); connections already accepted go on.
async function selfcheck() {
  const out = {};
  for (const client of ['keepalive', 'close']) {
    const srv = { requests: 0, ok: 0, destroyed: 0, status503: 0, hung: 0, listenerClosedMs: 0 };
    const hung = [];
    const server = http.createServer((req, res) => {
      const i = ++srv.requests;
      if (i % 10 === 0) { srv.destroyed++; req.socket.destroy(); return; }
      if (i % 30 === 3) { res.statusCode = 503; res.on('finish', () => srv.status503++); res.end('no\n'); return; }
      if (i % 50 === 7) { srv.hung++; hung.push(res); return; }
      res.on('finish', () => srv.ok++);
      res.end('hello world\n');
    });
    server.keepAliveTimeout = 60000;
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const port = server.address().port;
    const load = startLoad({ port, concurrency: 8, keepAlive: client === 'keepalive', timeoutMs: 500 });
    await load.started;
    await sleep(1000);
    // Close only the listening handle (not idle keep-alive connections).
    await new Promise((r) => net.Server.prototype.close.call(server, r));
    const closedAt = Date.now();
    await sleep(700);
    await new Promise((r, j) => { server.once('error', j); server.listen(port, '127.0.0.1', r); });
    srv.listenerClosedMs = Date.now() - closedAt;
    await sleep(1300);
    const res = await load.stop({ all: [0, 1e9] });
    for (const r of hung) r.destroy?.();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    const f = res.failedByKind;
    const checks = {
      'every request ended exactly once (requests = ok + failed)': res.requests === res.ok + res.failed,
      'ok = 2xx responses the server finished': res.ok === srv.ok,
      'reset >= connections destroyed mid-request': f.reset >= srv.destroyed && srv.destroyed > 0,
      'non2xx = 503s sent': f.non2xx === srv.status503 && srv.status503 > 0,
      'timeout = requests never answered': f.timeout === srv.hung && srv.hung > 0,
      'refused > 0 while the listener was closed': client === 'close' ? f.refused > 0 : true,
      'no unclassified failures': f.other === 0,
    };
    out[client] = {
      pass: Object.values(checks).every(Boolean), checks, server: srv,
      client: { requests: res.requests, ok: res.ok, failed: res.failed, failedByKind: f, otherKinds: res.otherKinds },
      note: 'reset may exceed destroyed: connections still in the accept queue when the listener closes are reset by the kernel, unseen by the server',
    };
    log(`selfcheck ${client}: ${out[client].pass ? 'PASS' : 'FAIL'} server=${JSON.stringify(srv)} client=${JSON.stringify(f)} ok=${res.ok}`);
  }
  return { pass: Object.values(out).every((c) => c.pass), ...out };
}

// ---------------------------------------------------------------- one cell
// Steady state = both steady windows: requests/s over their summed time;
// latency percentiles as the mean of the two windows' (max: the larger).
function mergeSteady(a, b) {
  const secs = (a.toMs - a.fromMs + b.toMs - b.fromMs) / 1000;
  const avg = (x, y) => (x === null ? y : y === null ? x : Math.round(((x + y) / 2) * 100) / 100);
  return {
    okPerSec: Math.round((a.ok + b.ok) / secs), ok: a.ok + b.ok, failed: a.failed + b.failed,
    before: { okPerSec: a.okPerSec, latencyMs: a.latencyMs }, after: { okPerSec: b.okPerSec, latencyMs: b.latencyMs },
    latencyMs: { p50: avg(a.latencyMs.p50, b.latencyMs.p50), p99: avg(a.latencyMs.p99, b.latencyMs.p99), max: Math.max(a.latencyMs.max ?? 0, b.latencyMs.max ?? 0) },
  };
}

async function runCell(scenarioName, methodName, app, client) {
  const sc = SCENARIOS[scenarioName];
  const method = METHODS[methodName]();
  const act = method[sc.action];
  const cell = { scenario: scenarioName, method: methodName, app, client, describe: method.describe };
  const loadavgStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  let load;
  try {
    if (typeof act !== 'function') throw new Error(`method ${methodName} has no action ${sc.action} (scenario ${scenarioName})`);
    const setup = await withTimeout(method.setup(app, sc.action), 60000, `${methodName} setup`);
    Object.assign(cell, { setup });
    load = startLoad({ port: setup.port, concurrency: sc.concurrency, keepAlive: client === 'keepalive', timeoutMs: CFG.requestTimeoutMs });
    const { t0 } = await load.started;
    const rel = (t = Date.now()) => t - t0;
    await sleep(CFG.warmupMs);
    const steadyFrom = rel();
    await sleep(CFG.steadyMs);
    const steadyTo = rel();
    const restartFrom = steadyTo;
    const marks = [];
    const errors = [];
    for (let i = 0; i < sc.restarts; i++) {
      const target = restartFrom + (i * sc.restartWindowMs) / sc.restarts;
      const wait = target - rel();
      if (wait > 0) await sleep(wait);
      const s = rel();
      try {
        const info = await withTimeout(act.call(method), 60000, `${methodName} ${sc.action}`);
        const mark = { i, startMs: s, endMs: rel() };
        for (const [k, v] of Object.entries(info || {})) {
          if (k.endsWith('At') && typeof v === 'number') mark[k.replace(/At$/, 'Ms')] = rel(v); else mark[k] = v;
        }
        marks.push(mark);
      } catch (e) {
        errors.push(`${sc.action} ${i}: ${e.message}`);
        marks.push({ i, startMs: s, endMs: rel(), error: e.message });
        break;
      }
    }
    const lastEnd = marks.length ? marks[marks.length - 1].endMs : restartFrom;
    const restartTo = Math.max(restartFrom + sc.restartWindowMs, lastEnd);
    // Tail: the last old version finishes leaving; then a second steady window,
    // so that steady state is the mean of a window before and one after the
    // restarts (the machine is shared: its load drifts).
    const tail = CFG.tailMs;
    await sleep(Math.max(0, restartTo + tail - rel()));
    const steady2From = rel();
    await sleep(CFG.steadyMs);
    const steady2To = rel();
    const res = await load.stop({
      warmup: [0, steadyFrom], steadyBefore: [steadyFrom, steadyTo], restarts: [restartFrom, restartTo],
      tail: [restartTo, steady2From], steadyAfter: [steady2From, steady2To],
    });
    res.phases.steady = mergeSteady(res.phases.steadyBefore, res.phases.steadyAfter);
    const torn = await method.teardown().catch((e) => ({ teardownError: e.message }));
    const st = res.phases.steady, rs = res.phases.restarts;
    const frac = st.okPerSec ? Math.round((rs.okPerSec / st.okPerSec) * 1000) / 1000 : null;
    const p99x = st.latencyMs.p99 ? Math.round((rs.latencyMs.p99 / st.latencyMs.p99) * 100) / 100 : null;
    // The worst 100 ms bucket during restarts vs the steady mean per bucket.
    const perBucket = st.okPerSec * (CFG.bucketMs / 1000);
    const b0 = Math.floor(restartFrom / CFG.bucketMs), b1 = Math.floor(restartTo / CFG.bucketMs);
    const minBucket = Math.min(...res.series.ok.slice(b0, b1));
    // The longest stretch (in whole buckets) during restarts in which no request succeeded.
    let run = 0, longest = 0;
    for (const o of res.series.ok.slice(b0, b1)) { run = o === 0 ? run + 1 : 0; if (run > longest) longest = run; }
    Object.assign(cell, {
      requests: res.requests, ok: res.ok, failed: res.failed, failedByKind: res.failedByKind, otherKinds: res.otherKinds,
      restartsDone: marks.filter((m) => !m.error).length, restartsPlanned: sc.restarts,
      restartWindowMs: restartTo - restartFrom,
      steady: st,
      duringRestarts: { okPerSec: rs.okPerSec, latencyMs: rs.latencyMs, failed: rs.failed, byKind: rs.byKind },
      throughputFraction: frac,
      p99Ratio: p99x,
      worst100msBucketFraction: perBucket ? Math.round((minBucket / perBucket) * 100) / 100 : null,
      longestNoOkMs: longest * CFG.bucketMs,
      latencyMs: res.latencyMs,
      phases: res.phases,
      targets: { zeroFailed: res.failed === 0, throughputAtLeast95pct: frac !== null && frac >= 0.95, p99AtMost2xSteady: p99x !== null && p99x <= 2 },
      restartMarks: marks,
      series: res.series,
      loadavg: { start: loadavgStart, end: os.loadavg().map((x) => Math.round(x * 100) / 100) },
      ...(torn ? { teardown: torn } : {}),
      ...(errors.length ? { errors } : {}),
    });
    log(`${scenarioName} ${methodName} ${app}/${client}: req=${res.requests} failed=${res.failed} ${JSON.stringify(res.failedByKind)} steady=${st.okPerSec}/s restarts=${rs.okPerSec}/s frac=${frac} p50=${rs.latencyMs.p50} p99=${rs.latencyMs.p99} (steady p99 ${st.latencyMs.p99}) max=${rs.latencyMs.max} restarts=${cell.restartsDone}/${sc.restarts}${errors.length ? ' ERR ' + errors.join('; ') : ''}`);
  } catch (e) {
    cell.error = e.message;
    log(`${scenarioName} ${methodName} ${app}/${client}: ERROR ${e.message}`);
    if (load) load.child.kill('SIGKILL');
    await method.teardown().catch(() => {});
  } finally {
    killGroups();
  }
  return cell;
}

// ---------------------------------------------------------------- main
function summarize(r) {
  return {
    scenario: r.scenario, method: r.method, app: r.app, client: r.client,
    requests: r.requests, failed: r.failed, ...(r.failedByKind || {}),
    steadyOkPerSec: r.steady?.okPerSec, restartOkPerSec: r.duringRestarts?.okPerSec, throughputFraction: r.throughputFraction,
    p50: r.duringRestarts?.latencyMs.p50, p99: r.duringRestarts?.latencyMs.p99, max: r.duringRestarts?.latencyMs.max,
    steadyP99: r.steady?.latencyMs.p99, p99Ratio: r.p99Ratio, longestNoOkMs: r.longestNoOkMs, restarts: r.restartsDone, error: r.error,
  };
}

async function main() {
  const t = Date.now();
  const out = {
    benchmark: 'restarts',
    mode: CFG.mode,
    startedAt: new Date().toISOString(),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpus: os.cpus().length,
    loadavgStart: os.loadavg(),
    config: CFG,
    targets: { failed: 0, throughputFraction: '>= 0.95', p99Ratio: '<= 2 (p99 during restarts / p99 in the steady window)' },
  };
  if (CFG.selfcheck !== 'off') {
    log('load generator self-check');
    out.selfcheck = await selfcheck();
    if (CFG.selfcheck === 'only') {
      out.loadavgEnd = os.loadavg();
      out.totalMs = Date.now() - t;
      return out;
    }
    if (!out.selfcheck.pass) log('SELF-CHECK FAILED: the numbers below are not trustworthy');
  }
  out.nodeReusePort = await nodeHasReusePort();
  out.skipped = [];
  out.scenarios = {};
  for (const name of SCENARIO_NAMES) {
    const sc = SCENARIOS[name];
    const results = [];
    for (const m of sc.methods) {
      if (m.startsWith('pm2')) {
        try { await ensurePm2(); } catch (e) {
          out.skipped.push({ scenario: name, method: m, reason: `pm2 could not be installed or run: ${e.message.split('\n')[0]}` });
          log(`${name} ${m}: skipped (${e.message.split('\n')[0]})`);
          continue;
        }
      }
      for (const app of sc.apps) {
        for (const client of sc.clients) {
          log(`${name} ${m} ${app}/${client} ...`);
          results.push(await runCell(name, m, app, client));
          await sleep(300);
        }
      }
    }
    if (!sc.methods.length) continue;
    const { methods, apps, clients, concurrency, restarts, restartWindowMs, action, describe } = sc;
    out.scenarios[name] = { describe, action, config: { methods, apps, clients, concurrency, restarts, restartWindowMs }, results, summary: results.map(summarize) };
  }
  // The fair comparison keeps its old place (results, summary, config) for the chart and CI.
  const main = out.scenarios.restart;
  if (main) {
    Object.assign(out.config, main.config);
    out.results = main.results;
    out.summary = main.summary;
    const fdb = main.results.filter((r) => r.method === 'fdbroker');
    if (fdb.length) {
      out.fdbrokerTargets = {
        zeroFailedEveryCell: fdb.every((r) => r.failed === 0),
        throughputAtLeast95pctEveryCell: fdb.every((r) => r.targets?.throughputAtLeast95pct),
        p99AtMost2xEveryCell: fdb.every((r) => r.targets?.p99AtMost2xSteady),
        misses: fdb.flatMap((r) => Object.entries(r.targets || { setup: false }).filter(([, v]) => !v).map(([k]) => `${r.app}/${r.client}: ${k}`)),
      };
    }
  }
  out.loadavgEnd = os.loadavg();
  out.totalMs = Date.now() - t;
  return out;
}

const onSignal = () => { killGroups(); process.exit(130); };
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
process.on('exit', killGroups);

main().then((out) => {
  killGroups();
  // Exit only once the output is flushed: stdout is a pipe (a socket) to
  // bench/run.js, where a large write completes asynchronously.
  process.stdout.write(JSON.stringify(out, null, 1) + '\n', () => process.exit(0));
}, (e) => {
  log(`fatal: ${e.stack || e.message}`);
  killGroups();
  process.exit(1);
});
