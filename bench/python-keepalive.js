'use strict';
// Python keep-alive throughput under `fdbroker exec`, with and without
// TCP_NODELAY on the listener: examples/python_server.py (http.server, which
// writes headers and body in separate send() calls) behind a tcp listener
// spec'd with `?nodelay=0` (Nagle on: what a listener was before TCP_NODELAY
// became the default) and with no option (the default now). CLIENTS
// keep-alive clients, one request in flight each, for SECONDS per cell.
// Prints one JSON document.
//   node bench/python-keepalive.js [--seconds 8] [--clients 2] [--python python3]
const { spawn } = require('node:child_process');
const http = require('node:http');
const path = require('node:path');
const { CLI, ROOT, tmpDir, machine, sleep, option, stopChild } = require('./lib');

const argv = process.argv.slice(2);
const SECONDS = Number(option(argv, 'seconds', 8));
const CLIENTS = Number(option(argv, 'clients', 2));
const PYTHON = option(argv, 'python', 'python3');
/** A request with no answer within this long counts as failed. */
const REQUEST_TIMEOUT_MS = 5_000;
/** How long the broker and the program get to come up. */
const START_TIMEOUT_MS = 15_000;

function waitFor(child, re, what) {
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`${what}: not ready in ${START_TIMEOUT_MS} ms: ${out}`)), START_TIMEOUT_MS);
    const on = (d) => {
      out += d;
      const m = re.exec(out);
      if (m) { clearTimeout(t); resolve(m); }
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.once('exit', (code) => { clearTimeout(t); reject(new Error(`${what} exited (${code}): ${out}`)); });
  });
}

/** One cell: a broker with the listener `spec`, the Python server under exec, CLIENTS keep-alive loops. */
async function cell(label, query) {
  const dir = tmpDir('pyka');
  const sock = path.join(dir, 'app.sock');
  const broker = spawn(process.execPath, [CLI, 'serve', sock, '--quiet', '--no-inherit', '--listen', `http=tcp://127.0.0.1:0${query}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const ready = await waitFor(broker, /http=tcp:\/\/127\.0\.0\.1:(\d+)/, 'broker');
  const port = Number(ready[1]);
  const app = spawn(process.execPath, [CLI, 'exec', sock, '--', PYTHON, path.join(ROOT, 'examples', 'python_server.py')], { stdio: ['ignore', 'pipe', 'pipe'] });
  app.stdout.resume();
  app.stderr.resume();
  // Ready: the first answer comes from the program (connections wait in the queue until it accepts).
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  const latencies = [];
  let ok = 0;
  let failed = 0;
  const get = () => new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      res.resume();
      res.on('end', () => { latencies.push(Number(process.hrtime.bigint() - t0) / 1e6); ok++; resolve(); });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => { failed++; resolve(); });
  });
  await get();
  ok = 0;
  latencies.length = 0;
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: CLIENTS }, async () => { while (Date.now() < end) await get(); }));
  agent.destroy();
  await stopChild(app);
  await stopChild(broker);
  latencies.sort((a, b) => a - b);
  const q = (p) => (latencies.length ? Number(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(2)) : null);
  return { label, spec: `tcp://127.0.0.1:0${query}`, requests: ok, failed, per_s: Math.round(ok / SECONDS), p50_ms: q(0.5), p99_ms: q(0.99) };
}

async function main() {
  const cells = [];
  cells.push(await cell('nagle (nodelay=0)', '?nodelay=0'));
  await sleep(200);
  cells.push(await cell('default (TCP_NODELAY)', ''));
  const [before, after] = cells;
  process.stdout.write(JSON.stringify({
    bench: 'python-keepalive',
    what: `examples/python_server.py under fdbroker exec, ${CLIENTS} keep-alive clients, one request in flight each, ${SECONDS} s per cell`,
    machine: machine(),
    cells,
    speedup: before.requests > 0 ? Number((after.requests / before.requests).toFixed(1)) : null,
  }, null, 2) + '\n');
}

main().catch((err) => { console.error(err); process.exit(1); });
