'use strict';
// Soak: a real broker (`fdbroker serve`, tcp on 127.0.0.1:0, in a temp dir)
// under everything at once, for N minutes:
//   - adopt loops: adoptListeners() + close, several concurrent loops;
//   - blue/green: a real HTTP app generation (test/fixtures/gen-app.js)
//     replaced every few seconds, under a constant HTTP load (new connection
//     per request, and keep-alive), every failed request counted by kind;
//   - hostile clients: garbage frames, oversized frames, silent clients,
//     clients that adopt and never read, clients SIGKILLed mid-request,
//     fd-sending attempts, bursts of concurrent clients.
// Every ~5 s it samples the broker's open fds (/proc/<pid>/fd) and VmRSS.
// At the end it prints one JSON document on stdout (config, samples, totals,
// verdicts); progress goes to stderr.
//
//   npm run soak -- --minutes 10        (default 1 minute)
//   npm run soak -- --seconds 20        (quick check)
//   npm run -s soak -- --minutes 10 > out.json   (-s: no npm banner on stdout; or --out FILE)
//
// It kills only the processes it started (by pid) and removes its temp dir.
// Every loop is bounded by the deadline and every operation by a timeout; a
// watchdog ends the run (exit 2) if the wind-down itself hangs.
// Exit status: 0 if every verdict holds, 1 if one does not, 2 on an abort.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { monitorEventLoopDelay } = require('node:perf_hooks');

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'bin', 'fdbroker.js');
const GEN_APP = path.join(ROOT, 'test', 'fixtures', 'gen-app.js');
const DIST = path.join(ROOT, 'dist');
if (!fs.existsSync(path.join(DIST, 'index.js'))) {
  process.stderr.write('soak: dist/ is missing: run `npm run build` first (npm run soak does)\n');
  process.exit(2);
}
const { adoptListeners, BrokerConnection } = require(DIST);
const { native } = require(path.join(DIST, '_binding'));

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const o = {
    minutes: 1, seconds: undefined, adoptLoops: 4, adoptPauseMs: 10, httpConcurrency: 8, rps: 400,
    swapEveryMs: 4000, sampleEveryMs: 5000, hostilePauseMs: 400, out: undefined,
  };
  const num = (k, v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} needs a non-negative number, not ${v}`);
    return n;
  };
  const keys = {
    '--minutes': 'minutes', '--seconds': 'seconds', '--adopt-loops': 'adoptLoops', '--adopt-pause-ms': 'adoptPauseMs',
    '--http-concurrency': 'httpConcurrency', '--rps': 'rps', '--swap-every-ms': 'swapEveryMs',
    '--sample-every-ms': 'sampleEveryMs', '--hostile-pause-ms': 'hostilePauseMs',
  };
  for (let i = 0; i < argv.length; i++) {
    const [k, inline] = argv[i].split('=', 2);
    if (k === '--help' || k === '-h') {
      process.stderr.write(`usage: node bench/soak.js [--minutes N | --seconds S] [--out FILE] [${Object.keys(keys).filter((x) => x !== '--minutes' && x !== '--seconds').join(' N] [')} N]\n`);
      process.exit(0);
    }
    if (k === '--out') {
      o.out = inline ?? argv[++i];
      if (!o.out) throw new Error('--out needs a file');
      continue;
    }
    if (!(k in keys)) throw new Error(`unknown option ${argv[i]}`);
    const v = inline ?? argv[++i];
    if (v === undefined) throw new Error(`${k} needs a value`);
    o[keys[k]] = num(k.slice(2), v);
  }
  o.durationMs = Math.round(o.seconds !== undefined ? o.seconds * 1000 : o.minutes * 60_000);
  if (o.durationMs < 5000) throw new Error('run for at least 5 seconds');
  return o;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`soak: ${err.message}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (s) => process.stderr.write(`[soak ${((Date.now() - T0) / 1000).toFixed(1).padStart(6)}s] ${s}\n`);
const T0 = Date.now();
const bump = (map, key, by = 1) => { map[key] = (map[key] ?? 0) + by; };
const round = (x, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** Every child this run started, by pid, so that only they are ever killed. */
const children = new Map();
function track(child) {
  children.set(child.pid, child);
  child.once('exit', () => children.delete(child.pid));
  return child;
}
function killChild(child, sig = 'SIGKILL') {
  if (child.exitCode === null && child.signalCode === null && child.pid) {
    try { process.kill(child.pid, sig); } catch { /* already gone */ }
  }
}
function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
}
/** Resolves to the exit, or to null after `ms`. */
function exitedWithin(child, ms) {
  return Promise.race([exited(child), sleep(ms).then(() => null)]);
}

