// The Acceptor accepts on the broker's control socket (a listening AF_UNIX
// SOCK_SEQPACKET socket) and hands each connection on. Transport only: where
// the socket is bound, and what happens to a stale or live path, is
// broker/control-path.ts.
import * as fs from 'node:fs';
import { EventEmitter } from 'node:events';
import { native, type NativePoller } from '../native/binding';
import { EAGAIN, EINTR } from '../native/errno';
import { systemError } from '../protocol/errors';
import { ACCEPT_RETRY_MS, ACCEPTS_PER_TURN } from './defaults';

/** Something held for the acceptor's life and released when it closes (the path's lock). */
export interface PathLock { release(): void }

/** The peer's SO_PEERCRED, or a negative errno when it could not be read. */
export type PeerCred = { pid: number; uid: number; gid: number } | number;

/**
 * Decides at accept, from the peer's credentials alone, whether a connection
 * may stay. A refusal is a reason (`code`) and the one message (`reply`,
 * encoded) sent before the connection is closed; no other state is made.
 */
export type Admission = (cred: PeerCred) => { code: string; reply: Buffer } | undefined;

export interface AcceptorEvents {
  /** A new connection, admitted; the listener owns `fd`. */
  connection: [fd: number, cred: PeerCred];
  /** A connection refused by `admit`: its reply was sent (best effort) and it is closed already. */
  refused: [cred: PeerCred, code: string];
  /** A non-fatal accept error (e.g. EMFILE): accepting resumes after ACCEPT_RETRY_MS. */
  warning: [err: Error];
}

export class Acceptor extends EventEmitter<AcceptorEvents> {
  readonly path: string;
  readonly fd: number;
  private readonly poller: NativePoller;
  private readonly ino: number;
  private readonly dev: number;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Checked for each connection right after accept (see Admission); none: every connection is admitted. */
  admit: Admission | undefined;

  /**
   * Takes `fd`, a listening socket bound at `path`, and accepts on it. The
   * acceptor owns `fd` and `lock` (released on close) from the call on.
   * `file` is the socket file the bind created (else: what `path` names now).
   */
  constructor(path: string, fd: number, private lock: PathLock | undefined, file?: { dev: number; ino: number }) {
    super();
    this.path = path;
    this.fd = fd;
    const st = file ?? fs.lstatSync(path);
    this.ino = st.ino;
    this.dev = st.dev;
    this.poller = new (native().Poller)(fd, (status) => this.onReadable(status));
    this.poller.start(native().constants.UV_READABLE);
  }

  /** Moves the path's lock (if this acceptor holds it) to `next`, which replaces this one. */
  passLockTo(next: Acceptor): void {
    if (next.lock === undefined) {
      next.lock = this.lock;
      this.lock = undefined;
    }
  }

  /** Holds `lock` from now on (released on close), if this acceptor holds none yet; otherwise releases it. */
  holdLock(lock: PathLock): void {
    if (this.lock === undefined && !this.closed) this.lock = lock;
    else lock.release();
  }

  /** Whether `path` still names this socket (a successor may have renamed its own over it). */
  ownsPath(): boolean {
    try {
      const st = fs.lstatSync(this.path);
      return st.ino === this.ino && st.dev === this.dev;
    } catch {
      return false;
    }
  }

  /**
   * Stops accepting, closes the socket and unlinks the path if it is still
   * this socket's (same dev and inode). Returns whether it unlinked the path.
   */
  close(): boolean {
    if (this.closed) return false;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.poller.close();
    let removed = false;
    try {
      if (this.ownsPath()) {
        fs.unlinkSync(this.path);
        removed = true;
      }
    } catch {
      // Already gone, or replaced by a successor: leave it.
    }
    native().close(this.fd);
    this.lock?.release();
    this.lock = undefined;
    return removed;
  }

  private onReadable(status: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.emit('warning', systemError(status, 'uv_poll'));
      return;
    }
    const n = native();
    // At most ACCEPTS_PER_TURN, in one native call: the poll is level-triggered,
    // so what is left is accepted on the next turn, after other clients' messages.
    const batch = n.acceptBatch(this.fd, ACCEPTS_PER_TURN);
    const k = (batch.length - 1) / 4;
    // Refused connections, by reply: each group is answered and closed in one native call.
    const refused = new Map<Buffer, number[]>();
    const refusals: Array<[PeerCred, string]> = [];
    // batch[0, done) are accounted for: closed, refused (in `refused`), or handed on.
    let done = 0;
    try {
      for (let i = 0; i < k; i++) {
        const cfd = batch[4 * i]!;
        const pid = batch[4 * i + 1]!;
        const cred: PeerCred = pid < 0 ? pid : { pid, uid: batch[4 * i + 2]! >>> 0, gid: batch[4 * i + 3]! >>> 0 };
        if (this.closed) {
          n.close(cfd);
          done = i + 1;
          continue;
        }
        const refusal = this.admit?.(cred);
        done = i + 1;
        if (refusal) {
          // The accepted socket is non-blocking and its peer's queue empty: the reply fits, and
          // stays readable by the peer after close (EPIPE on its hello, then the reason).
          const fds = refused.get(refusal.reply);
          if (fds) fds.push(cfd);
          else refused.set(refusal.reply, [cfd]);
          refusals.push([cred, refusal.code]);
        } else {
          this.emit('connection', cfd, cred); // the listener owns cfd from here, even if it throws
        }
      }
    } finally {
      // Something threw (admit, a 'connection' listener): what was not handed on is closed, not leaked.
      for (let j = done; j < k; j++) n.close(batch[4 * j]!);
      for (const [reply, fds] of refused) n.replyAndClose(Int32Array.from(fds), reply);
    }
    for (const [cred, code] of refusals) this.emit('refused', cred, code);
    if (this.closed) return;
    const end = batch[batch.length - 1]!;
    if (end === 0 || end === EAGAIN || end === EINTR) return;
    const err = systemError(end, 'accept', this.path);
    // EMFILE/ENFILE/ENOBUFS/ENOMEM: leave the connection queued (a Unix socket
    // does not time out) and try again shortly instead of spinning.
    this.poller.stop();
    this.retryTimer = setTimeout(() => {
      if (!this.closed) this.poller.start(n.constants.UV_READABLE);
    }, ACCEPT_RETRY_MS);
    this.emit('warning', err);
  }
}
