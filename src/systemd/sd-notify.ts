// sd_notify(3), sending side: datagrams of newline-separated KEY=VALUE lines
// to the service manager's NOTIFY_SOCKET (a path, or "@name" for the abstract
// namespace), optionally with fds attached (FDSTORE=1). Each message goes out
// on a fresh AF_UNIX SOCK_DGRAM socket, as libsystemd does, so a manager that
// re-executes (and binds its socket again) is still reached.
//
// Nothing here reads the environment by itself: a caller (`fdbroker serve`)
// asks for it with SdNotifier.fromEnv(). The library never prints: failures
// are 'warning' events.
//
// Fds go only to a receiver the broker can trust: never to an abstract name
// (anyone in the network namespace can bind it first) unless the caller says
// so (allowAbstractFds), and to a path only while it is a socket file owned by
// root or by the broker's uid, the same inode before and after connect().
// Messages without fds go out to any NOTIFY_SOCKET.
//
// Fd ownership: fds given to send() stay the caller's. A message that has to
// wait (EAGAIN: the manager's queue is full) holds duplicates of them, closed
// once it is sent or dropped.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import { native, type SockAddrUnix } from '../native/binding';
import { EAGAIN, MAX_SOCKET_PATH_BYTES } from '../native/errno';
import { FdbrokerError, systemError } from '../protocol/errors';
import { SD_NOTIFY_RETRY_MS, SD_NOTIFY_RETRIES } from '../broker/defaults';

/** Where NOTIFY_SOCKET points, as a native address ("@name" becomes a leading NUL), or undefined when unset or empty. */
export function parseNotifySocket(value: string | undefined): SockAddrUnix | undefined {
  if (value === undefined || value === '') return undefined;
  if (value.startsWith('@')) {
    // sun_path is 108 bytes; an abstract name has no terminating NUL.
    if (value.length < 2 || Buffer.byteLength(value) > MAX_SOCKET_PATH_BYTES + 1) {
      throw new FdbrokerError('ERR_FDBROKER_SYSTEMD', `NOTIFY_SOCKET="${value}" is not a usable abstract socket name`);
    }
    return { family: 'unix', path: `\0${value.slice(1)}` };
  }
  if (!value.startsWith('/')) {
    throw new FdbrokerError('ERR_FDBROKER_SYSTEMD',
      `NOTIFY_SOCKET="${value}" is neither an absolute path nor an @abstract name (vsock: is not supported)`);
  }
  if (Buffer.byteLength(value) > MAX_SOCKET_PATH_BYTES) {
    throw new FdbrokerError('ERR_FDBROKER_SYSTEMD', `NOTIFY_SOCKET="${value}" is longer than ${MAX_SOCKET_PATH_BYTES} bytes`);
  }
  return { family: 'unix', path: value };
}

/**
 * How often to send WATCHDOG=1 (half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
 * advises), or undefined when the watchdog is off or meant for another pid
 * (WATCHDOG_PID). A malformed value is an error, not "off".
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number = process.pid): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined || usec === '') return undefined;
  if (!/^\d+$/.test(usec) || Number(usec) === 0) {
    throw new FdbrokerError('ERR_FDBROKER_SYSTEMD', `WATCHDOG_USEC="${usec}" is not a positive number of microseconds`);
  }
  const wpid = env.WATCHDOG_PID;
  if (wpid !== undefined && wpid !== '') {
    if (!/^\d+$/.test(wpid)) throw new FdbrokerError('ERR_FDBROKER_SYSTEMD', `WATCHDOG_PID="${wpid}" is not a pid`);
    if (Number(wpid) !== pid) return undefined;
  }
  return Math.max(1, Math.floor(Number(usec) / 2000));
}

/** One notification: KEY=VALUE lines. Keys are upper-case; a value cannot hold a newline. */
export function notifyMessage(fields: Record<string, string | number>): string {
  return Object.entries(fields).map(([k, v]) => {
    const value = String(v);
    if (!/^[A-Z_][A-Z0-9_]*$/.test(k)) throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `"${k}" is not an sd_notify key`);
    if (value.includes('\n')) throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `the value of ${k} holds a newline`);
    return `${k}=${value}\n`;
  }).join('');
}

/** CLOCK_MONOTONIC in microseconds, as RELOADING=1's MONOTONIC_USEC= wants it (process.hrtime is that clock on Linux). */
export function monotonicUsec(): string {
  return (process.hrtime.bigint() / 1000n).toString();
}

export interface SdNotifierEvents {
  /** A notification could not be sent (the manager is gone, or its queue stayed full); it is dropped. */
  warning: [err: Error];
}

interface Pending { text: string; fds: number[]; tries: number }

export interface SdNotifierOptions {
  /**
   * Attach fds (FDSTORE=1) to an abstract NOTIFY_SOCKET too (`fdbroker serve
   * --notify-abstract-fdstore`). Unsafe: whoever binds the name first gets
   * every listener. Default false: such messages are dropped with a warning.
   */
  allowAbstractFds?: boolean;
}

const WATCHDOG_TEXT = 'WATCHDOG=1\n';

export class SdNotifier extends EventEmitter<SdNotifierEvents> {
  /** NOTIFY_SOCKET as given (a path or @name). */
  readonly socket: string;
  private readonly address: SockAddrUnix;
  private readonly queue: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private warnedFds = false;

