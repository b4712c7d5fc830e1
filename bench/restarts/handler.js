// The one HTTP app every method runs: hello-world, or with BUSY=1 a variant
// that burns ~1 ms of CPU per request (BUSY_US overrides the microseconds).
'use strict';
const http = require('node:http');

const BUSY_NS = process.env.BUSY === '1' ? BigInt(Number(process.env.BUSY_US || 1000) * 1000) : 0n;

function handler(req, res) {
  if (BUSY_NS) {
    const until = process.hrtime.bigint() + BUSY_NS;
    while (process.hrtime.bigint() < until) { /* burn CPU */ }
  }
  res.setHeader('Content-Type', 'text/plain');
  res.end('hello world\n');
}

function createServer() {
  return http.createServer(handler);
}

/** The plain graceful stop most apps have: on SIGTERM/SIGINT, server.close(), exit when closed (or after 5 s). */
function stopOnSignal(server, label) {
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    const t = setTimeout(() => { process.stdout.write(`forced-exit ${process.pid} ${label}\n`); process.exit(0); }, Number(process.env.STOP_TIMEOUT_MS || 5000));
    t.unref();
    server.close(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

module.exports = { handler, createServer, stopOnSignal };