function procSample(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return {
      fds: fs.readdirSync(`/proc/${pid}/fd`).length,
      rss_kb: Number(/VmRSS:\s+(\d+)/.exec(st)?.[1] ?? NaN),
      hwm_kb: Number(/VmHWM:\s+(\d+)/.exec(st)?.[1] ?? NaN),
    };
  } catch {
    return null;
  }
}
function alive(pid) {
  try { process.kill(pid, 0); return true; } catch { return false; }
}
/** Whether `pid` holds an fd open on `file` (by /proc/<pid>/fd links). */
function holdsFile(pid, file) {
  try {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try { if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === file) return true; } catch { /* raced */ }
    }
  } catch { /* gone */ }
  return false;
}
/** The fd count of `pid` once it has stopped changing (8 equal reads 50 ms apart), bounded. */
async function quietFdCount(pid, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last = procSample(pid)?.fds ?? -1;
  let same = 0;
  while (same < 8 && Date.now() < deadline) {
    await sleep(50);
    const v = procSample(pid)?.fds ?? -1;
    same = v === last ? same + 1 : 0;
    last = v;
  }
  return last;
}

// ---------------------------------------------------------------- state

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdbroker-soak-'));
const sock = path.join(dir, 'broker.sock');
const canaryPath = path.join(dir, 'canary');
fs.writeFileSync(canaryPath, 'an fd on this file is sent to the broker; it must never hold it\n');

let stopping = false;
const deadline = T0 + opts.durationMs;
const running = () => !stopping && Date.now() < deadline;

const totals = {
  http: { ok: 0, failed: 0, byKind: {}, byMode: { fresh: { ok: 0, failed: 0 }, keepalive: { ok: 0, failed: 0 } }, servedBy: 0 },
  adopt: { ok: 0, failed: 0, byCode: {} },
  swaps: { ok: 0, failed: 0, byProblem: {}, forcedOnDrain: 0, readyMs: [], oldExitMs: [] },
  hostile: {},
  broker: { warnings: 0, stderrTail: [] },
  canaryHeld: 0,
};
const servedBy = new Set();
const samples = [];
const lag = monitorEventLoopDelay({ resolution: 20 });
lag.enable();

function hostile(kind, outcome, expected) {
  const h = (totals.hostile[kind] ??= { runs: 0, unexpected: 0, outcomes: {} });
  h.runs++;
  bump(h.outcomes, outcome);
  if (!expected) h.unexpected++;
}

// ---------------------------------------------------------------- broker

async function startBroker() {
  const child = track(spawn(process.execPath, [CLI, 'serve', sock, '--quiet', '--no-inherit', '--listen', 'http=tcp://127.0.0.1:0'],
    { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    for (const line of d.split('\n').filter(Boolean)) {
      if (/warning/.test(line)) totals.broker.warnings++;
      totals.broker.stderrTail.push(line.slice(0, 300));
      if (totals.broker.stderrTail.length > 20) totals.broker.stderrTail.shift();
    }
  });
  child.stdout.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { killChild(child); reject(new Error(`broker not ready in 20 s: ${totals.broker.stderrTail.join('\n')}`)); }, 20_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /ready on .* \(pid (\d+)\): http=tcp:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout.removeAllListeners('data');
        child.stdout.resume();
        resolve({ child, pid: child.pid, port: Number(m[2]) });
      }
    });
    child.once('exit', (code, sig) => { clearTimeout(timer); reject(new Error(`broker exited (${code ?? sig}) before ready: ${totals.broker.stderrTail.join('\n')}`)); });
  });
}

// ---------------------------------------------------------------- generations

function startGen() {
  const child = track(spawn(process.execPath, [GEN_APP], {
    env: { ...process.env, FDBROKER_SOCK: sock, LABEL: 'soak' }, stdio: ['ignore', 'pipe', 'pipe'],
  }));
  const g = { child, pid: child.pid, out: '', err: '' };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { g.out = (g.out + d).slice(-16_384); });
  child.stderr.on('data', (d) => { g.err = (g.err + d).slice(-4096); });
  g.ready = (ms) => new Promise((resolve) => {
    const deadlineAt = Date.now() + ms;
    const tick = () => {
      if (/^ready \d+ gen \d+$/m.test(g.out)) return resolve(true);
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadlineAt) return resolve(false);
      setTimeout(tick, 20);
    };
    tick();
  });
  return g;
}

