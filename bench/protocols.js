'use strict';
// Long-lived connections across deploys: for each server kind (HTTP/2 over
// TLS, WebSocket, Server-Sent Events, a Python keep-alive server under
// `fdbroker exec`), start v1 under load from real clients (no retries), deploy
// SWAPS new versions with examples/blue-green.sh, and count failed requests,
// close codes, reconnects, the script's verdicts, and how long each deploy
// took (new version ready and the old one gone). Prints one JSON document.
//   node bench/protocols.js [--swaps 6] [--only http2,ws,sse,python]
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const http2 = require('node:http2');
const path = require('node:path');
const { CLI, ROOT, tmpDir, machine, sleep, summarizeMs, requireDist } = require('./lib');

const SCRIPT = path.join(ROOT, 'examples', 'blue-green.sh');
const EX = path.join(ROOT, 'examples');
const CLIENTS = 20;
const SETTLE_MS = 500;
const REFUSED_STREAM = 7;

const argv = process.argv.slice(2);
const arg = (n, d) => { const i = argv.indexOf(`--${n}`); return i >= 0 ? argv[i + 1] : d; };
const SWAPS = Number(arg('swaps', 6));
const ONLY = arg('only', 'http2,ws,sse,python').split(',');

const children = new Set();
function spawnTracked(cmd, args, env) {
  const c = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.add(c);
  let out = '';
  c.stdout.on('data', (d) => { out += d; });
  c.stderr.on('data', (d) => { out += d; });
  c.out = () => out;
  c.done = new Promise((r) => c.on('exit', (code) => { children.delete(c); r(code); }));
  return c;
}
function waitOut(c, re, ms = 15_000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const iv = setInterval(() => {
      const m = c.out().match(re);
      if (m) { clearInterval(iv); resolve(m); } else if (Date.now() - t0 > ms) { clearInterval(iv); reject(new Error(`no ${re} in: ${c.out()}`)); }
    }, 20);
  });
}

async function broker(spec) {
  const dir = tmpDir('proto');
  const sock = path.join(dir, 'b.sock');
  const b = spawnTracked(process.execPath, [CLI, 'serve', sock, '--quiet', '--no-inherit', '--listen', `http=tcp://127.0.0.1:0${spec}`]);
  const m = await waitOut(b, /http=tcp:\/\/127\.0\.0\.1:(\d+)/);
  return { dir, sock, port: Number(m[1]) };
}

function deploy(sock, cmd, env) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const d = spawn('bash', [SCRIPT, sock, ...cmd], { env: { ...process.env, ...env, FDBROKER: `${process.execPath} ${CLI}`, FDBROKER_SOCK: sock, LOG: path.join(path.dirname(sock), 'app.log') }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    d.stdout.on('data', (x) => { out += x; });
    d.on('exit', (code) => {
      let v = {};
      try { v = JSON.parse(out.trim().split('\n').pop()); } catch { /* none */ }
      if (v.pid) children.add({ pid: v.pid, kill: () => { try { process.kill(-v.pid, 'SIGKILL'); } catch { /* gone */ } } });
      resolve({ code, verdict: v.verdict, ms: Date.now() - t0 });
    });
  });
}

function httpLoad(port) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const s = { ok: 0, failed: 0, byKind: {}, lat: [] };
  let stop = false;
  const one = () => new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => { if (res.statusCode === 200) { s.ok++; s.lat.push(performance.now() - t0); } else { s.failed++; } resolve(); });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
    req.on('error', (e) => { s.failed++; s.byKind[e.code] = (s.byKind[e.code] || 0) + 1; resolve(); });
  });
  const loops = Array.from({ length: 8 }, async () => { while (!stop) await one(); });
  return { stop: async () => { stop = true; await Promise.all(loops); agent.destroy(); const lat = summarizeMs(s.lat.sort((a, b) => a - b)); delete s.lat; return { ...s, latencyMs: lat }; } };
}

function h2Load(url, ca) {
  const s = { ok: 0, failed: 0, notSentRefused: 0, byKind: {}, lat: [] };
  let stop = false;
  const sessions = [];
  const loops = [];
  for (let c = 0; c < 4; c++) {
    let sess;
    const get = () => { if (!sess || sess.closed || sess.destroyed) { sess = http2.connect(url, { ca }); sess.on('error', () => {}); sessions.push(sess); } return sess; };
    const one = () => new Promise((resolve) => {
      const t0 = performance.now();
      let req;
      try { req = get().request({ ':path': '/' }); } catch (e) { s.failed++; s.byKind[e.code] = (s.byKind[e.code] || 0) + 1; return resolve(); }
      let status = 0;
      let fin = false;
      req.on('response', (h) => { status = h[':status']; });
      req.resume();
      req.on('end', () => { if (fin) return; fin = true; if (status === 200) { s.ok++; s.lat.push(performance.now() - t0); } else s.failed++; resolve(); });
      req.on('error', () => {});
      req.on('close', () => {
        if (fin) return;
        fin = true;
        if (status === 0 && req.rstCode === REFUSED_STREAM) s.notSentRefused++;
        else { s.failed++; s.byKind[`rst-${req.rstCode}`] = (s.byKind[`rst-${req.rstCode}`] || 0) + 1; }
        resolve();
      });
    });
    for (let i = 0; i < 4; i++) loops.push((async () => { while (!stop) await one(); })());
  }
  return { stop: async () => { stop = true; await Promise.all(loops); for (const x of sessions) x.close(); const lat = summarizeMs(s.lat.sort((a, b) => a - b)); delete s.lat; return { ...s, latencyMs: lat }; } };
}

