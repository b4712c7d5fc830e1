// The quick-start app: adopt the "http" listener from a broker and serve.
//   FDBROKER_SOCK=/tmp/app.sock APP_VERSION=v1 node examples/app.js
// On SIGTERM it stops accepting (the broker and the next process keep the
// socket), answers what it already accepted, and exits.
'use strict';
const http = require('node:http');
const net = require('node:net');
const { adoptListeners } = require('fdbroker');

const sock = process.env.FDBROKER_SOCK || '/tmp/app.sock';
const version = process.env.APP_VERSION || 'v1';

async function main() {
  const { http: listener } = await adoptListeners(sock, { names: ['http'] });
  let draining = false;
  const server = http.createServer((req, res) => {
    if (draining) res.setHeader('Connection', 'close');
    res.end(`hello from ${version} (pid ${process.pid})\n`);
  });
  // attach() = server.listen({ fd }, backlog): keeps the broker's backlog.
  listener.attach(server, () => console.log(`${version}: serving on port ${listener.port}, pid ${process.pid}`));

  process.on('SIGTERM', () => {
    draining = true;
    // Close only this process's copy of the listener; let accepted requests finish.
    net.Server.prototype.close.call(server, () => process.exit(0));
    setTimeout(() => server.closeAllConnections(), 5000).unref();
  });
}

main().catch((err) => {
  console.error(`${version}: ${err.code || 'error'}: ${err.message}`);
  process.exit(1);
});