let currentGen;
async function swapLoop() {
  while (running()) {
    const waitUntil = Date.now() + opts.swapEveryMs;
    while (running() && Date.now() < waitUntil) await sleep(100);
    if (!running()) break;
    await swapOnce();
  }
}

/** One blue/green swap; always completes within ~40 s. */
async function swapOnce() {
  const old = currentGen;
  const t = Date.now();
  const next = startGen();
  if (!(await next.ready(15_000))) {
    killChild(next.child);
    await exitedWithin(next.child, 5000);
    totals.swaps.failed++;
    // Keyed by the app's first stderr line: a failure of the environment
    // (e.g. the native addon being rebuilt meanwhile) shows as such.
    bump(totals.swaps.byProblem, `new-not-ready: ${next.err.trim().split('\n')[0].slice(0, 120) || 'no stderr'}`);
    log(`swap: new generation pid ${next.pid} not ready: ${next.err.trim().slice(0, 200)}`);
    return;
  }
  totals.swaps.readyMs.push(Date.now() - t);
  const tReady = Date.now();
  currentGen = next;
  const ex = await exitedWithin(old.child, 25_000);
  if (!ex) {
    killChild(old.child);
    await exitedWithin(old.child, 5000);
    totals.swaps.failed++;
    bump(totals.swaps.byProblem, 'old-not-exited');
    return;
  }
  totals.swaps.oldExitMs.push(Date.now() - tReady);
  const m = /^drained \d+ forced (\d+)$/m.exec(old.out);
  if (m) totals.swaps.forcedOnDrain += Number(m[1]);
  if (ex.code !== 0 || !m) {
    totals.swaps.failed++;
    bump(totals.swaps.byProblem, ex.code !== 0 ? `old-exit-${ex.code ?? ex.signal}` : 'old-no-drained-line');
    return;
  }
  totals.swaps.ok++;
}

// ---------------------------------------------------------------- HTTP load

function httpLoad(port) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.httpConcurrency });
  const perLoopInterval = opts.rps > 0 ? (2 * opts.httpConcurrency * 1000) / opts.rps : 0;
  let stop = false;
  const fail = (mode, kind) => {
    totals.http.failed++;
    totals.http.byMode[mode].failed++;
    bump(totals.http.byKind, `${mode}:${kind}`);
  };
  const one = (mode) => new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: mode === 'keepalive' ? agent : false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        if (res.statusCode === 200) {
          totals.http.ok++;
          totals.http.byMode[mode].ok++;
          servedBy.add(body.split(' ')[0]);
        } else fail(mode, `status-${res.statusCode}`);
        resolve();
      });
      res.on('error', (e) => { fail(mode, e.code ?? e.message); resolve(); });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
    req.on('error', (e) => { fail(mode, e.code ?? e.message); resolve(); });
  });
  const hardStop = deadline + 120_000; // bounded even if stop() were never called
  const loop = async (mode) => {
    while (!stop && Date.now() < hardStop) {
      const t = Date.now();
      await one(mode);
      const wait = perLoopInterval - (Date.now() - t);
      if (wait > 0) await sleep(wait);
    }
  };
  const loops = [];
  for (let i = 0; i < opts.httpConcurrency; i++) loops.push(loop('fresh'), loop('keepalive'));
  const done = Promise.all(loops).then(() => agent.destroy());
  return { stop: () => { stop = true; return done; } };
}

// ---------------------------------------------------------------- adopt loops

async function adoptLoop() {
  while (running()) {
    try {
      const ls = await adoptListeners(sock, { names: ['http'], timeout: 10_000 });
      for (const l of Object.values(ls)) l.close();
      totals.adopt.ok++;
    } catch (err) {
      totals.adopt.failed++;
      bump(totals.adopt.byCode, err.code ?? err.message);
    }
    if (opts.adoptPauseMs > 0) await sleep(opts.adoptPauseMs);
  }
}

// ---------------------------------------------------------------- hostile clients

const EAGAIN = -11;
const EPERM = -1;
const ECONNRESET = -104;
const HELLO = Buffer.from(JSON.stringify({ type: 'hello', versions: [1], client: 'soak-hostile' }));