function wsLoad(port, code) {
  const WebSocket = require('ws');
  const s = { opened: 0, closedWithCode: 0, otherCloses: {}, errors: 0, unansweredAtClose: 0 };
  let stop = false;
  const socks = new Set();
  const client = () => {
    const w = new WebSocket(`ws://127.0.0.1:${port}/`);
    socks.add(w);
    let waiting = false;
    const send = () => { if (w.readyState === 1) { waiting = true; w.send('x'); } };
    w.on('open', () => { s.opened++; send(); });
    w.on('message', () => { waiting = false; setTimeout(send, 20); });
    w.on('error', () => { s.errors++; });
    w.on('close', (c) => {
      socks.delete(w);
      if (stop) return;
      if (waiting) s.unansweredAtClose++;
      if (c === code) s.closedWithCode++; else s.otherCloses[c] = (s.otherCloses[c] || 0) + 1;
      client();
    });
  };
  for (let i = 0; i < CLIENTS; i++) client();
  return { stop: async () => { stop = true; for (const w of socks) w.close(1000); return s; } };
}

async function sseLoad(port) {
  const { EventSource } = require('eventsource');
  const s = { opens: 0, gaveUp: 0, events: 0 };
  const all = [];
  for (let i = 0; i < CLIENTS; i++) {
    const es = new EventSource(`http://127.0.0.1:${port}/events`);
    es.onopen = () => { s.opens++; };
    es.onmessage = () => { s.events++; };
    es.onerror = () => { if (es.readyState === 2) s.gaveUp++; };
    all.push(es);
  }
  return { stop: async () => { for (const es of all) es.close(); return { ...s, reconnects: s.opens - CLIENTS }; } };
}

async function row(name) {
  const dir = tmpDir('cert');
  let spec = '';
  let cmd;
  let env = {};
  let load;
  if (name === 'http2') {
    const key = path.join(dir, 'k.pem');
    const cert = path.join(dir, 'c.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    env = { TLS_KEY: key, TLS_CERT: cert };
    cmd = [process.execPath, path.join(EX, 'http2.js')];
  } else if (name === 'ws') cmd = [process.execPath, path.join(EX, 'ws.js')];
  else if (name === 'sse') cmd = [process.execPath, path.join(EX, 'sse.js')];
  else { spec = '?nodelay=1'; }
  const b = await broker(spec);
  if (name === 'python') cmd = [process.execPath, CLI, 'exec', b.sock, '--', 'python3', path.join(EX, 'python_server.py')];
  const v1 = spawnTracked(cmd[0], cmd.slice(1), { ...env, FDBROKER_SOCK: b.sock });
  await waitOut(v1, /^ready \d+/m);
  if (name === 'http2') load = h2Load(`https://127.0.0.1:${b.port}`, fs.readFileSync(env.TLS_CERT));
  else if (name === 'ws') load = wsLoad(b.port, 1012);
  else if (name === 'sse') load = await sseLoad(b.port);
  else load = httpLoad(b.port);
  const http1 = name === 'ws' || name === 'sse' ? httpLoad(b.port) : undefined;
  await sleep(SETTLE_MS);
  const deploys = [];
  for (let i = 0; i < SWAPS; i++) {
    deploys.push(await deploy(b.sock, cmd, env));
    await sleep(SETTLE_MS);
  }
  const clients = await load.stop();
  const plain = http1 ? await http1.stop() : undefined;
  const verdicts = {};
  for (const d of deploys) verdicts[d.verdict] = (verdicts[d.verdict] || 0) + 1;
  return { row: name, swaps: SWAPS, verdicts, deployMs: summarizeMs(deploys.map((d) => d.ms).sort((a, b) => a - b)), clients, ...(plain ? { http1: plain } : {}) };
}

async function main() {
  requireDist();
  const rows = [];
  for (const r of ONLY) rows.push(await row(r));
  console.log(JSON.stringify({ bench: 'protocols', machine: machine(), rows }, null, 2));
}
main().catch((e) => { console.error(e); process.exitCode = 1; }).finally(() => {
  for (const c of children) { try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ } }
  setTimeout(() => process.exit(), 200).unref();
});
