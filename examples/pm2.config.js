// PM2 ecosystem file: the broker and the app, both in fork mode.
//   FDBROKER_SOCK=/tmp/app.sock PORT=8080 pm2 start examples/pm2.config.js
//   pm2 reload app
'use strict';
const path = require('node:path');

const sock = process.env.FDBROKER_SOCK || '/tmp/app.sock';
const port = process.env.PORT || '8080';

module.exports = {
  apps: [
    {
      name: 'fdbroker',
      // fdbroker's CLI, found as the app finds the library: this file works in
      // a clone of fdbroker and copied into an app that installed it.
      script: path.join(path.dirname(require.resolve('fdbroker/package.json')), 'bin', 'fdbroker.js'),
      args: ['serve', sock, '--listen', `http=tcp://127.0.0.1:${port}`, '--quiet'],
      exec_mode: 'fork',
      kill_timeout: 3000,
    },
    {
      name: 'app',
      script: path.join(__dirname, 'pm2-app.js'),
      exec_mode: 'fork',
      env: { FDBROKER_SOCK: sock },
      // More than the app's drainTimeout (8 s): PM2 SIGKILLs after this.
      kill_timeout: 10000,
    },
  ],
};
