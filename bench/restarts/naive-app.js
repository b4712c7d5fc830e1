// Naive method (and PM2's app, and each cluster worker of cluster-app.js and
// cluster-rolling.js): listen on PORT (through the cluster primary in a
// worker); SIGTERM, SIGINT or the IPC message 'shutdown' -> the shared
// drain (shutdown.js), exit when drained.
'use strict';
const { createServer } = require('./handler');
const { shutdownOnSignal } = require('./shutdown');

const server = createServer();
shutdownOnSignal(server);
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  process.stdout.write(`ready ${process.pid}\n`);
  // The bad version of the rollback-after-ready scenario: SIGKILL itself that long after ready.
  const die = Number(process.env.DIE_AFTER_READY_MS);
  if (die > 0) setTimeout(() => process.kill(process.pid, 'SIGKILL'), die);
});
