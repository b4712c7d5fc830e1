// fdbroker method: joins the broker as a generation, serves, says ready.
// When a newer generation is ready this one is told to retire and stops with
// the same shutdown as every other method's app (shutdown.js: fdbroker's
// drain() with the bench's spread, idle grace and deadline), then leaves the
// broker and exits. (onRetire: 'none' so the generation does not run its own
// drain: the shutdown code is the bench's, shared by all methods.)
'use strict';
const { startGeneration } = require('../../dist');
const { createServer } = require('./handler');
const { shutdown } = require('./shutdown');

// BENCH_STANDBY=1 (the rollback-after-ready scenario): the library retires
// this generation itself (onRetire 'drain', its warm standby of the broker's
// window), so that it can resume when its successor dies; it prints
// `resumed <pid> <n>` each time. DIE_AFTER_READY_MS: SIGKILL itself that long
// after saying ready (the bad version of that scenario).
// BENCH_EXPOSE=PATH (the broker-restart scenario): once ready, also serve the
// listeners on PATH (gen.expose), so that a broker started after the running
// one was SIGKILLed takes them back (`fdbroker serve --adopt-from PATH`).
// Prints `rejoined <pid> <n>` each time it rejoins a broker (a takeover, or a
// broker restarted on the same path).
async function main() {
  const standby = process.env.BENCH_STANDBY === '1';
  const gen = await startGeneration(process.env.FDBROKER_SOCK, { names: ['http'], label: 'bench', onRetire: standby ? 'drain' : 'none' });
  const server = createServer();
  let exposed;
  let rejoined = 0;
  gen.on('rejoin', () => process.stdout.write(`rejoined ${process.pid} ${++rejoined}\n`));
  if (standby) {
    let resumed = 0;
    gen.on('resume', () => process.stdout.write(`resumed ${process.pid} ${++resumed}\n`));
  } else {
    gen.on('retire', () => shutdown(server, () => {
      exposed?.close();
      for (const l of Object.values(gen.listeners)) l.close();
      gen.close();
    }));
  }
  gen.listeners.http.attach(server, async () => {
    await gen.ready();
    if (process.env.BENCH_EXPOSE) exposed = gen.expose(process.env.BENCH_EXPOSE);
    process.stdout.write(`ready ${process.pid} gen ${gen.number}\n`);
    dieAfterReady();
  });
}

function dieAfterReady() {
  const ms = Number(process.env.DIE_AFTER_READY_MS);
  if (ms > 0) setTimeout(() => process.kill(process.pid, 'SIGKILL'), ms);
}
main().catch((err) => { process.stderr.write(`fdb-app: ${err.code || ''} ${err.message}\n`); process.exit(3); });
