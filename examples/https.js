// An https app as a generation (the same as http: attach, ready, drain).
//   TLS_KEY=key.pem TLS_CERT=cert.pem FDBROKER_SOCK=/tmp/app.sock node examples/https.js
'use strict';
const fs = require('node:fs');
const https = require('node:https');
const { startGeneration } = require('fdbroker');

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK || '/tmp/app.sock', { names: ['http'], label: 'https', drainTimeout: 10_000 });
  const server = https.createServer({ key: fs.readFileSync(process.env.TLS_KEY), cert: fs.readFileSync(process.env.TLS_CERT) },
    (req, res) => res.end(`${process.pid} gen ${gen.number} https\n`));
  gen.on('drained', (r) => { console.log(`drained ${process.pid} forced ${r.forced} ms ${r.ms}`); process.exit(0); });
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
main().catch((err) => { console.error(`https: ${err.code || ''} ${err.message}`); process.exit(1); });
