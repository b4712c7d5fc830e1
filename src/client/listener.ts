// A Listener is one adopted socket: a duplicate of the broker's listening
// socket (same open file description, same accept queue), owned by this
// process until it is attached to a server, which then owns it.
import * as fs from 'node:fs';
import type * as net from 'node:net';
import type * as dgram from 'node:dgram';
import { native } from '../native/binding';
import { FdbrokerError } from '../protocol/errors';
import { trackConnections } from '../handover/drain';
import { forbidAddressSharing } from '../transport/address-sharing';
import { describeSockets, matchesInfo } from '../transport/socket-info';
import type { ListenerInfo, ListenerKind } from '../protocol/messages';


export class Listener {
  readonly name: string;
  readonly kind: ListenerKind;
  readonly family: 'IPv4' | 'IPv6' | 'unix';
  readonly address: string | undefined;
  readonly port: number | undefined;
  readonly path: string | undefined;
  /**
   * The broker's listen(2) backlog. Node's server.listen() calls listen(2)
   * again with 511 unless given a backlog as its second argument, which would
   * change the queue for every holder: attach() passes this one.
   */
  readonly backlog: number | undefined;
  private _fd: number;
  /**
   * The socket's identity, taken when the fd number is first given out (the
   * fd getter, attach(), handOff(), toJSON()): an fd number can be reused once
   * a server closed it. Until then only this object knows the number, so
   * nothing else can have closed it, and adopting 1,024 listeners makes no
   * 1,024 fstat() calls for fds that may never be used.
   */
  private ino = -1;
  private dev = -1;
  private exposed = false;
  /** What the broker announced, kept until the fd is checked against it. */
  private announced: ListenerInfo | undefined;
  /** The listeners adopted with this one: checked together, in one native call, at the first use of any. */
  private batch: Listener[] | undefined;
  /** What the check found wrong, reported when this fd is first given out. */
  private problem: string | undefined;
  private state: 'open' | 'attached' | 'closed' = 'open';
  private _server: net.Server | dgram.Socket | undefined;

  /** The server or socket attach() started on this listener. */
  get server(): net.Server | dgram.Socket | undefined { return this._server; }

  /**
   * Takes ownership of `fd`. With `check: 'use'`, `fd` has not been checked
   * against `info` yet: that happens when the fd is first given out, which
   * then throws ERR_FDBROKER_BAD_LISTENER (and closes the fd) if it is not
   * the socket announced. Listeners that share `batch` (one array, the same
   * for all of them) are checked together when the first of them is used.
   */
  constructor(info: ListenerInfo, fd: number, options: { check?: 'done' | 'use'; batch?: Listener[] } = {}) {
    this.name = info.name;
    this.kind = info.kind;
    this.family = info.family;
    this.address = info.address;
    this.port = info.port;
    this.path = info.path;
    this.backlog = info.backlog;
    this._fd = fd;
    if (options.check === 'use') {
      this.announced = info;
      this.batch = options.batch;
      this.batch?.push(this);
    }
  }

  /** Checks this fd, and every unchecked open one of its batch, against what the broker announced. */
  private check(): void {
    const group = (this.batch ?? [this]).filter((l) => l.announced !== undefined && l._fd >= 0 && !l.exposed);
    const described = describeSockets(group.map((l) => l._fd));
    group.forEach((l, i) => {
      const d = described[i]!;
      l.problem = d instanceof Error ? `cannot be inspected (${d.message})` : matchesInfo(d, l.announced!);
      l.announced = undefined;
      l.batch = undefined;
    });
  }

  /** The fd, checked and its identity recorded the first time it is given out. */
  private expose(): number {
    if (!this.exposed && this._fd >= 0) {
      if (this.announced) this.check();
      if (this.problem) {
        native().close(this._fd);
        this._fd = -1;
        this.state = 'closed';
        throw new FdbrokerError('ERR_FDBROKER_BAD_LISTENER', `listener "${this.name}" ${this.problem}`);
      }
      this.exposed = true;
      try {
        const st = fs.fstatSync(this._fd);
        this.ino = st.ino;
        this.dev = st.dev;
      } catch { /* not a valid fd: stillOurs() is false from now on */ }
    }
    return this._fd;
  }

  /** Whether this.fd still names the socket that was adopted (a server may have closed it, and the number been reused). */
  private stillOurs(): boolean {
    if (this._fd < 0) return false;
    if (!this.exposed) return true;
    try {
      const st = fs.fstatSync(this._fd);
      return st.ino === this.ino && st.dev === this.dev;
    } catch {
      return false;
    }
  }

  /**
   * A server started with the plain `server.listen({ fd: listener.fd })`
   * owns the fd as attach() would: find it among this process's handles and
   * count it as attached, so a retire drains it and close() leaves its fd
   * alone. Returns the server, if any.
   */
  findServer(): net.Server | dgram.Socket | undefined {
    // An fd number never given out cannot have been passed to a server.
    if (this.state === 'open' && !this.exposed) return undefined;
    if (this.state !== 'open' || !this.stillOurs()) return this._server;
    const handles = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.() ?? [];
    for (const h of handles) {
      const srv = h as { _handle?: { fd?: number } | null; listen?: unknown };
      if (typeof srv.listen === 'function' && srv._handle?.fd === this._fd) {
        this.state = 'attached';
        this._server = srv as unknown as net.Server;
        trackConnections(this._server);
        return this._server;
      }
    }
    return undefined;
  }

