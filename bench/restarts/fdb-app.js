// fdbroker method: joins the broker as a generation, serves, says ready.
// When a newer generation is ready this one is told to retire and stops with
// the same shutdown as every other method's app (shutdown.js: fdbroker's
// drain() with the bench's spread, idle grace and deadline), then leaves the
// broker and exits. (onRetire: 'none' so the generation does not run its own
// drain: the shutdown code is the bench's, shared by all methods.)
'use strict';
const { startGeneration } = require('../../dist');
const { createServer } = require('./handler');
const { shutdown } = require('./shutdown');

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK, { names: ['http'], label: 'bench', onRetire: 'none' });
  const server = createServer();
  gen.on('retire', () => shutdown(server, () => {
    for (const l of Object.values(gen.listeners)) l.close();
    gen.close();
  }));
  gen.listeners.http.attach(server, async () => {
    await gen.ready();
    process.stdout.write(`ready ${process.pid} gen ${gen.number}\n`);
  });
}
main().catch((err) => { process.stderr.write(`fdb-app: ${err.code || ''} ${err.message}\n`); process.exit(3); });
