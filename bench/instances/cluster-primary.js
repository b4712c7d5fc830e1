// Node cluster primary for bench/instances.js: argv[2] workers (round-robin,
// Node's default on Linux) running worker.js on PORT; says 'up' once all listen.
'use strict';
const cluster = require('node:cluster');
const path = require('node:path');

cluster.setupPrimary({ exec: path.join(__dirname, 'worker.js'), stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
const n = Number(process.argv[2]);
let up = 0;
for (let i = 0; i < n; i++) cluster.fork().on('listening', () => { if (++up === n) process.send('up'); });
process.on('SIGTERM', () => { for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL'); process.exit(0); });
