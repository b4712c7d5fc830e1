// fdbroker method: joins the broker as a generation, serves, says ready;
// drains (fdbroker's drain()) and exits when a newer generation is ready.
'use strict';
const { startGeneration } = require('../../dist');
const { createServer } = require('./handler');

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK, { names: ['http'], label: 'bench', drainTimeout: 10_000 });
  const server = createServer();
  gen.on('drained', (r) => { process.stdout.write(`drained ${process.pid} forced ${r.forced} ms ${r.ms}\n`); process.exit(0); });
  gen.listeners.http.attach(server, async () => {
    await gen.ready();
    process.stdout.write(`ready ${process.pid} gen ${gen.number}\n`);
  });
}
main().catch((err) => { process.stderr.write(`fdb-app: ${err.code || ''} ${err.message}\n`); process.exit(3); });
