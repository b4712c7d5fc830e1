// drain(): stop a server accepting on its copy of a shared listener and let
// the connections it already has finish, without resetting any of them.
//
// Why not server.close(): since Node 18.19 http's close() also closes every
// connection without a request in flight at once (closeIdleConnections),
// including a keep-alive connection whose client is sending its next request
// right now and one just accepted whose request has not been read yet: the
// client sees a reset (nodejs/node#51677, #60617). drain() instead
//   1. closes only the listening handle (net.Server.prototype.close), so the
//      accept queue stays with the other holders of the socket;
//   2. answers further requests with `Connection: close`, so each keep-alive
//      client is told, in a response, to go elsewhere. The moment each
//      connection is told is spread over `spread` ms: all clients
//      reconnecting to the successor at once make a burst a busy process
//      serves one connection per event-loop turn (p99 of seconds);
//   3. lets idle keep-alive connections end through the server's own
//      keepAliveTimeout, which clients are told about in `Keep-Alive: timeout=N`
//      and expire before it (Node's agent does);
//   4. at the deadline, closes whatever is left and reports how many.
import type * as net from 'node:net';
import * as netModule from 'node:net';
import { DEFAULT_DRAIN_SPREAD_MS, DEFAULT_DRAIN_TIMEOUT_MS } from './defaults';

export interface DrainOptions {
  /** ms before connections still open are closed (default 30 s). */
  timeout?: number;
  /** ms over which keep-alive connections are told to close, spread at random (default 1 s; 0: all at once). */
  spread?: number;
}

export interface DrainResult {
  /** Connections still open at the deadline, closed by force. */
  forced: number;
  /** How long the drain took, in ms. */
  ms: number;
}

const tracked = new WeakMap<net.Server, Set<net.Socket>>();

/** Starts tracking a server's connections (attach() does this), so drain() can count and close them. */
export function trackConnections(server: net.Server): void {
  if (tracked.has(server)) return;
  const set = new Set<net.Socket>();
  tracked.set(server, set);
  server.on('connection', (sock: net.Socket) => {
    set.add(sock);
    sock.once('close', () => set.delete(sock));
  });
}

type HttpLike = net.Server & {
  closeAllConnections?: () => void;
  keepAliveTimeout?: number;
};

const draining = new WeakMap<net.Server, Promise<DrainResult>>();

/** Drains `server` (net, http or https). Idempotent: a second call returns the first's promise. */
export function drain(server: net.Server, options: DrainOptions = {}): Promise<DrainResult> {
  const existing = draining.get(server);
  if (existing) return existing;
  const started = Date.now();
  const timeout = options.timeout ?? DEFAULT_DRAIN_TIMEOUT_MS;
  const s = server as HttpLike;
  trackConnections(server);
  const conns = tracked.get(server)!;
  const isHttp = typeof s.closeAllConnections === 'function';
  if (isHttp) {
    const spread = Math.max(0, options.spread ?? DEFAULT_DRAIN_SPREAD_MS);
    const closeAt = new WeakMap<object, number>();
    // Runs before the application's handler: once a connection's moment has
    // come, the response carries Connection: close and Node closes the
    // connection after it. Until then it is served as before.
    server.prependListener('request' as 'connection', ((req: { socket: object }, res: { headersSent: boolean; setHeader: (k: string, v: string) => void }) => {
      let at = closeAt.get(req.socket);
      if (at === undefined) {
        at = started + Math.random() * spread;
        closeAt.set(req.socket, at);
      }
      if (Date.now() >= at && !res.headersSent) res.setHeader('Connection', 'close');
    }) as unknown as (s: net.Socket) => void);
  }
  const p = new Promise<DrainResult>((resolve) => {
    let done = false;
    const finish = (forced: number) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(poll);
      resolve({ forced, ms: Date.now() - started });
    };
    const timer = setTimeout(() => {
      const forced = conns.size;
      if (isHttp) s.closeAllConnections!();
      for (const c of conns) c.destroy();
      finish(forced);
    }, timeout);
    // The server's 'close' fires when the handle is closed and no connection is left.
    let poll: NodeJS.Timeout | undefined;
    if (server.listening) {
      netModule.Server.prototype.close.call(server, () => finish(0));
    } else {
      poll = setInterval(() => server.getConnections((_e, n) => { if (!n) finish(0); }), 50);
    }
  });
  draining.set(server, p);
  return p;
}
