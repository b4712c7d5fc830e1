// A generation's side of `fdbroker pause`: stop accepting on some listeners
// without losing a connection, and start again.
//
// Node has no public way to stop a server from accepting and keep its
// socket. So, to pause: dup the server's listening fd (close-on-exec), then
// close the server's listening handle (net.Server.prototype.close: this
// process's copy only; connections already accepted go on). The socket stays
// open (the broker holds it, and so does the dup), and with it the accept
// queue, which belongs to the socket, not to any one fd: new connections
// wait there (up to the backlog) instead of being refused. To resume:
// server.listen({ fd: dup }) with the broker's backlog, and the server owns
// the dup from then on. No round trip to the broker, so a generation that
// loses its broker resumes at once (a pause must never outlive the one who
// can end it).
//
// Fd ownership: each dup is this object's until handed to its server at
// resume; discard() closes them (the generation stands by or retires: its
// servers are closed for good, or adopted anew on a resume and paused again
// by reapply()). Servers this process does not run itself (a cluster
// primary's listeners handed to workers) cannot be paused here.
import * as netModule from 'node:net';
import type * as net from 'node:net';
import { native } from '../native/binding';
import type { Listener } from '../client/listener';

/** The backlog for a listener that does not announce one (Node's default). */
const DEFAULT_BACKLOG = 511;
/** The period of the timer that keeps a paused process alive (it never does anything). */
const KEEP_ALIVE_MS = 2 ** 30;

export class AcceptPause {
  /** The listeners the broker says must not accept now. */
  private wanted = new Set<string>();
  /** Paused here: the server and the dup of its listening fd. */
  private readonly held = new Map<string, { server: net.Server; fd: number; backlog: number }>();
  /**
   * While something is paused, its server's handle is closed, and nothing
   * else may keep the process alive (the broker connection is unref'd): this
   * ref'd timer does, so a paused app does not simply exit.
   */
  private keep: NodeJS.Timeout | undefined;

  /** `canAccept`: whether this generation may accept now (not standing by or retiring). */
  constructor(private readonly listeners: Record<string, Listener>, private readonly canAccept: () => boolean) {}

  /** The whole set of listeners not to accept on (the broker's "accepting" notice). */
  set(names: readonly string[]): void {
    const next = new Set(names);
    for (const n of [...this.held.keys()]) if (!next.has(n)) this.resumeOne(n);
    this.wanted = next;
    if (this.canAccept()) for (const n of next) this.pauseOne(n);
    this.keepAlive();
  }

  /** The names paused in this process now. */
  get pausedHere(): string[] { return [...this.held.keys()]; }

  /** After a resume from standby (servers listen again): pause again what is still paused. */
  reapply(): void {
    if (this.canAccept()) for (const n of this.wanted) this.pauseOne(n);
    this.keepAlive();
  }

  /** The generation stands by or retires: its servers stop for good here; the dups are closed. */
  discard(): void {
    for (const h of this.held.values()) native().close(h.fd);
    this.held.clear();
    this.keepAlive();
  }

  private keepAlive(): void {
    if (this.held.size > 0 && !this.keep) this.keep = setInterval(() => undefined, KEEP_ALIVE_MS);
    else if (this.held.size === 0 && this.keep) {
      clearInterval(this.keep);
      this.keep = undefined;
    }
  }

  private pauseOne(name: string): void {
    if (this.held.has(name)) return;
    const l = this.listeners[name];
    const srv = (l?.findServer() ?? l?.server) as net.Server | undefined;
    if (!l || !srv || typeof srv.listen !== 'function' || !srv.listening) return;
    const fd = (srv as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) return;
    const dup = native().dup(fd);
    if (dup < 0) return; // EMFILE: it keeps accepting rather than lose its socket
    netModule.Server.prototype.close.call(srv);
    this.held.set(name, { server: srv, fd: dup, backlog: l.backlog ?? DEFAULT_BACKLOG });
  }

  private resumeOne(name: string): void {
    const h = this.held.get(name)!;
    this.held.delete(name);
    if (!this.canAccept() || h.server.listening) {
      native().close(h.fd);
      return;
    }
    h.server.listen({ fd: h.fd }, h.backlog);
  }
}
