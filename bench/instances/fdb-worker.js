// One instance of `fdbroker run --instances N --library` for
// bench/instances.js: the restarts app, answering with its pid (X-Pid), on
// the listener its slot joined with; says "ready <pid> gen <n>".
'use strict';
const http = require('node:http');
const { startGeneration } = require('../../dist');
const { handler } = require('../restarts/handler');

async function main() {
  const gen = await startGeneration(undefined, { names: ['http'], label: 'instances-bench' });
  const server = http.createServer((req, res) => {
    res.setHeader('X-Pid', String(process.pid));
    handler(req, res);
  });
  process.on('SIGTERM', () => { void gen.retire().then(() => process.exit(0)); });
  gen.listeners.http.attach(server, async () => {
    await gen.ready();
    process.stdout.write(`ready ${process.pid} gen ${gen.number}\n`);
  });
}
main().catch((err) => { process.stderr.write(`fdb-worker: ${err.code || ''} ${err.message}\n`); process.exit(3); });
