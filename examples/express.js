// Express 5 as a generation: the app is a request handler, so hand
// http.createServer(app) to attach(); the generation drains it on retire.
//   FDBROKER_SOCK=/tmp/app.sock node examples/express.js
'use strict';
const http = require('node:http');
const express = require('express');
const { startGeneration } = require('fdbroker');

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK || '/tmp/app.sock', { names: ['http'], label: 'express', drainTimeout: 10_000 });
  const app = express();
  app.get('/', (req, res) => res.send(`${process.pid} gen ${gen.number} express\n`));
  gen.on('drained', (r) => { console.log(`drained ${process.pid} forced ${r.forced} ms ${r.ms}`); process.exit(0); });
  gen.listeners.http.attach(http.createServer(app), async () => {
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
main().catch((err) => { console.error(`express: ${err.code || ''} ${err.message}`); process.exit(1); });
