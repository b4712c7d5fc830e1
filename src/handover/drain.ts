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
//   4. HTTP/2 sessions get the two-step GOAWAY (RFC 9113 §6.8): first one
//      with the largest stream id, so the client opens no new stream here
//      while those already on the wire are still served, then, a round trip
//      later (a PING's ack, or H2_FINAL_GOAWAY_MS), the final one; the
//      session closes once its streams are done;
//   5. long-lived connections the app registered with onDrain() (WebSockets,
//      SSE and other long responses) are handed to the app's hook, which ends
//      them the protocol's way (a 1012 close frame, an SSE `retry:`);
//   6. every such moment is spread over `spread` ms;
//   7. at the deadline, closes whatever is left and reports how many.
import type * as net from 'node:net';
import * as netModule from 'node:net';
import { DEFAULT_DRAIN_SPREAD_MS, DEFAULT_DRAIN_TIMEOUT_MS } from './defaults';
import { FdbrokerError } from '../protocol/errors';

/** HTTP/2: the final GOAWAY follows the first after the PING's ack, or after this many ms at most. */
export const H2_FINAL_GOAWAY_MS = 1_000;
/** HTTP/2: the largest stream id, the first GOAWAY's "last stream" (RFC 9113 §6.8). */
const H2_MAX_STREAM_ID = 2 ** 31 - 1;
const H2_NO_ERROR = 0;

export interface DrainOptions {
  /** ms before connections still open are closed (default 30 s). */
  timeout?: number;
  /** ms over which keep-alive connections, HTTP/2 sessions and onDrain() hooks are told to close, spread at random (default 1 s; 0: all at once). */
  spread?: number;
}

export interface DrainResult {
  /** Connections still open at the deadline, closed by force. */
  forced: number;
  /** How long the drain took, in ms. */
  ms: number;
  /** HTTP/2 sessions sent GOAWAY. */
  sessions: number;
  /** Long-lived connections handed to their onDrain() hook. */
  hooked: number;
}

/** What a server still holds (see holding()). */
export interface Holding {
  /** Accepted connections still open (every kind). */
  connections: number;
  /** Of those: HTTP/2 sessions. */
  sessions: number;
  /** Of those: upgraded connections (WebSocket, raw `upgrade`). */
  upgraded: number;
  /** Long-lived connections with an onDrain() hook not yet called. */
  hooked: number;
  /** drain() has started on this server. */
  draining: boolean;
}

interface H2SessionLike {
  closed: boolean;
  destroyed: boolean;
  socket: net.Socket;
  goaway(code: number, lastStreamID: number): void;
  ping(cb: (err: Error | null) => void): boolean;
  close(): void;
  once(ev: 'close', fn: () => void): void;
}

interface DrainState { started: number; spread: number; at: WeakMap<object, number> }

interface Tracked {
  sockets: Set<net.Socket>;
  sessions: Set<H2SessionLike>;
  upgraded: Set<net.Socket>;
  hooks: Map<net.Socket, () => void>;
  state?: DrainState;
  hooked: number;
  goaways: number;
}

const tracked = new WeakMap<net.Server, Tracked>();
/** Accepted sockets (raw and TLS) to their server's record. */
const ofSocket = new WeakMap<object, Tracked>();

/**
 * Starts tracking a server's connections (attach() does this), so drain() can
 * count and close them, send HTTP/2 sessions GOAWAY, and call onDrain()
 * hooks. Call it before the server accepts: connections from before are not seen.
 */
export function trackConnections(server: net.Server): void {
  if (tracked.has(server)) return;
  const t: Tracked = { sockets: new Set(), sessions: new Set(), upgraded: new Set(), hooks: new Map(), hooked: 0, goaways: 0 };
  tracked.set(server, t);
  server.on('connection', (sock: net.Socket) => {
    t.sockets.add(sock);
    ofSocket.set(sock, t);
    sock.once('close', () => { t.sockets.delete(sock); t.upgraded.delete(sock); t.hooks.delete(sock); });
  });
  // TLS servers: req.socket is the TLSSocket, not the accepted one.
  server.on('secureConnection' as 'connection', (tls: net.Socket) => {
    ofSocket.set(tls, t);
    tls.once('close', () => { t.hooks.delete(tls); t.upgraded.delete(tls); });
  });
  // HTTP/2 (http2.createServer / createSecureServer).
  server.on('session' as 'connection', ((session: H2SessionLike) => {
    t.sessions.add(session);
    session.once('close', () => t.sessions.delete(session));
    if (t.state) goawayAt(t, session);
  }) as unknown as (s: net.Socket) => void);
  // Upgraded connections are counted once the app handles 'upgrade' (a
  // listener of our own would make Node leave unhandled upgrades open).
  const onUpgrade = (_req: unknown, sock: net.Socket) => {
    t.upgraded.add(sock);
    sock.once('close', () => t.upgraded.delete(sock));
  };
  const watch = (ev: string | symbol) => {
    if (ev !== 'upgrade') return;
    server.off('newListener', watch);
    setImmediate(() => server.prependListener('upgrade' as 'connection', onUpgrade as unknown as (s: net.Socket) => void));
  };
  if (server.listenerCount('upgrade') > 0) watch('upgrade');
  else server.on('newListener', watch);
}

