// Hono on Node (@hono/node-server) as a generation: createAdaptorServer()
// builds the http.Server without listening; attach() starts it.
//   FDBROKER_SOCK=/tmp/app.sock node examples/hono.js
'use strict';
const { Hono } = require('hono');
const { createAdaptorServer } = require('@hono/node-server');
const { startGeneration } = require('fdbroker');

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK || '/tmp/app.sock', { names: ['http'], label: 'hono', drainTimeout: 10_000 });
  const app = new Hono();
  app.get('/', (c) => c.text(`${process.pid} gen ${gen.number} hono\n`));
  gen.on('drained', (r) => { console.log(`drained ${process.pid} forced ${r.forced} ms ${r.ms}`); process.exit(0); });
  gen.listeners.http.attach(createAdaptorServer({ fetch: app.fetch }), async () => {
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
main().catch((err) => { console.error(`hono: ${err.code || ''} ${err.message}`); process.exit(1); });
