// Server-Sent Events on drain: end the stream with a `retry:` field (the
// reconnection time every EventSource honours) and close the connection, so
// the client reconnects, on a new connection, to the new version, instead of
// seeing the stream cut at the drain's deadline.
import type { ServerResponse } from 'node:http';
import { onDrain } from './drain';
import { FdbrokerError } from '../protocol/errors';

/** Default `retry:` sent when a stream ends on drain, in ms. */
export const SSE_DEFAULT_RETRY_MS = 1_000;

export interface EventStreamDrainOptions {
  /** Reconnection time sent as `retry:`, in ms (default 1000). */
  retry?: number;
  /** Called just before the stream ends, e.g. to send a last event. */
  beforeEnd?: () => void;
}

/** Ends the event stream `res` when its server drains: `retry: N`, the end of the response, and the end of the connection. */
export function endEventStreamOnDrain(res: ServerResponse, options: EventStreamDrainOptions = {}): void {
  const retry = options.retry ?? SSE_DEFAULT_RETRY_MS;
  if (!Number.isSafeInteger(retry) || retry < 0) throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `retry must be a whole number of ms, not ${retry}`);
  onDrain(res, () => {
    if (res.writableEnded) return;
    options.beforeEnd?.();
    // The response was sent keep-alive: close the connection after it, or the
    // client's reconnect could reuse it and reach this (draining) process.
    // (Taken now: Node detaches res.socket before 'finish' listeners run.)
    const sock = res.socket;
    res.once('finish', () => sock?.end());
    res.end(`retry: ${retry}\n\n`);
  });
}
