// A Server-Sent Events app as a generation: /events streams "data: <pid> <n>"
// every 100 ms; on retire each stream ends with `retry: 200` (spread over the
// drain's window) and EventSource clients reconnect to the new version.
//   FDBROKER_SOCK=/tmp/app.sock node examples/sse.js
// Prints "ready <pid> gen <n>" and "drained <pid> forced <n> hooked <n> ms <n>".
'use strict';
const http = require('node:http');
const { startGeneration, endEventStreamOnDrain } = require('fdbroker');

const TICK_MS = 100;
const RETRY_MS = 200;

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK || '/tmp/app.sock', { names: ['http'], label: 'sse', drainTimeout: 10_000 });
  const server = http.createServer((req, res) => {
    if (req.url !== '/events') return res.end(`${process.pid} gen ${gen.number}\n`);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let n = 0;
    const tick = setInterval(() => res.write(`data: ${process.pid} ${n++}\n\n`), TICK_MS);
    res.on('close', () => clearInterval(tick));
    res.write(`data: ${process.pid} hello\n\n`);
    endEventStreamOnDrain(res, { retry: RETRY_MS, beforeEnd: () => clearInterval(tick) });
  });
  gen.on('drained', (r) => {
    console.log(`drained ${process.pid} forced ${r.forced} hooked ${r.hooked} ms ${r.ms}`);
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
main().catch((err) => { console.error(`sse: ${err.code || ''} ${err.message}`); process.exit(1); });