/**
 * Registers a long-lived connection (an upgraded WebSocket, an SSE or other
 * long response): when its server drains, at this connection's moment in the
 * spread window, `end()` is called once; it should end the connection the
 * protocol's way (a WebSocket close frame with 1012, an SSE `retry:` and the
 * end of the response). drain() waits for the connection to close and
 * destroys it at the deadline. `target` is the socket, or a request or
 * response (its `.socket`). Registered while the server already drains,
 * `end()` is called at the connection's moment, or at once if it has passed.
 * Throws ERR_FDBROKER_INVALID_ARGUMENT for a socket of an untracked server.
 */
export function onDrain(target: net.Socket | { socket: net.Socket | null }, end: () => void): void {
  const sock = ('socket' in target && !(target instanceof netModule.Socket) ? target.socket : target) as net.Socket | null;
  const t = sock ? ofSocket.get(sock) : undefined;
  if (!sock || !t) {
    throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT',
      'onDrain(): not a connection of a tracked server: attach the server with Listener.attach(), or call trackConnections(server) before it listens');
  }
  if (sock.destroyed) return;
  t.hooks.set(sock, end);
  if (t.state) hookAt(t, sock);
}

/** What `server` still holds: open connections by kind, and whether it drains. */
export function holding(server: net.Server): Holding {
  const t = tracked.get(server);
  if (!t) return { connections: 0, sessions: 0, upgraded: 0, hooked: 0, draining: draining.has(server) };
  return {
    connections: t.sockets.size, sessions: t.sessions.size, upgraded: t.upgraded.size,
    hooked: t.hooks.size, draining: t.state !== undefined,
  };
}

/** The moment (ms since the epoch) `key` is told to close, drawn once per drain. */
function momentOf(state: DrainState, key: object): number {
  let at = state.at.get(key);
  if (at === undefined) {
    at = state.started + Math.random() * state.spread;
    state.at.set(key, at);
  }
  return at;
}

function later(at: number, fn: () => void): void {
  const ms = at - Date.now();
  if (ms <= 0) setImmediate(fn);
  else setTimeout(fn, ms).unref();
}

function hookAt(t: Tracked, sock: net.Socket): void {
  later(momentOf(t.state!, sock), () => {
    const end = t.hooks.get(sock);
    if (!end || sock.destroyed) return;
    t.hooks.delete(sock);
    t.hooked++;
    end();
  });
}

/** The two-step GOAWAY at the session's moment; the session closes once its streams are done. */
function goawayAt(t: Tracked, session: H2SessionLike): void {
  later(momentOf(t.state!, session), () => {
    if (session.closed || session.destroyed) return;
    t.goaways++;
    session.goaway(H2_NO_ERROR, H2_MAX_STREAM_ID);
    let closed = false;
    const final = () => {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      if (!session.closed && !session.destroyed) session.close();
    };
    const timer = setTimeout(final, H2_FINAL_GOAWAY_MS);
    timer.unref();
    if (!session.ping(() => final())) final();
  });
}

type HttpLike = net.Server & {
  closeAllConnections?: () => void;
  keepAliveTimeout?: number;
};

const draining = new WeakMap<net.Server, Promise<DrainResult>>();

/** Drains `server` (net, http, https or http2). Idempotent: a second call returns the first's promise. */
export function drain(server: net.Server, options: DrainOptions = {}): Promise<DrainResult> {
  const existing = draining.get(server);
  if (existing) return existing;
  const started = Date.now();
  const timeout = options.timeout ?? DEFAULT_DRAIN_TIMEOUT_MS;
  const s = server as HttpLike;
  trackConnections(server);
  const t = tracked.get(server)!;
  const state: DrainState = { started, spread: Math.max(0, options.spread ?? DEFAULT_DRAIN_SPREAD_MS), at: new WeakMap() };
  t.state = state;
  // Runs before the application's handler: once an HTTP/1 connection's moment
  // has come, the response carries Connection: close and Node closes the
  // connection after it. Until then it is served as before. (HTTP/2 requests,
  // also through the compatibility API, are left to the GOAWAY.)
  server.prependListener('request' as 'connection', ((req: { socket: object; httpVersionMajor?: number }, res: { headersSent: boolean; setHeader: (k: string, v: string) => void }) => {
    if (req.httpVersionMajor !== 1) return;
    if (Date.now() >= momentOf(state, req.socket) && !res.headersSent) res.setHeader('Connection', 'close');
  }) as unknown as (s: net.Socket) => void);
  for (const session of t.sessions) goawayAt(t, session);
  for (const sock of t.hooks.keys()) hookAt(t, sock);
  const p = new Promise<DrainResult>((resolve) => {
    let done = false;
    const finish = (forced: number) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(poll);
      resolve({ forced, ms: Date.now() - started, sessions: t.goaways, hooked: t.hooked });
    };
    const timer = setTimeout(() => {
      const forced = t.sockets.size;
      if (typeof s.closeAllConnections === 'function') s.closeAllConnections();
      for (const c of t.sockets) c.destroy();
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
