// Dev mode: `node --watch` restarts the app on every change while the port
// stays open, so the browser never sees "connection refused" (what systemfd
// does for Rust). The broker holds the socket; node --watch stops the old
// process (SIGTERM, and waits for it) before starting the new one, and
// connections that arrive in between wait in the accept queue.
//   npx fdbroker serve /tmp/dev.sock --listen http=tcp://127.0.0.1:3000 &
//   FDBROKER_SOCK=/tmp/dev.sock node --watch examples/dev.js
'use strict';
const http = require('node:http');
const { startGeneration } = require('fdbroker');

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK || '/tmp/dev.sock', { names: ['http'], label: 'dev', drainTimeout: 5_000, drainSpread: 0 });
  const server = http.createServer((req, res) => res.end(`${process.pid} gen ${gen.number} dev\n`));
  // node --watch sends SIGTERM: drain (no resets) and exit, so the next one starts.
  process.once('SIGTERM', () => gen.retire().then(() => process.exit(0)));
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
main().catch((err) => { console.error(`dev: ${err.code || ''} ${err.message}`); process.exit(1); });
