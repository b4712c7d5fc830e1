// Naive method (and PM2's app): listen on PORT; SIGTERM/SIGINT -> server.close().
// Also what each cluster worker runs (cluster-app.js).
'use strict';
const { createServer, stopOnSignal } = require('./handler');

const server = createServer();
stopOnSignal(server, 'naive');
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  process.stdout.write(`ready ${process.pid}\n`);
});
