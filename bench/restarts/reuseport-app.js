// SO_REUSEPORT method: each process opens its own listener on PORT with
// SO_REUSEPORT, so a new one can bind while the old one still listens.
// Node 20 has no server.listen({ reusePort }) (it is ignored), so the listener
// is made with fdbroker's native layer: socket/setsockopt/bind/listen, then
// server.listen({ fd }, 511). REUSEPORT_NATIVE=0 uses Node's own option.
// Stop: SIGTERM -> the shared drain (shutdown.js), exit when drained.
'use strict';
const { createServer } = require('./handler');
const { shutdownOnSignal } = require('./shutdown');

const port = Number(process.env.PORT);
const server = createServer();
shutdownOnSignal(server);
const ready = () => {
  process.stdout.write(`ready ${process.pid}\n`);
  // The bad version of the rollback-after-ready scenario: SIGKILL itself that long after ready.
  const die = Number(process.env.DIE_AFTER_READY_MS);
  if (die > 0) setTimeout(() => process.kill(process.pid, 'SIGKILL'), die);
};
if (process.env.REUSEPORT_NATIVE === '0') {
  server.listen({ port, host: '127.0.0.1', reusePort: true }, ready);
} else {
  const { native } = require('../../dist/native/binding');
  const n = native();
  const c = n.constants;
  const check = (r, what) => { if (typeof r === 'number' && r < 0) { process.stderr.write(`reuseport-app: ${what} failed: errno ${-r}\n`); process.exit(3); } return r; };
  const fd = check(n.socket(c.AF_INET, c.SOCK_STREAM), 'socket');
  check(n.setsockoptInt(fd, c.SOL_SOCKET, c.SO_REUSEADDR, 1), 'SO_REUSEADDR');
  check(n.setsockoptInt(fd, c.SOL_SOCKET, c.SO_REUSEPORT, 1), 'SO_REUSEPORT');
  check(n.bind(fd, { family: 'inet', address: '127.0.0.1', port }), 'bind');
  check(n.listen(fd, 511), 'listen');
  server.listen({ fd }, 511, ready);
}