/** A raw SOCK_SEQPACKET client through the native layer (non-blocking; polled). */
class Raw {
  constructor(fd) { this.fd = fd; this.closed = false; }
  static async connect() {
    const n = native();
    const fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_SEQPACKET);
    if (fd < 0) throw new Error(`socket: ${fd}`);
    const until = Date.now() + 5000;
    for (;;) {
      const r = n.connect(fd, { family: 'unix', path: sock });
      if (r === 0) return new Raw(fd);
      if (r !== EAGAIN || Date.now() > until) { n.close(fd); throw new Error(`connect: ${r}`); }
      await sleep(10);
    }
  }
  send(payload, fds = []) {
    return native().sendmsg(this.fd, Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload)), fds);
  }
  /** Next message: { msg, fds } (fds closed on arrival), or 'eof' | 'reset' | 'timeout' | 'errno N'. */
  async next(timeoutMs) {
    const n = native();
    const until = Date.now() + timeoutMs;
    for (;;) {
      const r = n.recvmsg(this.fd, Raw.buf, 253);
      if (typeof r === 'number') {
        if (r === EAGAIN) {
          if (Date.now() >= until) return 'timeout';
          await sleep(15);
          continue;
        }
        return r === ECONNRESET ? 'reset' : `errno ${r}`;
      }
      for (const fd of r.fds) n.close(fd);
      if (r.bytes === 0 && r.fds.length === 0) return 'eof';
      let msg;
      try { msg = JSON.parse(Raw.buf.subarray(0, r.bytes).toString('utf8')); } catch { msg = { type: '?unparsable' }; }
      return { msg, fds: r.fds.length };
    }
  }
  /** Messages until the broker hangs up (or `timeoutMs` passes). */
  async readAll(timeoutMs, maxMessages = 1000) {
    const until = Date.now() + timeoutMs;
    const o = { messages: [], fds: 0, end: 'timeout' };
    while (o.messages.length < maxMessages) {
      const r = await this.next(Math.max(0, until - Date.now()));
      if (typeof r === 'string') { o.end = r; return o; }
      o.messages.push(r.msg);
      o.fds += r.fds;
    }
    return o;
  }
  close() { if (!this.closed) { this.closed = true; native().close(this.fd); } }
}
Raw.buf = Buffer.alloc(128 * 1024);

const hung = (end) => end === 'eof' || end === 'reset';
const codes = (o) => o.messages.map((m) => (m.type === 'error' ? m.code : m.type)).join(',') || '-';

