// An HTTP/2 app as a generation: on retire, each session gets the two-step
// GOAWAY (streams in flight finish, clients open new ones on the new version).
//   FDBROKER_SOCK=/tmp/app.sock node examples/http2.js                 # h2c
//   TLS_KEY=key.pem TLS_CERT=cert.pem FDBROKER_SOCK=... node examples/http2.js   # h2 over TLS
// Prints "ready <pid> gen <n>" and, when a newer version is ready and this one
// has drained, "drained <pid> forced <n> sessions <n> ms <n>".
'use strict';
const fs = require('node:fs');
const http2 = require('node:http2');
const { startGeneration } = require('fdbroker');

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK || '/tmp/app.sock', { names: ['http'], label: 'http2', drainTimeout: 10_000 });
  const server = process.env.TLS_KEY
    ? http2.createSecureServer({ key: fs.readFileSync(process.env.TLS_KEY), cert: fs.readFileSync(process.env.TLS_CERT) })
    : http2.createServer();
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'text/plain' });
    stream.end(`${process.pid} gen ${gen.number}\n`);
  });
  gen.on('drained', (r) => {
    console.log(`drained ${process.pid} forced ${r.forced} sessions ${r.sessions} ms ${r.ms}`);
    process.exit(0);
  });
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
main().catch((err) => { console.error(`http2: ${err.code || ''} ${err.message}`); process.exit(1); });