  /** The fd, for `server.listen({ fd }, listener.backlog)`. -1 once closed. */
  get fd(): number { return this.expose(); }

  /**
   * Starts `server` on this listener, keeping the broker's backlog:
   * `server.listen({ fd }, backlog, callback)` for net/http/https servers,
   * `socket.bind({ fd }, callback)` for dgram sockets. From then on the
   * server owns the fd: closing the server closes this process's duplicate
   * (the broker and other holders keep theirs).
   *
   * In a cluster worker, Node would send `listen({ fd })` to the primary, which
   * would listen on whatever the primary has at that fd number; attach()
   * listens in the worker itself instead, or throws ERR_FDBROKER_CLUSTER_WORKER.
   */
  attach<T extends net.Server | dgram.Socket>(server: T, callback?: () => void): T {
    if (this.state !== 'open') {
      throw new FdbrokerError('ERR_FDBROKER_ALREADY_ATTACHED',
        `listener "${this.name}" is already ${this.state}; adopt it again for another server`);
    }
    const fd = this.expose();
    if (this.kind === 'udp') {
      const sock = server as dgram.Socket;
      if (typeof sock.bind !== 'function' || typeof (sock as unknown as net.Server).listen === 'function') {
        throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `listener "${this.name}" is udp: attach it to a dgram socket`);
      }
      this.state = 'attached';
      this._server = sock;
      sock.bind({ fd }, callback);
      // bind({ fd }) has just set SO_REUSEADDR on the shared socket (libuv): undo it
      // before anything else runs, or any local user could bind the port too.
      forbidAddressSharing(fd);
      return server;
    }
    const srv = server as net.Server;
    if (typeof srv.listen !== 'function') {
      throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `listener "${this.name}" is ${this.kind}: attach it to a net/http/https server`);
    }
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const cluster = (require('node:cluster') as { default?: unknown; isWorker?: boolean });
    const backlog = this.backlog ?? 511;
    trackConnections(srv);
    if (cluster.isWorker) {
      // Attached before listening: if listen(2) fails, Node closes the handle
      // and with it the fd, which close() must then not close again.
      this.state = 'attached';
      this._server = srv;
      listenInWorker(srv, fd, backlog, this.name);
      if (callback) srv.once('listening', callback);
      return server;
    }
    this.state = 'attached';
    this._server = srv;
    srv.listen({ fd }, backlog, callback);
    return server;
  }

  /**
   * Gives up ownership of the fd without closing it (for code that hands it
   * to something else that will close it, like Node's cluster module) and
   * returns it. close() is then a no-op.
   */
  handOff(): number {
    if (this.state !== 'open') {
      throw new FdbrokerError('ERR_FDBROKER_ALREADY_ATTACHED', `listener "${this.name}" is already ${this.state}`);
    }
    this.state = 'attached';
    return this.expose();
  }

  /**
   * Closes this process's duplicate, if not attached to a server. Idempotent.
   * An fd that no longer names the adopted socket (a server started with the
   * plain `listen({ fd })` closed it, and the number was reused) is left alone.
   */
  close(): void {
    if (this.state !== 'open') return;
    // A server started with the plain listen({ fd }) owns the fd: findServer() marks it attached.
    if (!this.findServer()) {
      this.state = 'closed';
      if (this.stillOurs()) native().close(this._fd);
    }
    this._fd = -1;
  }

  toJSON(): ListenerInfo & { fd: number } {
    return {
      name: this.name, kind: this.kind, family: this.family, fd: this.expose(),
      ...(this.address !== undefined ? { address: this.address } : {}),
      ...(this.port !== undefined ? { port: this.port } : {}),
      ...(this.path !== undefined ? { path: this.path } : {}),
      ...(this.backlog !== undefined ? { backlog: this.backlog } : {}),
    };
  }
}

/** Whether a server still holds its listening socket (dgram: still bound; address() throws once closed). */
export function isListening(server: net.Server | dgram.Socket): boolean {
  const s = server as { listening?: boolean; address?: () => unknown };
  if (typeof s.listening === 'boolean') return s.listening;
  try {
    return s.address?.() !== undefined;
  } catch {
    return false;
  }
}

/**
 * A cluster worker's server.listen({ fd }) asks the primary to listen on fd N
 * of the primary. Listen locally instead through net.Server's _listen2 (the
 * hook Node keeps for that purpose: "named like this to avoid breaking code
 * that wraps this method"), then check the server really holds our fd.
 */
function listenInWorker(srv: net.Server, fd: number, backlog: number, name: string): void {
  const s = srv as net.Server & {
    _listen2?: (address: null, port: null, addressType: null, backlog: number, fd: number) => void;
    _handle?: { fd?: number } | null;
  };
  if (typeof s._listen2 !== 'function') {
    throw new FdbrokerError('ERR_FDBROKER_CLUSTER_WORKER',
      `cannot listen on adopted "${name}" in a cluster worker on this Node version; adopt in the primary instead`);
  }
  s._listen2(null, null, null, backlog, fd);
  if (!s._handle || s._handle.fd !== fd) {
    throw new FdbrokerError('ERR_FDBROKER_CLUSTER_WORKER',
      `listening on adopted "${name}" in a cluster worker did not use fd ${fd}; adopt in the primary instead`);
  }
}