  constructor(notifySocket: string, private readonly options: SdNotifierOptions = {}) {
    super();
    const address = parseNotifySocket(notifySocket);
    if (!address) throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', 'an SdNotifier needs a NOTIFY_SOCKET value');
    this.socket = notifySocket;
    this.address = address;
  }

  /** A notifier for `env.NOTIFY_SOCKET`, or undefined when it is not set (not under a service manager). */
  static fromEnv(env: NodeJS.ProcessEnv = process.env, options: SdNotifierOptions = {}): SdNotifier | undefined {
    return env.NOTIFY_SOCKET ? new SdNotifier(env.NOTIFY_SOCKET, options) : undefined;
  }

  /**
   * Sends `fields` (with `fds` attached, still owned by the caller), in order
   * after any message still waiting. Errors are 'warning' events.
   */
  notify(fields: Record<string, string | number>, fds: number[] = []): void {
    if (this.closed) return;
    const text = notifyMessage(fields);
    if (this.queue.length === 0 && this.trySend(text, fds)) return;
    // A keep-alive right behind another is as good as two: the watchdog timer must not grow the queue while the manager does not read.
    if (text === WATCHDOG_TEXT && fds.length === 0 && this.queue.at(-1)?.text === WATCHDOG_TEXT) return;
    this.queue.push({ text, fds: fds.map((fd) => this.dupOrWarn(fd)).filter((fd) => fd >= 0), tries: 0 });
    this.schedule();
  }

  /** Notifications waiting because the manager's queue was full (sent in order as it drains). */
  get pending(): number { return this.queue.length; }

  /** Drops whatever still waits (closing its fds). Idempotent. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    for (const p of this.queue.splice(0)) for (const fd of p.fds) native().close(fd);
  }

  /** true: sent, or failed for good (reported). false: EAGAIN, try again later. */
  private trySend(text: string, fds: number[]): boolean {
    const n = native();
    const abstract = this.address.path.startsWith('\0');
    if (fds.length > 0 && abstract && !this.options.allowAbstractFds) {
      this.refuseFds(text, 'it is an abstract socket name, which any local user can bind first; '
        + 'use a path socket, or pass --notify-abstract-fdstore if every process in this network namespace is trusted');
      return true;
    }
    const before = fds.length > 0 && !abstract ? this.receiverProblem() : undefined;
    if (typeof before === 'string') {
      this.refuseFds(text, before);
      return true;
    }
    const fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_DGRAM);
    if (fd < 0) {
      this.emit('warning', systemError(fd, 'socket'));
      return true;
    }
    try {
      const shown = this.socket;
      let r = n.connect(fd, this.address);
      // Still the inode checked above: not swapped between the check and connect().
      if (r === 0 && before !== undefined) {
        const after = this.receiverProblem();
        if (typeof after === 'string' || after.ino !== before.ino || after.dev !== before.dev) {
          this.refuseFds(text, typeof after === 'string' ? after : 'it was replaced while the broker connected to it');
          return true;
        }
      }
      if (r === 0) r = n.sendmsg(fd, Buffer.from(text), fds);
      if (r === EAGAIN) return false;
      if (r < 0) {
        this.emit('warning', new FdbrokerError('ERR_FDBROKER_SYSTEMD',
          `sd_notify to ${shown} failed (${text.trim().split('\n').join(' ')})`, { cause: systemError(r, 'sendmsg', shown) }));
      }
      return true;
    } finally {
      // close() is never retried: on Linux the fd is gone even when it reports EINTR.
      n.close(fd);
    }
  }

  /** What is wrong with the path receiver for fds, or its identity when it is fine. */
  private receiverProblem(): string | { dev: number; ino: number } {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(this.address.path);
    } catch (err) {
      return `it cannot be examined (${(err as NodeJS.ErrnoException).code})`;
    }
    if (!st.isSocket()) return 'it is not a socket file';
    const me = process.geteuid?.() ?? 0;
    if (st.uid !== 0 && st.uid !== me) {
      return `it belongs to uid ${st.uid}, neither root nor this broker's uid ${me}: that user would receive every listener`;
    }
    return { dev: st.dev, ino: st.ino };
  }

  /** Drops a message with fds for an untrusted receiver; warns once per notifier. */
  private refuseFds(text: string, why: string): void {
    if (this.warnedFds) return;
    this.warnedFds = true;
    this.emit('warning', new FdbrokerError('ERR_FDBROKER_SYSTEMD',
      `not sending listeners to NOTIFY_SOCKET=${this.socket} (${text.trim().split('\n').join(' ')}, and every later fd store message): ${why}`));
  }

  private dupOrWarn(fd: number): number {
    const d = native().dup(fd);
    if (d < 0) this.emit('warning', systemError(d, 'dup'));
    return d;
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, SD_NOTIFY_RETRY_MS);
    this.timer.unref();
  }

  private flush(): void {
    while (this.queue.length > 0) {
      const p = this.queue[0]!;
      if (!this.trySend(p.text, p.fds)) {
        if (++p.tries < SD_NOTIFY_RETRIES) break;
        this.emit('warning', new FdbrokerError('ERR_FDBROKER_SYSTEMD',
          `sd_notify to ${this.socket}: the manager's queue stayed full; dropped ${p.text.trim().split('\n').join(' ')}`));
      }
      this.queue.shift();
      for (const fd of p.fds) native().close(fd);
    }
    if (this.queue.length > 0) this.schedule();
  }
}
