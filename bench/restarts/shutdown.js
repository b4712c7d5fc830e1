// The one shutdown every method's app uses, so that the restart benchmark
// compares restart methods and not shutdown code. Every app (fdbroker's
// generation, the naive app, SO_REUSEPORT, cluster workers, PM2's workers)
// stops the same way, with fdbroker's own drain() (dist/, the library's public
// export), which is the best shutdown we know for an HTTP server:
//   1. close only the listening handle (no new connections are accepted here);
//   2. answer further requests with `Connection: close`, each keep-alive
//      connection told at a random moment within DRAIN_SPREAD_MS;
//   3. let idle keep-alive connections end by the server's keepAliveTimeout,
//      IDLE_GRACE_MS, which clients are told in `Keep-Alive: timeout=5`;
//   4. at DRAIN_DEADLINE_MS, close whatever is left (counted as `forced`).
// Plain `server.close()` (what the other methods used before) also resets, at
// once, every keep-alive connection without a request in flight, including
// ones whose next request is on the wire (nodejs/node#51677).
//
// What starts the shutdown differs by how each method tells an app to stop,
// and is all handled here: SIGTERM (naive, SO_REUSEPORT, cluster primary to
// its workers), SIGINT (PM2's reload and stop), the IPC message 'shutdown'
// (the rolling cluster primary to its old worker), or a call (fdbroker's
// generation, on 'retire'). The process exits 0 once drained and prints
//   drained <pid> forced <n> ms <ms>
'use strict';
const { drain } = require('../../dist');

/** Connections are told to close at random moments over this window (the library's default). */
const DRAIN_SPREAD_MS = 1_000;
/** A connection still open this long after the shutdown began is closed by force. */
const DRAIN_DEADLINE_MS = 10_000;
/** server.keepAliveTimeout: an idle keep-alive connection is closed by the server after this (Node's default, set explicitly). */
const IDLE_GRACE_MS = 5_000;
/** A supervisor that waits for an app to exit must wait at least this long before it kills (PM2 kill_timeout, cluster-rolling). */
const KILL_AFTER_MS = DRAIN_DEADLINE_MS + 2_000;

/** Sets the idle grace and tracks connections, so `forced` counts all of them. Call right after createServer(). */
function prepare(server) {
  server.keepAliveTimeout = IDLE_GRACE_MS;
  const open = new Set();
  server.on('connection', (s) => { open.add(s); s.once('close', () => open.delete(s)); });
  server.__benchOpen = open;
  return server;
}

let stopping;
/** Drains `server`, runs `beforeExit` (e.g. leave the broker), prints "drained ...", exits 0. Idempotent. */
function shutdown(server, beforeExit) {
  if (stopping) return stopping;
  const open = server.__benchOpen;
  stopping = drain(server, { timeout: DRAIN_DEADLINE_MS, spread: DRAIN_SPREAD_MS }).then((r) => {
    // drain() counts the connections it tracked; ours were tracked from the start.
    const forced = Math.max(r.forced, r.ms >= DRAIN_DEADLINE_MS && open ? open.size : 0);
    if (beforeExit) beforeExit();
    process.stdout.write(`drained ${process.pid} forced ${forced} ms ${r.ms}\n`, () => process.exit(0));
  });
  return stopping;
}

/** Shut down on SIGTERM, SIGINT or the IPC message 'shutdown'. */
function shutdownOnSignal(server) {
  const stop = () => { shutdown(server); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('message', (m) => { if (m === 'shutdown' || (m && m.cmd === 'shutdown')) stop(); });
}

module.exports = { DRAIN_SPREAD_MS, DRAIN_DEADLINE_MS, IDLE_GRACE_MS, KILL_AFTER_MS, prepare, shutdown, shutdownOnSignal };