const HOSTILE = {
  /** Not JSON, JSON that is not an object, an unknown type, a request before hello. */
  async garbage(i) {
    const payloads = [
      Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.from([0xff, 0xfe, 0x00, 0x80]), Buffer.from('[1,2,3]'),
      Buffer.from('{"type":"gimme","id":1}'), Buffer.from('{"type":"adopt","id":1,"names":["http"]}'),
      Buffer.from('{"type":"hello","versions":[1e300]}'),
    ];
    const c = await Raw.connect();
    try {
      c.send(payloads[i % payloads.length]);
      const o = await c.readAll(5000);
      const ok = o.fds === 0 && hung(o.end) && o.messages.length === 1 && o.messages[0].code === 'ERR_FDBROKER_PROTOCOL';
      hostile('garbage', `${codes(o)}+${o.end}`, ok);
    } finally { c.close(); }
  },
  /** One packet over 64 KiB that starts with a valid hello: dropped, never welcomed. */
  async oversized(i) {
    const size = i % 2 ? 64 * 1024 + 1 : 200_000;
    const c = await Raw.connect();
    try {
      const r = c.send(Buffer.concat([HELLO, Buffer.alloc(size - HELLO.length, 0x20)]));
      if (r < 0) { hostile('oversized', `send-errno-${r}`, false); return; }
      const o = await c.readAll(5000);
      const ok = hung(o.end) && !o.messages.some((m) => m.type === 'welcome') && o.fds === 0;
      hostile('oversized', `${codes(o)}+${o.end}`, ok);
    } finally { c.close(); }
  },
  /** Four clients that never say hello: each told ERR_FDBROKER_TIMEOUT and dropped after ~5 s. */
  async silent() {
    const cs = [];
    try {
      for (let k = 0; k < 4; k++) cs.push(await Raw.connect());
      const t = Date.now();
      const os_ = await Promise.all(cs.map((c) => c.readAll(12_000)));
      const ms = Date.now() - t;
      for (const o of os_) {
        const ok = hung(o.end) && o.messages.length === 1 && o.messages[0].code === 'ERR_FDBROKER_TIMEOUT' && ms >= 4000;
        hostile('silent', `${codes(o)}+${o.end}`, ok);
      }
    } finally { for (const c of cs) c.close(); }
  },
  /** Adopts, reads nothing, asks again and again; then hangs up without reading, or reads it all. */
  async adoptNoRead(i) {
    const c = await Raw.connect();
    try {
      c.send(HELLO);
      for (let id = 1; id <= 50; id++) {
        const r = c.send({ type: 'adopt', id, names: ['http'] });
        if (r < 0 && r !== EAGAIN) break;
      }
      await sleep(300 + (i % 5) * 200);
      if (i % 2 === 0) {
        hostile('adopt-never-read', 'closed-unread', true);
        return;
      }
      // Read it all: exactly one handout with its fd; every later adopt refused.
      const o = await c.readAll(1500, 200);
      const listeners = o.messages.filter((m) => m.type === 'listeners').length;
      const overloaded = o.messages.filter((m) => m.code === 'ERR_FDBROKER_OVERLOADED').length;
      // At most one handout (one fd) is ever in flight to a client that does
      // not read; every adopt is answered (a handout or ERR_FDBROKER_OVERLOADED).
      const ok = o.fds <= 1 && listeners <= 1 && listeners + overloaded === 50 && alive(broker.pid);
      hostile('adopt-read-late', `fds=${o.fds} listeners=${listeners} overloaded=${overloaded} end=${o.end}`, ok);
    } finally { c.close(); }
  },
  /** A child process that adopts in a loop (or sends adopt and blocks), SIGKILLed mid-request. */
  async killedMidRequest(i) {
    const mode = i % 2 ? 'raw' : 'loop';
    const script = `
      const { adoptListeners } = require(${JSON.stringify(DIST)});
      const { native } = require(${JSON.stringify(path.join(DIST, '_binding'))});
      const sock = ${JSON.stringify(sock)};
      if (${JSON.stringify(mode)} === 'raw') {
        const n = native();
        const fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_SEQPACKET);
        n.connect(fd, { family: 'unix', path: sock });
        n.sendmsg(fd, Buffer.from('{"type":"hello","versions":[1]}'), []);
        n.sendmsg(fd, Buffer.from('{"type":"adopt","id":1,"names":["http"]}'), []);
        process.stdout.write('go\\n');
        setTimeout(() => {}, 60000);
      } else {
        process.stdout.write('go\\n');
        (async () => { for (let k = 0; k < 100000; k++) { const l = await adoptListeners(sock, { names: ['http'] }); l.http.close(); } })();
      }`;
    const child = track(spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => { err = (err + d).slice(0, 2048); });
    const went = await new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), 10_000);
      child.stdout.once('data', () => { clearTimeout(t); resolve(true); });
      child.once('exit', () => { clearTimeout(t); resolve(false); });
    });
    await sleep(Math.floor(Math.random() * 40));
    killChild(child);
    const ex = await exitedWithin(child, 5000);
    const why = ex?.signal === 'SIGKILL' ? '' : `:${err.trim().split('\n')[0].slice(0, 120)}`;
    hostile('killed-mid-request', `${mode}:${went ? 'started' : 'no-start'}:${ex ? ex.signal ?? ex.code : 'not-exited'}${why}`, went && ex?.signal === 'SIGKILL');
  },
  /** An fd (on a canary file) sent with hello, or with a request after welcome: refused (EPERM) or closed and dropped. */
  async sendFds(i) {
    const file = fs.openSync(canaryPath, 'r');
    const c = await Raw.connect();
    try {
      let r;
      let expectAfter;
      if (i % 2 === 0) {
        r = c.send(HELLO, [file]);
        expectAfter = 'welcome';
      } else {
        c.send(HELLO);
        const w = await c.next(5000);
        if (typeof w === 'string' || w.msg.type !== 'welcome') { hostile('send-fds', `no-welcome:${typeof w === 'string' ? w : w.msg.type}`, false); return; }
        r = c.send({ type: 'status', id: 7 }, [file, file]);
        expectAfter = 'status';
      }
      let outcome;
      let ok;
      if (r === EPERM) {
        // Refused by the kernel (SO_PASSRIGHTS): nothing was sent, the connection works.
        c.send(expectAfter === 'welcome' ? HELLO : { type: 'status', id: 8 });
        const m = await c.next(5000);
        ok = typeof m !== 'string' && m.msg.type === expectAfter;
        outcome = `EPERM:${typeof m === 'string' ? m : m.msg.type}`;
      } else {
        const o = await c.readAll(5000);
        ok = r > 0 && hung(o.end) && !o.messages.some((m) => m.type === expectAfter);
        outcome = `sent(${r}):${codes(o)}+${o.end}`;
      }
      const held = holdsFile(broker.pid, canaryPath);
      if (held) totals.canaryHeld++;
      hostile('send-fds', outcome, ok && !held);
    } finally {
      c.close();
      fs.closeSync(file);
    }
  },
  /** 50 clients adopting at once. */
  async burst() {
    const rs = await Promise.allSettled(Array.from({ length: 50 }, () => adoptListeners(sock, { names: ['http'], timeout: 10_000 })));
    let ok = 0;
    for (const r of rs) {
      if (r.status === 'fulfilled') { ok++; r.value.http.close(); } else hostile('burst-client', r.reason.code ?? r.reason.message, false);
    }
    hostile('burst', `${ok}/50`, ok === 50);
  },
};

