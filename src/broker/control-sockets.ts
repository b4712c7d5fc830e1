// The broker's control sockets as one thing: PATH (control-path.ts) and, for a
// broker a later one could restart on, PATH.owner (owner-socket.ts). Bound at
// start, bound again when a successor that renamed its own over them died
// (reclaim), closed when the broker is taken over or closes; the path's lock
// is held by PATH's acceptor. What a connection becomes (admission, a
// session) is the broker's: `attach` is called with each new acceptor.
import { debuglog } from 'node:util';
import { native } from '../native/binding';
import { ECONNREFUSED, ENOENT } from '../native/errno';
import { FdbrokerError } from '../protocol/errors';
import { ownerSocketPath } from '../protocol/owner-socket';
import type { Acceptor, PathLock } from '../transport/acceptor';
import { probeUnix } from '../transport/socket-info';
import { bindControlSocket, lockPath } from './control-path';
import { TAKEOVER_LOCK_WAIT_MS } from './defaults';
import { bindOwnerSocket } from './owner-socket';

const debug = debuglog('fdbroker');

/** Between two tries of that lock. */
const LOCK_RETRY_MS = 50;

export interface ControlSocketsHost {
  /**
   * A new acceptor (at start, or after a reclaim): the broker sets its
   * admission and connection handler. `owner`: it is PATH.owner's, which
   * only the broker's user and root can reach.
   */
  attach(acceptor: Acceptor, owner: boolean): void;
  warn(err: Error): void;
}

export class ControlSockets {
  private main: Acceptor | undefined;
  private owner: Acceptor | undefined;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly file: { mode: number; group?: number },
    private readonly host: ControlSocketsHost,
  ) {}

  /**
   * Binds PATH (throws if it cannot) and, with `withOwner`, PATH.owner (a
   * warning if it cannot: the owner's clients use PATH then). `lock` (taken
   * by the caller) is PATH's acceptor's from the call on; a takeover's
   * successor renames over both paths and has no lock yet.
   */
  open(options: { takeover?: boolean; lock?: PathLock; withOwner: boolean }): void {
    this.main = bindControlSocket(this.path, { ...this.file, takeover: options.takeover, lock: options.lock });
    this.host.attach(this.main, false);
    if (options.withOwner) this.openOwner(options.takeover === true);
  }

  private openOwner(replace: boolean): void {
    try {
      this.owner = bindOwnerSocket(this.path, replace);
      if (this.owner) this.host.attach(this.owner, true);
      else this.host.warn(new Error(`serving without ${ownerSocketPath(this.path)}, the owner's own control socket: the name is too long for a socket address (the owner's clients use ${this.path})`));
    } catch (err) {
      this.host.warn(new Error(`serving without ${ownerSocketPath(this.path)}, the owner's own control socket (the owner's clients use ${this.path}): ${(err as Error).message}`, { cause: err }));
    }
  }

  /** Whether PATH still names this broker's socket. */
  ownsPath(): boolean {
    return this.main?.ownsPath() ?? false;
  }

  /**
   * A successor that renamed its sockets over ours died before it committed:
   * each path that is no longer ours and that nothing answers on is bound
   * again. Returns whether PATH was.
   */
  reclaim(): boolean {
    if (this.closed) return false;
    const owner = this.owner;
    if (owner && !owner.ownsPath() && !answers(owner.path)) {
      owner.close();
      this.owner = undefined;
      this.openOwner(true);
    }
    const main = this.main;
    if (!main || main.ownsPath() || answers(this.path)) return false;
    try {
      const next = bindControlSocket(this.path, { ...this.file, takeover: true });
      this.main = next;
      this.host.attach(next, false);
      main.passLockTo(next);
      main.close();
      debug('reclaimed %s', this.path);
      return true;
    } catch (err) {
      this.host.warn(err as Error);
      return false;
    }
  }

  /**
   * Takeover (the successor): the predecessor holds the path's lock until it
   * exits. Take it once free, so a plain `fdbroker serve` on this path is
   * refused as before; retried for TAKEOVER_LOCK_WAIT_MS.
   */
  acquireLock(): void {
    const deadline = Date.now() + TAKEOVER_LOCK_WAIT_MS;
    const attempt = () => {
      if (this.closed || !this.main) return;
      try {
        this.main.holdLock(lockPath(this.path));
        debug('took the lock of %s', this.path);
      } catch (err) {
        if ((err as FdbrokerError).code !== 'ERR_FDBROKER_BROKER_RUNNING' || Date.now() >= deadline) {
          this.host.warn(new Error(`could not take the lock of ${this.path}: ${(err as Error).message}`, { cause: err }));
          return;
        }
        setTimeout(attempt, LOCK_RETRY_MS).unref();
      }
    };
    attempt();
  }

  /**
   * Stops accepting and closes both sockets, removing each path only if it
   * still names this broker's socket (after a takeover they name the
   * successor's). Returns whether PATH was removed.
   */
  close(): boolean {
    if (this.closed) return false;
    this.closed = true;
    const removed = this.main?.close() ?? false;
    this.owner?.close();
    this.main = undefined;
    this.owner = undefined;
    return removed;
  }
}

/** Whether a live process answers on the Unix socket at `path` (ENOENT, ECONNREFUSED: nobody does). */
function answers(path: string): boolean {
  const r = probeUnix(path, native().constants.SOCK_SEQPACKET);
  return r !== ECONNREFUSED && r !== ENOENT;
}
