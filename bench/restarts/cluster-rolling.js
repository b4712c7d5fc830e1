// One long-lived cluster primary with WORKERS workers (default 2) on PORT.
// SIGUSR2 = rolling restart, one worker at a time: fork a new worker, wait for
// its 'listening', tell the old one to stop (IPC 'shutdown': the shared drain
// of shutdown.js, the same as every method's app), wait until it has exited;
// an old worker still alive KILL_AFTER_MS (drain deadline + 2 s) later is
// killed (SIGKILL). Prints "ready", then "rolled <n> forced <k>".
'use strict';
const cluster = require('node:cluster');
const { KILL_AFTER_MS } = require('./shutdown');

if (cluster.isPrimary) {
  const n = Number(process.env.WORKERS || 2);
  let forced = 0;
  let rolls = 0;
  const once = (w, events) => new Promise((resolve) => { for (const e of events) w.once(e, () => resolve(e)); });
  (async () => {
    const first = Array.from({ length: n }, () => cluster.fork());
    await Promise.all(first.map((w) => once(w, ['listening'])));
    process.stdout.write(`ready ${process.pid}\n`);
  })();
  let rolling = Promise.resolve();
  const retiring = new Set();
  process.on('SIGUSR2', () => {
    rolling = rolling.then(async () => {
      for (const old of Object.values(cluster.workers)) {
        if (!old || retiring.has(old.id)) continue;
        const fresh = cluster.fork();
        const r = await once(fresh, ['listening', 'exit']);
        if (r !== 'listening') throw new Error('new worker died before listening');
        retiring.add(old.id);
        const gone = once(old, ['exit']);
        const killer = setTimeout(() => { if (!old.isDead()) { forced++; old.process.kill('SIGKILL'); } }, KILL_AFTER_MS);
        old.once('exit', () => clearTimeout(killer));
        old.send('shutdown');
        await gone;
      }
      process.stdout.write(`rolled ${++rolls} forced ${forced}\n`);
    });
  });
  process.on('SIGTERM', () => { for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL'); process.exit(0); });
} else {
  require('./naive-app');
}