async function hostileLoop(name, fn, pauseMs) {
  let i = 0;
  while (running()) {
    try {
      await fn(i++);
    } catch (err) {
      hostile(name, `threw:${err.code ?? err.message}`, false);
    }
    const until = Date.now() + pauseMs;
    while (running() && Date.now() < until) await sleep(Math.min(100, until - Date.now()));
  }
}

// ---------------------------------------------------------------- sampling

let broker;
function sample(phase) {
  const b = procSample(broker.pid);
  const me = procSample(process.pid);
  const s = {
    t_s: round((Date.now() - T0) / 1000, 1),
    phase,
    broker_fds: b?.fds ?? null,
    broker_rss_kb: b?.rss_kb ?? null,
    broker_alive: alive(broker.pid),
    soak_fds: me?.fds ?? null,
    soak_rss_kb: me?.rss_kb ?? null,
    soak_loop_lag_p99_ms: round(lag.percentile(99) / 1e6, 1),
    loadavg_1m: round(os.loadavg()[0]),
    http_ok: totals.http.ok,
    http_failed: totals.http.failed,
    adopt_ok: totals.adopt.ok,
    adopt_failed: totals.adopt.failed,
    swaps_ok: totals.swaps.ok,
    swaps_failed: totals.swaps.failed,
    hostile_runs: Object.values(totals.hostile).reduce((a, h) => a + h.runs, 0),
    hostile_unexpected: Object.values(totals.hostile).reduce((a, h) => a + h.unexpected, 0),
  };
  lag.reset();
  if (holdsFile(broker.pid, canaryPath)) totals.canaryHeld++;
  samples.push(s);
  return s;
}

// ---------------------------------------------------------------- run

async function cleanup() {
  lag.disable();
  const live = [...children.values()];
  for (const c of live) killChild(c, c === broker?.child ? 'SIGTERM' : 'SIGKILL');
  await Promise.all(live.map(async (c) => {
    if (!(await exitedWithin(c, 5000))) { killChild(c, 'SIGKILL'); await exitedWithin(c, 2000); }
  }));
  fs.rmSync(dir, { recursive: true, force: true });
}

function summarize(list) {
  const s = [...list].sort((a, b) => a - b);
  const at = (p) => (s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : null);
  return { n: s.length, p50: at(50), p90: at(90), max: s.at(-1) ?? null };
}

