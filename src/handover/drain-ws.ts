// WebSockets on drain: close each one with 1012 ("service restart", RFC 6455
// registry) or a code the app chooses, at its moment in the drain's spread
// window, so that clients reconnect (to the new version) instead of seeing
// 1006 when the deadline cuts the connection. Written against the `ws`
// package's shapes, without depending on it.
import type { IncomingMessage } from 'node:http';
import { onDrain } from './drain';
import { FdbrokerError } from '../protocol/errors';

/** Close code 1012, "service restart": the server restarts, reconnect. */
export const WS_SERVICE_RESTART = 1012;
const DEFAULT_REASON = 'service restart';
/** Longest close reason: a close frame's payload is at most 125 bytes, 2 of them the code. */
const MAX_REASON_BYTES = 123;

export interface WebSocketDrainOptions {
  /** Close code (default 1012): 1000-1014 except 1004-1006, or 3000-4999. */
  code?: number;
  /** Close reason, at most 123 bytes (default "service restart"). */
  reason?: string;
}

interface WebSocketLike { close(code?: number, reason?: string): void }
interface WebSocketServerLike { on(event: 'connection', fn: (ws: WebSocketLike, req: IncomingMessage) => void): unknown }

function checked(options: WebSocketDrainOptions): { code: number; reason: string } {
  const code = options.code ?? WS_SERVICE_RESTART;
  const reason = options.reason ?? DEFAULT_REASON;
  const valid = Number.isInteger(code) && ((code >= 1000 && code <= 1014 && (code < 1004 || code > 1006)) || (code >= 3000 && code <= 4999));
  if (!valid) throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `WebSocket close code ${code} cannot be sent: use 1012 (service restart), 1001, or 3000-4999`);
  if (Buffer.byteLength(reason) > MAX_REASON_BYTES) throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `WebSocket close reason is longer than ${MAX_REASON_BYTES} bytes`);
  return { code, reason };
}

/** Closes one WebSocket (`ws`'s, or anything with close(code, reason)) when its server drains. `req` is the upgrade request. */
export function closeWebSocketOnDrain(ws: WebSocketLike, req: IncomingMessage, options: WebSocketDrainOptions = {}): void {
  const { code, reason } = checked(options);
  onDrain(req, () => ws.close(code, reason));
}

/** Closes every WebSocket a `ws` WebSocketServer accepts when its HTTP server drains. Returns `wss`. */
export function closeWebSocketsOnDrain<T extends WebSocketServerLike>(wss: T, options: WebSocketDrainOptions = {}): T {
  const opts = checked(options);
  wss.on('connection', (ws, req) => closeWebSocketOnDrain(ws, req, opts));
  return wss;
}
