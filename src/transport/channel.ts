// A Channel is one connected AF_UNIX SOCK_SEQPACKET socket: whole messages in,
// whole messages out, each optionally carrying fds. Transport only: it knows
// nothing of message meanings; the protocol and the broker decide that.
//
// Fd ownership: fds passed to send() stay owned by the caller (the kernel
// gives the peer duplicates), and must stay open until the send completes;
// fds delivered with a 'message' event are owned by the listener of that event,
// which must close or keep every one of them.
import { EventEmitter } from 'node:events';
import { native, type NativePoller } from '../native/binding';
import { EAGAIN, ECONNRESET } from '../native/errno';
import { readSome } from './read-loop';
import { FdbrokerError, systemError } from '../protocol/errors';
import { END_TIMEOUT_MS, MESSAGES_PER_TURN } from './defaults';
import { MAX_FDS_PER_MESSAGE, MAX_MESSAGE_BYTES } from '../protocol/limits';

export interface ChannelOptions {
  /** Largest message accepted; a larger one is a truncation error. */
  maxMessageBytes?: number;
  /** Most fds accepted in one message (at most 253). */
  maxFdsPerMessage?: number;
  /** Messages waiting to be sent before send() fails with ERR_FDBROKER_UNREAD_REPLY. */
  maxQueuedMessages?: number;
  /** Messages read per readiness event, so one chatty peer cannot starve others. */
  messagesPerTurn?: number;
}

interface Pending { payload: Buffer; fds: number[] }

export interface ChannelEvents {
  message: [payload: Buffer, fds: number[]];
  error: [err: Error];
  close: [];
}

// One receive buffer per size for every channel in the process, not 64 KiB per
// channel: readSome() copies each payload out before emitting it, and nothing
// reads another channel while it runs, so the buffer is never shared by two
// messages at once. (A broker with 1,000 clients would otherwise hold 64 MB.)
const recvBuffers = new Map<number, Buffer>();
function sharedRecvBuffer(size: number): Buffer {
  let b = recvBuffers.get(size);
  if (!b) {
    b = Buffer.allocUnsafe(size);
    recvBuffers.set(size, b);
  }
  return b;
}

export class Channel extends EventEmitter<ChannelEvents> {
  readonly fd: number;
  private readonly poller: NativePoller;
  private readonly recvBuffer: Buffer;
  private readonly maxFds: number;
  private readonly maxQueued: number;
  private readonly perTurn: number;
  private readonly queue: Pending[] = [];
  private reading = false;
  private closed = false;
  private ending = false;
  private resetSeen = false;
  private polled = 0;

  /** Takes ownership of `fd`, a connected non-blocking SOCK_SEQPACKET socket. */
  constructor(fd: number, options: ChannelOptions = {}) {
    super();
    this.fd = fd;
    this.recvBuffer = sharedRecvBuffer(options.maxMessageBytes ?? MAX_MESSAGE_BYTES);
    this.maxFds = Math.min(options.maxFdsPerMessage ?? MAX_FDS_PER_MESSAGE, MAX_FDS_PER_MESSAGE);
    this.maxQueued = options.maxQueuedMessages ?? Infinity;
    this.perTurn = options.messagesPerTurn ?? MESSAGES_PER_TURN;
    this.poller = new (native().Poller)(fd, (status, events) => this.onPoll(status, events));
  }

  get isClosed(): boolean { return this.closed; }

  /** Starts delivering 'message' events. */
  resume(): void {
    if (this.closed || this.reading) return;
    this.reading = true;
    this.updatePoll();
  }

  /** Stops reading; messages wait in the kernel. */
  pause(): void {
    if (this.closed || !this.reading) return;
    this.reading = false;
    this.updatePoll();
  }

  /** Lets the process exit while this channel is open. */
  unref(): void { this.poller.unref(); }
  ref(): void { this.poller.ref(); }