async function main() {
  const loadStart = os.loadavg().map((x) => round(x));
  broker = await startBroker();
  log(`broker pid ${broker.pid} on ${sock}, http on 127.0.0.1:${broker.port}; running ${opts.durationMs / 1000} s`);
  currentGen = startGen();
  if (!(await currentGen.ready(15_000))) throw new Error(`first generation not ready: ${currentGen.err}`);
  // Warm up, then the quiet baseline: one generation connected, nothing else.
  for (let k = 0; k < 20; k++) Object.values(await adoptListeners(sock)).forEach((l) => l.close());
  const c0 = await BrokerConnection.connect(sock);
  await c0.status();
  c0.close();
  const fdStartQuiet = await quietFdCount(broker.pid);
  const soakFdStart = await quietFdCount(process.pid);
  const start = sample('start');
  log(`baseline: broker fds ${fdStartQuiet}, rss ${start.broker_rss_kb} kB`);

  const load = httpLoad(broker.port);
  const work = [swapLoop()];
  for (let k = 0; k < opts.adoptLoops; k++) work.push(adoptLoop());
  const pause = opts.hostilePauseMs;
  work.push(
    hostileLoop('garbage', HOSTILE.garbage, pause),
    hostileLoop('oversized', HOSTILE.oversized, pause),
    hostileLoop('silent', HOSTILE.silent, pause),
    hostileLoop('adopt-no-read', HOSTILE.adoptNoRead, pause),
    hostileLoop('killed-mid-request', HOSTILE.killedMidRequest, pause * 2),
    hostileLoop('send-fds', HOSTILE.sendFds, pause),
    hostileLoop('burst', HOSTILE.burst, pause * 10),
  );
  const sampler = setInterval(() => {
    const s = sample('run');
    log(`fds ${s.broker_fds} rss ${s.broker_rss_kb} kB | http ok ${s.http_ok} failed ${s.http_failed} | adopt ok ${s.adopt_ok} failed ${s.adopt_failed}`
      + ` | swaps ${s.swaps_ok}/${s.swaps_failed} served-by ${servedBy.size} | hostile ${s.hostile_runs} (${s.hostile_unexpected} unexpected) | load ${s.loadavg_1m} lag99 ${s.soak_loop_lag_p99_ms} ms`);
    if (!s.broker_alive) { log('broker died: stopping'); stopping = true; }
  }, opts.sampleEveryMs);

  await Promise.all(work); // every loop ends at the deadline (or when the broker died)
  clearInterval(sampler);
  log('deadline: winding down (load stops after the last swap has finished)');
  await sleep(500);
  await load.stop();

  // Quiet again: the last generation connected, nothing else.
  const fdEndQuiet = await quietFdCount(broker.pid);
  const soakFdEnd = await quietFdCount(process.pid);
  const end = sample('end');
  let finalAdopt = 'ok';
  let finalStatus;
  try {
    Object.values(await adoptListeners(sock, { timeout: 10_000 })).forEach((l) => l.close());
    const c = await BrokerConnection.connect(sock, { timeout: 10_000 });
    try { finalStatus = await c.status(10_000); } finally { c.close(); }
  } catch (err) {
    finalAdopt = err.code ?? err.message;
  }
  const brokerAlive = alive(broker.pid) && finalAdopt === 'ok';

  // RSS: start → end, and "after warm-up" (the sample half-way through the
  // run: V8's heap grows for a while before it levels off) → end, with the
  // least-squares slope over that second half.
  const runSamples = samples.filter((s) => s.phase === 'run');
  const warm = runSamples[Math.floor(runSamples.length / 2)] ?? start;
  const half = samples.filter((s) => s.t_s >= warm.t_s && s.broker_rss_kb !== null);
  const slope = (() => {
    if (half.length < 2) return null;
    const mx = half.reduce((a, s) => a + s.t_s, 0) / half.length;
    const my = half.reduce((a, s) => a + s.broker_rss_kb, 0) / half.length;
    const num = half.reduce((a, s) => a + (s.t_s - mx) * (s.broker_rss_kb - my), 0);
    const den = half.reduce((a, s) => a + (s.t_s - mx) ** 2, 0);
    return den ? round((num / den) * 60, 1) : null;
  })();
  const rssGrowthWarm = end.broker_rss_kb - warm.broker_rss_kb;
  const rssLimitKb = Math.max(8192, Math.round(warm.broker_rss_kb * 0.1));
  const verdicts = {
    fd_growth: { start_quiet: fdStartQuiet, end_quiet: fdEndQuiet, growth: fdEndQuiet - fdStartQuiet, pass: fdEndQuiet - fdStartQuiet <= 0,
      rule: 'broker fd count with one generation connected and no other client, after the run vs before it: no growth' },
    rss_growth: { start_kb: start.broker_rss_kb, warm_kb: warm.broker_rss_kb, warm_t_s: warm.t_s, end_kb: end.broker_rss_kb,
      growth_start_end_kb: end.broker_rss_kb - start.broker_rss_kb, growth_warm_end_kb: rssGrowthWarm,
      max_kb: Math.max(...samples.map((s) => s.broker_rss_kb ?? 0)), slope_second_half_kb_per_min: slope,
      pass: rssGrowthWarm <= rssLimitKb, rule: `VmRSS growth from the sample half-way through the run to the end <= max(8 MiB, 10% of it) = ${rssLimitKb} kB` },
    http_failures_zero: { failed: totals.http.failed, ok: totals.http.ok, pass: totals.http.failed === 0 },
    broker_alive: { pass: brokerAlive, final_adopt: finalAdopt, final_status_clients: finalStatus?.clients.length ?? null },
    hostile_as_expected: { unexpected: Object.values(totals.hostile).reduce((a, h) => a + h.unexpected, 0),
      pass: Object.values(totals.hostile).every((h) => h.unexpected === 0) },
    canary_fd_never_held: { pass: totals.canaryHeld === 0, times_held: totals.canaryHeld },
    swaps_clean: { ok: totals.swaps.ok, failed: totals.swaps.failed, forced_on_drain: totals.swaps.forcedOnDrain, pass: totals.swaps.failed === 0 && totals.swaps.ok > 0 },
    soak_process_fd_growth: { start: soakFdStart, end: soakFdEnd, growth: soakFdEnd - soakFdStart, pass: soakFdEnd - soakFdStart <= 0 },
  };
  const elapsed = (Date.now() - T0) / 1000;
  const result = {
    config: {
      ...opts, broker: `fdbroker serve <tmp>/broker.sock --quiet --no-inherit --listen http=tcp://127.0.0.1:0 (port ${broker.port})`,
      app: 'test/fixtures/gen-app.js', defaults_note: 'broker defaults: handshake timeout 5 s, max clients 1024, 64 queued messages per client',
    },
    machine: {
      cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, kernel: os.release(), node: process.version,
      loadavg_start: loadStart, loadavg_end: os.loadavg().map((x) => round(x)),
      note: 'the machine is shared with other work; loadavg counts it too',
    },
    elapsed_s: round(elapsed, 1),
    samples,
    totals: {
      http: { ...totals.http, servedBy: servedBy.size, rps: round(totals.http.ok / (opts.durationMs / 1000), 1) },
      adopt: { ...totals.adopt, per_s: round(totals.adopt.ok / (opts.durationMs / 1000), 1) },
      swaps: { ok: totals.swaps.ok, failed: totals.swaps.failed, byProblem: totals.swaps.byProblem, forcedOnDrain: totals.swaps.forcedOnDrain,
        readyMs: summarize(totals.swaps.readyMs), oldExitMs: summarize(totals.swaps.oldExitMs) },
      hostile: totals.hostile,
      broker_stderr: { warnings: totals.broker.warnings, tail: totals.broker.stderrTail },
    },
    verdicts,
    pass: Object.values(verdicts).every((v) => v.pass),
  };
  return result;
}

