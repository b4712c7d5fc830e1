// A WebSocket app (the `ws` package) as a generation: on retire, each socket
// is closed with 1012 ("service restart"), spread over the drain's window, and
// clients reconnect to the new version. Echoes each message with this pid.
//   FDBROKER_SOCK=/tmp/app.sock node examples/ws.js
//   WS_NO_SERVER=1 ...   the same with a raw 'upgrade' handler (noServer mode)
//   WS_CLOSE_CODE=4000 ... close with the app's own code
// Prints "ready <pid> gen <n>" and "drained <pid> forced <n> hooked <n> ms <n>".
'use strict';
const http = require('node:http');
const { WebSocketServer } = require('ws');
const { startGeneration, closeWebSocketsOnDrain, closeWebSocketOnDrain } = require('fdbroker');

async function main() {
  const gen = await startGeneration(process.env.FDBROKER_SOCK || '/tmp/app.sock', { names: ['http'], label: 'ws', drainTimeout: 10_000 });
  const close = { code: Number(process.env.WS_CLOSE_CODE || 1012) };
  const server = http.createServer((req, res) => res.end(`${process.pid} gen ${gen.number}\n`));
  const echo = (ws) => ws.on('message', (m) => ws.send(`${process.pid} ${m}`));
  if (process.env.WS_NO_SERVER) {
    const wss = new WebSocketServer({ noServer: true });
    server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => {
      closeWebSocketOnDrain(ws, req, close);
      echo(ws);
    }));
  } else {
    const wss = closeWebSocketsOnDrain(new WebSocketServer({ server }), close);
    wss.on('connection', echo);
  }
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
main().catch((err) => { console.error(`ws: ${err.code || ''} ${err.message}`); process.exit(1); });
