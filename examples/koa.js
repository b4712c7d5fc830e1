// Koa as a generation: attach http.createServer(app.callback()).
//   FDBROKER_SOCK=/tmp/app.sock node examples/koa.js
'use strict';
const http = require('node:http');
const Koa = require('koa');
const { startGeneration } = require('fdbroker');

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK || '/tmp/app.sock', { names: ['http'], label: 'koa', drainTimeout: 10_000 });
  const app = new Koa();
  app.use((ctx) => { ctx.body = `${process.pid} gen ${gen.number} koa\n`; });
  gen.on('drained', (r) => { console.log(`drained ${process.pid} forced ${r.forced} ms ${r.ms}`); process.exit(0); });
  gen.listeners.http.attach(http.createServer(app.callback()), async () => {
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
main().catch((err) => { console.error(`koa: ${err.code || ''} ${err.message}`); process.exit(1); });
