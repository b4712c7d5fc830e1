// fdbroker with a Node cluster (the cluster-primary scenario): the primary is
// one generation. It adopts the broker's listener "http" and its WORKERS
// workers (default 2) listen on it through cluster (SCHED_NONE, so each worker
// accepts from the shared socket and queued connections stay in the kernel
// queue the next primary's workers accept from; src/cluster.ts). Prints
// "ready <pid> gen <n>" once every worker listens and the broker took ready.
// Told to retire (a newer primary is ready), the primary tells every worker
// 'shutdown' (the shared drain of shutdown.js, as every method's app), waits
// until they have exited, leaves the broker and exits.
'use strict';
const cluster = require('node:cluster');

cluster.schedulingPolicy = cluster.SCHED_NONE;

async function primary() {
  const { startGeneration, workerEnv } = require('../../dist');
  const gen = await startGeneration(process.env.FDBROKER_SOCK, { names: ['http'], label: 'bench cluster', onRetire: 'none' });
  const env = workerEnv(gen.listeners);
  const n = Number(process.env.WORKERS || 2);
  let listening = 0;
  const workers = [];
  for (let i = 0; i < n; i++) {
    const w = cluster.fork(env);
    workers.push(w);
    w.on('message', async (m) => {
      if (m === 'listening' && ++listening === n) {
        await gen.ready();
        process.stdout.write(`ready ${process.pid} gen ${gen.number}\n`);
      }
    });
  }
  gen.on('retire', () => {
    let left = workers.length;
    for (const w of workers) {
      w.once('exit', () => {
        if (--left > 0) return;
        for (const l of Object.values(gen.listeners)) l.close();
        gen.close();
        process.stdout.write(`drained ${process.pid}\n`, () => process.exit(0));
      });
      w.send('shutdown');
    }
  });
}

function worker() {
  const { listenViaPrimary } = require('../../dist');
  const { createServer } = require('./handler');
  const { shutdownOnSignal } = require('./shutdown');
  const server = createServer();
  shutdownOnSignal(server);
  listenViaPrimary(server, 'http', () => process.send('listening'));
}

(cluster.isPrimary ? primary() : Promise.resolve(worker())).catch((err) => {
  process.stderr.write(`fdb-cluster-app: ${err.code || ''} ${err.message}\n`);
  process.exit(3);
});
