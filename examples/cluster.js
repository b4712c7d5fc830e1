// A Node cluster app as one generation: the primary joins the broker (with no
// listeners of its own) and supervises; each worker adopts the listener from
// the broker and serves it itself, so the kernel spreads connections over
// the workers and no connection passes through the primary.
//   fdbroker serve /tmp/app.sock --listen http=tcp://127.0.0.1:8080
//   FDBROKER_SOCK=/tmp/app.sock WORKERS=2 node examples/cluster.js   # the same for every new version
// The primary says ready once every worker listens, which retires the
// previous version; told to retire, it has every worker drain (the library's
// drain(): Connection: close, spread over 1 s) and exit, then leaves. A
// worker that dies while serving is replaced; one that dies before ready
// fails the start (exit 1: the previous version serves on).
// Prints "ready <pid> gen <n>" and "drained <pid> workers <n>".
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const { startGeneration, adoptListeners, drain } = require('fdbroker');

const SOCK = process.env.FDBROKER_SOCK || '/tmp/app.sock';
const WORKERS = Number(process.env.WORKERS || 2);
/** A worker's drain deadline; the primary waits for its workers as long. */
const DRAIN_TIMEOUT_MS = 10_000;

async function primary() {
  const gen = await startGeneration(SOCK, { names: [], onRetire: 'none', label: `cluster x${WORKERS}` });
  let retiring = false;
  let ready = false;
  const fork = () => {
    const w = cluster.fork();
    w.on('message', (m) => { if (m === 'listening') onListening(); });
    return w;
  };
  let listening = 0;
  const onListening = async () => {
    if (ready || ++listening < WORKERS) return;
    ready = true;
    try {
      await gen.ready();
    } catch (err) {
      // Refused (a newer version serves) or closed: serve on until told to retire.
      console.error(`not ready ${process.pid}: ${err.code} ${err.message}`);
      return;
    }
    console.log(`ready ${process.pid} gen ${gen.number}`);
  };
  cluster.on('exit', (w, code, signal) => {
    if (retiring) return;
    if (!ready) {
      console.error(`cluster: worker ${w.process.pid} exited (${code ?? signal}) before ready`);
      process.exit(1);
    }
    fork();
  });
  for (let i = 0; i < WORKERS; i++) fork();
  gen.on('retire', () => {
    retiring = true;
    const workers = Object.values(cluster.workers);
    let left = workers.length;
    for (const w of workers) {
      w.once('exit', () => {
        if (--left > 0) return;
        gen.close();
        console.log(`drained ${process.pid} workers ${workers.length}`);
        process.exit(0);
      });
      w.send('drain');
    }
  });
}

async function worker() {
  const server = http.createServer((req, res) => res.end(`${process.ppid} worker ${process.pid}\n`));
  process.on('message', async (m) => {
    if (m !== 'drain') return;
    await drain(server, { timeout: DRAIN_TIMEOUT_MS });
    process.exit(0);
  });
  const { http: listener } = await adoptListeners(SOCK, { names: ['http'] });
  listener.attach(server, () => process.send('listening'));
}

(cluster.isPrimary ? primary() : worker()).catch((err) => {
  console.error(`cluster: ${err.code || ''} ${err.message}`);
  process.exit(1);
});
