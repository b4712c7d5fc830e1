// A NotifySocket is the receiving end of the sd_notify protocol: an AF_UNIX
// SOCK_DGRAM socket bound in a fresh private directory (mode 0700), whose path
// a program is given as NOTIFY_SOCKET. Each datagram is newline-separated
// KEY=VALUE lines. READY=1, STOPPING=1 and STATUS=... are reported; every other
// line is ignored. Node's dgram module cannot do AF_UNIX, so this uses the
// native layer (socket, bind, recvmsg, Poller), as Channel does.
//
// Access: any process that can reach the path may send (systemd's
// NotifyAccess=all): the directory is the caller's only (0700), so that is
// any process of the caller's uid (not only the program's process tree) and
// root. Helpers such as `systemd-notify` send from their own pid, so a check
// on the sender's pid would refuse them.
//
// Fd ownership: fds that arrive on a datagram (FDSTORE=1, or the pipe of
// sd_notify_barrier()'s BARRIER=1) are closed at once. Closing them is also
// what releases a barrier.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native, type NativePoller } from '../native/binding';
import { MAX_SOCKET_PATH_BYTES } from '../native/errno';
import { readSome } from '../transport/read-loop';
import { FdbrokerError, systemError } from '../protocol/errors';
import { MAX_FDS_PER_MESSAGE } from '../protocol/limits';
import { MESSAGES_PER_TURN } from '../transport/defaults';
import { NOTIFY_MAX_DATAGRAM_BYTES } from './defaults';

export interface NotifyEvents {
  /** READY=1 arrived (every time it does). */
  ready: [];
  /** STOPPING=1 arrived. */
  stopping: [];
  /** STATUS=... arrived; also kept in `status`. */
  status: [text: string];
  /** The socket failed; it is closed. */
  error: [err: Error];
}

export interface NotifySocketOptions {
  /** Directory in which the private directory is made (default os.tmpdir()). */
  parent?: string;
}

export class NotifySocket extends EventEmitter<NotifyEvents> {
  /** The socket's path: give it to the program as NOTIFY_SOCKET. */
  readonly path: string;
  /** The private directory holding the socket; removed by close(). */
  readonly dir: string;
  /** The last STATUS= text received. */
  status: string | undefined;
  /** Whether READY=1 / STOPPING=1 have been received. */
  isReady = false;
  isStopping = false;
  private readonly fd: number;
  private readonly poller: NativePoller;
  private readonly buffer = Buffer.allocUnsafe(NOTIFY_MAX_DATAGRAM_BYTES);
  private closed = false;

  private constructor(dir: string, sockPath: string, fd: number) {
    super();
    this.dir = dir;
    this.path = sockPath;
    this.fd = fd;
    this.poller = new (native().Poller)(fd, (status, events) => this.onPoll(status, events));
  }

  /** Creates the directory and the bound socket, and starts receiving. */
  static create(options: NotifySocketOptions = {}): NotifySocket {
    const n = native();
    const dir = fs.mkdtempSync(path.join(options.parent ?? os.tmpdir(), 'fdbroker-notify-'));
    let fd = -1;
    try {
      fs.chmodSync(dir, 0o700);
      const sockPath = path.join(dir, 'notify');
      if (Buffer.byteLength(sockPath) > MAX_SOCKET_PATH_BYTES) {
        throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT',
          `the notify socket path ${sockPath} is longer than ${MAX_SOCKET_PATH_BYTES} bytes: set TMPDIR to a shorter directory`);
      }
      fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_DGRAM);
      if (fd < 0) throw systemError(fd, 'socket');
      const r = n.bind(fd, { family: 'unix', path: sockPath });
      if (r < 0) throw systemError(r, 'bind', sockPath);
      const s = new NotifySocket(dir, sockPath, fd);
      fd = -1;
      try {
        s.start();
      } catch (err) {
        s.close();
        throw err;
      }
      return s;
    } catch (err) {
      if (fd >= 0) n.close(fd);
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Lets the process exit while this socket is open. */
  unref(): void { this.poller.unref(); }
  ref(): void { this.poller.ref(); }

  get isClosed(): boolean { return this.closed; }

  /** Closes the socket and removes its directory. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // The poll handle must be stopped before its fd is closed (libuv's rule).
    this.poller.close();
    native().close(this.fd);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private start(): void {
    const c = native().constants;
    const r = this.poller.start(c.UV_READABLE);
    if (r < 0) throw systemError(r, 'uv_poll_start');
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.close();
    this.emit('error', err);
  }

  private onPoll(status: number, events: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.fail(systemError(status, 'uv_poll'));
      return;
    }
    if (!(events & native().constants.UV_READABLE)) return;
    readSome(this.fd, this.buffer, MAX_FDS_PER_MESSAGE, MESSAGES_PER_TURN, {
      open: () => !this.closed,
      error: (r) => {
        this.fail(systemError(r, 'recvmsg'));
        return false;
      },
      message: (r) => {
        // Stored fds and barrier pipes: never kept (truncated ones are already closed).
        for (const fd of r.fds) native().close(fd);
        // systemd ignores a datagram it had to cut; so does this.
        if (!r.truncated && r.bytes > 0) this.handle(this.buffer.toString('utf8', 0, r.bytes));
        return true;
      },
    });
  }

  private handle(text: string): void {
    for (const line of text.split('\n')) {
      if (line === 'READY=1') {
        this.isReady = true;
        this.emit('ready');
      } else if (line === 'STOPPING=1') {
        this.isStopping = true;
        this.emit('stopping');
      } else if (line.startsWith('STATUS=')) {
        this.status = line.slice('STATUS='.length);
        this.emit('status', this.status);
      }
    }
  }
}
