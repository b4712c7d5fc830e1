// Cluster primary + WORKERS workers (default 2) listening on PORT via cluster
// (Node's default round-robin scheduling). Primary prints "ready" once every
// worker listens. SIGTERM to the primary: each worker gets SIGTERM and stops
// with the shared drain (shutdown.js, via naive-app.js); the primary exits
// when they have all exited.
'use strict';
const cluster = require('node:cluster');

if (cluster.isPrimary) {
  const n = Number(process.env.WORKERS || 2);
  let listening = 0;
  for (let i = 0; i < n; i++) cluster.fork();
  cluster.on('listening', () => { if (++listening === n) process.stdout.write(`ready ${process.pid}\n`); });
  let stopping = false;
  process.on('SIGTERM', () => {
    if (stopping) return;
    stopping = true;
    const ws = Object.values(cluster.workers);
    let left = ws.length;
    if (!left) process.exit(0);
    for (const w of ws) {
      w.once('exit', () => { if (--left === 0) process.exit(0); });
      w.process.kill('SIGTERM');
    }
  });
} else {
  require('./naive-app');
}
