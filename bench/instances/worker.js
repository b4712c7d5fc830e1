// One instance for bench/instances.js: serves restarts/handler.js on the
// listening socket it inherited at fd 3 (shared or one of a SO_REUSEPORT
// group, made by the bench as a broker would), or, as a Node cluster worker,
// on the cluster's port. Every answer names its pid (X-Pid), so the bench
// counts connections per instance.
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const { handler } = require('../restarts/handler');

const server = http.createServer((req, res) => {
  res.setHeader('X-Pid', String(process.pid));
  handler(req, res);
});
if (cluster.isWorker) server.listen(Number(process.env.PORT), '127.0.0.1', () => process.send?.('listening'));
else server.listen({ fd: 3 }, () => process.stdout.write(`listening ${process.pid}\n`));