/** The JSON result: on stdout, and to --out FILE if given (npm prints its own banner on stdout; use `npm run -s`). */
function emit(obj) {
  const text = JSON.stringify(obj, null, 2) + '\n';
  if (opts.out) fs.writeFileSync(opts.out, text);
  process.stdout.write(text);
}

// A watchdog for the wind-down: the run is over by then, whatever happens.
const watchdog = setTimeout(async () => {
  log('watchdog: the run did not finish in time; aborting');
  stopping = true;
  await cleanup();
  emit({ config: opts, aborted: 'watchdog', samples, totals, pass: false });
  process.exit(2);
}, opts.durationMs + 180_000);

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    log(`${sig}: cleaning up`);
    stopping = true;
    clearTimeout(watchdog);
    await cleanup();
    emit({ config: opts, aborted: sig, samples, totals, pass: false });
    process.exit(2);
  });
}

main().then(async (result) => {
  clearTimeout(watchdog);
  await cleanup();
  log(`done: ${result.pass ? 'PASS' : 'FAIL'} (${Object.entries(result.verdicts).filter(([, v]) => !v.pass).map(([k]) => k).join(', ') || 'all verdicts hold'})`);
  emit(result);
  process.exit(result.pass ? 0 : 1);
}, async (err) => {
  clearTimeout(watchdog);
  log(`error: ${err.stack || err.message}`);
  stopping = true;
  await cleanup();
  emit({ config: opts, aborted: err.message, samples, totals, pass: false });
  process.exit(2);
});
