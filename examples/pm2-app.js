// An app run by PM2 in fork mode, with the broker under PM2 too:
//   pm2 start examples/pm2.config.js
//   pm2 reload app        # swaps versions with 0 failed requests
// PM2's fork-mode reload stops the old process (SIGINT) *before* starting the
// new one, so no newer generation retires it: drain on PM2's stop signal
// instead, within PM2's kill_timeout. Between the old one's exit and the new
// one's listen, connections wait in the broker's accept queue.
'use strict';
const http = require('node:http');
const { startGeneration } = require('fdbroker');

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK || '/tmp/app.sock', { names: ['http'], label: 'pm2-app', drainTimeout: 8_000 });
  const server = http.createServer((req, res) => res.end(`${process.pid} gen ${gen.number} pm2\n`));
  // SIGINT: PM2's stop signal (kill_timeout must exceed drainTimeout).
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => gen.retire().then(() => process.exit(0)));
  gen.on('drained', () => process.exit(0));
  gen.listeners.http.attach(server, async () => {
    try {
      await gen.ready();
    } catch (err) {
      // Refused (a newer version serves) or closed: serve on until told to retire.
      console.error(`not ready ${process.pid}: ${err.code} ${err.message}`);
      return;
    }
    console.log(`ready ${process.pid} gen ${gen.number}`);
  });
}
main().catch((err) => { console.error(`pm2-app: ${err.code || ''} ${err.message}`); process.exit(1); });
