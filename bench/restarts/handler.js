// The one HTTP app every method runs: hello-world, or with BUSY=1 a variant
// that burns ~1 ms of CPU per request (BUSY_US overrides the microseconds:
// the busy-accept scenario uses 5,000). Every server made here stops the
// same way, whatever the method: see shutdown.js.
'use strict';
const http = require('node:http');
const { prepare } = require('./shutdown');

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
  return prepare(http.createServer(handler));
}

module.exports = { handler, createServer };
