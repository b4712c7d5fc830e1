// The quick-start app: a generation. It joins the broker, serves the "http"
// listener and says ready; when a newer version says ready, the broker
// retires it: it stops accepting, finishes what it accepted, and exits. So a
// deploy (examples/blue-green.sh, `systemctl start node-app@v2`) replaces it.
//   FDBROKER_SOCK=/tmp/app.sock APP_VERSION=v1 node examples/app.js
// SIGTERM or SIGINT (a stop by hand, `systemctl stop`) drains it the same way.
'use strict';
const http = require('node:http');
const { startGeneration } = require('fdbroker');

const sock = process.env.FDBROKER_SOCK || '/tmp/app.sock';
const version = process.env.APP_VERSION || 'v1';

async function main() {
  const gen = await startGeneration(sock, { names: ['http'], label: version });
  const server = http.createServer((req, res) => res.end(`hello from ${version} (pid ${process.pid})\n`));
  // attach() = server.listen({ fd }, backlog): keeps the broker's backlog.
  gen.listeners.http.attach(server, () => {
    gen.ready().then(
      () => console.log(`${version}: serving on port ${gen.listeners.http.port}, pid ${process.pid}, generation ${gen.number}`),
      // Refused: a newer version is ready already, or this one was too slow. Leave; the newer one serves.
      (err) => { console.error(`${version}: not ready: ${err.code}: ${err.message}`); process.exit(1); });
  });
  // Retired by a newer version (after the broker's standby window): drained, leave.
  gen.on('drained', () => process.exit(0));
  const stop = () => gen.retire().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err) => {
  console.error(`${version}: ${err.code || 'error'}: ${err.message}`);
  process.exit(1);
});