  /**
   * Sends one message. Sends at once when the socket has room, otherwise queues.
   * Throws ERR_FDBROKER_TOO_MANY_FDS, ERR_FDBROKER_MESSAGE_TOO_LARGE or, when the
   * peer is not reading and the queue is full, ERR_FDBROKER_UNREAD_REPLY.
   */
  send(payload: Buffer, fds: number[] = []): void {
    if (this.closed || this.ending) throw new FdbrokerError('ERR_FDBROKER_CLOSED', 'the channel is closed');
    if (fds.length > MAX_FDS_PER_MESSAGE) {
      throw new FdbrokerError('ERR_FDBROKER_TOO_MANY_FDS',
        `${fds.length} fds in one message; the kernel allows at most ${MAX_FDS_PER_MESSAGE} (SCM_MAX_FD)`);
    }
    if (payload.length === 0 && fds.length === 0) {
      // A peer reads a zero-length message as the end of the stream.
      throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', 'an empty message cannot be sent: the peer would take it for a close');
    }
    if (payload.length > MAX_MESSAGE_BYTES) {
      throw new FdbrokerError('ERR_FDBROKER_MESSAGE_TOO_LARGE',
        `a ${payload.length}-byte message exceeds the ${MAX_MESSAGE_BYTES}-byte limit`);
    }
    if (this.queue.length === 0 && this.trySend(payload, fds)) return;
    if (this.closed) return;
    if (this.queue.length >= this.maxQueued) {
      throw new FdbrokerError('ERR_FDBROKER_UNREAD_REPLY',
        `the peer is not reading: ${this.queue.length} messages already wait`);
    }
    this.queue.push({ payload, fds });
    this.updatePoll();
  }

  /** Whether a message still queued (not yet given to the kernel) names `fd`: its owner must not close it yet. */
  queues(fd: number): boolean {
    return this.queue.some((p) => p.fds.includes(fd));
  }

  /** Closes once every queued message has been sent (or at once if none waits). */
  end(): void {
    if (this.closed) return;
    this.ending = true;
    this.reading = false;
    if (this.queue.length === 0) {
      this.close();
      return;
    }
    this.updatePoll();
    // A peer that never reads must not hold the socket open forever.
    setTimeout(() => this.close(), END_TIMEOUT_MS).unref();
  }

  /** Closes the socket. Idempotent; emits 'close' once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    // The poll handle must be stopped before its fd is closed (libuv's rule).
    this.poller.close();
    native().close(this.fd);
    process.nextTick(() => this.emit('close'));
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.close();
    this.emit('error', err);
  }

  /** true: sent (or failed and closed); false: EAGAIN, try later. */
  private trySend(payload: Buffer, fds: number[]): boolean {
    const r = native().sendmsg(this.fd, payload, fds);
    if (r >= 0) return true;
    if (r === EAGAIN) return false;
    this.fail(systemError(r, 'sendmsg'));
    return true;
  }

  private flush(): void {
    while (this.queue.length > 0 && !this.closed) {
      const next = this.queue[0]!;
      if (!this.trySend(next.payload, next.fds)) return;
      this.queue.shift();
    }
    if (this.ending && this.queue.length === 0) this.close();
  }

  private updatePoll(): void {
    if (this.closed) return;
    const c = native().constants;
    const want = (this.reading ? c.UV_READABLE | c.UV_DISCONNECT : 0) | (this.queue.length > 0 ? c.UV_WRITABLE : 0);
    if (want === this.polled) return;
    this.polled = want;
    const r = want === 0 ? this.poller.stop() : this.poller.start(want);
    if (r < 0) this.fail(systemError(r, 'uv_poll_start'));
  }

  private onPoll(status: number, events: number): void {
    if (this.closed) return;
    if (status < 0) {
      // The peer may have sent its last words (an error reply) before it
      // hung up: deliver what is queued before reporting the failure.
      if (this.reading) this.readSome();
      this.fail(systemError(status, 'uv_poll'));
      return;
    }
    const c = native().constants;
    if (events & c.UV_WRITABLE) this.flush();
    if (this.reading && events & (c.UV_READABLE | c.UV_DISCONNECT)) this.readSome();
    this.updatePoll();
  }

  private readSome(): void {
    readSome(this.fd, this.recvBuffer, this.maxFds, this.perTurn, {
      open: () => this.reading && !this.closed,
      error: (r) => {
        // A peer that closed with our messages unread (a broker refusing a
        // client before reading its hello) makes the kernel report ECONNRESET
        // once, before the messages it sent: read those (then EOF) first.
        if (r === ECONNRESET && !this.resetSeen) {
          this.resetSeen = true;
          return true;
        }
        this.fail(systemError(r, 'recvmsg'));
        return false;
      },
      message: (r) => {
        if (r.truncated) {
          this.fail(new FdbrokerError('ERR_FDBROKER_TRUNCATED',
            r.ctrunc
              ? `a message carried more fds than the ${this.maxFds} allowed; the ${r.closed} that arrived were closed`
              : `a message exceeded ${this.recvBuffer.length} bytes; its ${r.closed} fds were closed`));
          return false;
        }
        if (r.bytes === 0 && r.fds.length === 0) {
          this.close();
          return false;
        }
        const payload = Buffer.from(this.recvBuffer.subarray(0, r.bytes));
        if (this.listenerCount('message') === 0) {
          for (const fd of r.fds) native().close(fd);
        } else {
          this.emit('message', payload, r.fds);
        }
        return true;
      },
    });
  }
}
