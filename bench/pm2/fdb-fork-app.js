// fdbroker under PM2 fork mode (bench/pm2.js): the bench's app (restarts/
// handler.js) as a generation of a broker that PM2 also runs. PM2's fork-mode
// reload stops this process (SIGINT) before it starts the next, so nothing
// retires it: it stops on SIGINT with the bench's shared shutdown
// (restarts/shutdown.js: fdbroker's drain()), then leaves the broker. A
// retire (a newer generation ready first) stops it the same way.
'use strict';
const { startGeneration } = require('../../dist');
const { createServer } = require('../restarts/handler');
const { shutdown } = require('../restarts/shutdown');

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK, { names: ['http'], label: 'pm2-fork', onRetire: 'none' });
  const server = createServer();
  const stop = () => shutdown(server, () => {
    for (const l of Object.values(gen.listeners)) l.close();
    gen.close();
  });
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  gen.on('retire', stop);
  gen.listeners.http.attach(server, async () => {
    await gen.ready();
    process.stdout.write(`ready ${process.pid} gen ${gen.number}\n`);
  });
}
main().catch((err) => { process.stderr.write(`fdb-fork-app: ${err.code || ''} ${err.message}\n`); process.exit(3); });
