// Fastify 5 as a generation. Fastify must not listen itself: await ready()
// (plugins loaded, routes compiled), then attach(fastify.server). On retire,
// drain first (gen.retire(): no resets), then fastify.close(), which runs the
// app's onClose hooks (database pools and the like); fastify.close() alone
// would close idle keep-alive connections under clients that are sending.
//   FDBROKER_SOCK=/tmp/app.sock node examples/fastify.js
'use strict';
const Fastify = require('fastify');
const { startGeneration } = require('fdbroker');

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK || '/tmp/app.sock', {
    names: ['http'], label: 'fastify', drainTimeout: 10_000, onRetire: 'none',
  });
  const app = Fastify();
  app.get('/', async () => `${process.pid} gen ${gen.number} fastify\n`);
  app.addHook('onClose', async () => console.log(`onClose ${process.pid}`));
  await app.ready();
  gen.on('retire', async () => {
    const r = await gen.retire();
    await app.close();
    console.log(`drained ${process.pid} forced ${r.forced} ms ${r.ms}`);
    process.exit(0);
  });
  gen.listeners.http.attach(app.server, async () => {
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
main().catch((err) => { console.error(`fastify: ${err.code || ''} ${err.message}`); process.exit(1); });
