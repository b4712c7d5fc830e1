// The broker's listeners: one record per name, holding the fd and everything
// the broker knows of that socket (the spec it came from, its inode, whether a
// holder broke it, its last accept-queue sample). The set owns every fd in it
// until remove() (a reload dropped it: the fd goes to `removed`, closed once
// no queued reply names it) or closeAll(), when the broker stops.
// Bookkeeping only: no I/O but close() and one fstat for an inode.
import { native } from '../native/binding';
import { FdbrokerError } from '../protocol/errors';
import type { ListenerInfo } from '../protocol/messages';
import { MAX_LISTENERS } from '../protocol/limits';
import { socketInode } from '../holders/holders';
import type { OwnedListener } from './listeners';
import { RemovedListeners } from './removed-listeners';
import type { ListenerSpec } from './spec';

export interface ListenerRecord {
  /** Owned by the set. */
  readonly fd: number;
  readonly info: ListenerInfo;
  /** The spec it was created from (what a reload compares); none for one taken from systemd or a predecessor. */
  spec?: ListenerSpec;
  /** Its socket's inode, read once (to find its holders in /proc). */
  inode?: number;
  /** A holder shut it down: it no longer listens, for anyone. */
  broken: boolean;
  /** The last sample of its accept queue. */
  queue?: { queued: number; backlog: number };
}

export class ListenerSet {
  private readonly byName = new Map<string, ListenerRecord>();
  /** Listeners a reload removed, listed in status while some process still holds them. */
  readonly removed = new RemovedListeners();

  /** Takes ownership of `listener.fd`, or throws (and the caller keeps it) on a duplicate name or past MAX_LISTENERS. */
  add(listener: OwnedListener, spec?: ListenerSpec): ListenerRecord {
    if (this.byName.has(listener.info.name)) {
      throw new FdbrokerError('ERR_FDBROKER_DUPLICATE_NAME', `two listeners are named "${listener.info.name}"`);
    }
    if (this.byName.size >= MAX_LISTENERS) {
      throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `a broker holds at most ${MAX_LISTENERS} listeners`);
    }
    const rec: ListenerRecord = { fd: listener.fd, info: listener.info, broken: false, ...(spec ? { spec } : {}) };
    this.byName.set(listener.info.name, rec);
    return rec;
  }

  /** Stops handing `name` out; its fd goes to `removed` (closed once `queued(fd)` is false). Throws ERR_FDBROKER_UNKNOWN_LISTENER. */
  remove(name: string, queued: (fd: number) => boolean): ListenerRecord {
    const [rec] = this.select([name]);
    this.byName.delete(name);
    this.removed.add(rec!.info, this.inodeOf(rec!), rec!.fd, queued);
    return rec!;
  }

  get(name: string): ListenerRecord | undefined { return this.byName.get(name); }
  has(name: string): boolean { return this.byName.has(name); }
  get size(): number { return this.byName.size; }
  infos(): ListenerInfo[] { return [...this.byName.values()].map((l) => l.info); }
  names(): string[] { return [...this.byName.keys()]; }
  all(): ListenerRecord[] { return [...this.byName.values()]; }

  /** Stream listeners that still listen: those whose accept queue means something. */
  streams(): ListenerRecord[] { return this.all().filter((l) => l.info.kind !== 'udp' && !l.broken); }

  /** The spec of each listener created from one: what a reload compares. */
  specs(): Map<string, ListenerSpec> {
    const out = new Map<string, ListenerSpec>();
    for (const [name, l] of this.byName) if (l.spec) out.set(name, l.spec);
    return out;
  }

  /** The socket's inode (read once; undefined if it cannot be read). */
  inodeOf(rec: ListenerRecord): number | undefined {
    if (rec.inode === undefined) {
      try { rec.inode = socketInode(rec.fd); } catch { return undefined; }
    }
    return rec.inode;
  }

  /** The listeners named (all when `names` is null), in the order asked; throws ERR_FDBROKER_UNKNOWN_LISTENER (naming those a reload removed). */
  select(names: readonly string[] | null | undefined): ListenerRecord[] {
    if (!names) return this.all();
    const unknown = names.filter((n) => !this.byName.has(n));
    if (unknown.length > 0) {
      const gone = unknown.filter((n) => this.removed.has(n));
      const err = new FdbrokerError('ERR_FDBROKER_UNKNOWN_LISTENER',
        `no listener named ${unknown.map((n) => `"${n}"`).join(', ')}; this broker has ${this.describeNames()}`
        + (gone.length > 0 ? ` (${gone.map((n) => `"${n}"`).join(', ')} removed by a reload)` : ''));
      (err as FdbrokerError & { names: string[] }).names = unknown;
      throw err;
    }
    return [...new Set(names)].map((n) => this.byName.get(n)!);
  }

  describeNames(): string {
    return this.byName.size === 0 ? 'no listeners' : [...this.byName.keys()].map((n) => `"${n}"`).join(', ');
  }

  /** Closes every fd (the broker stops; every channel that could name one is closed first). */
  closeAll(): void {
    this.removed.closeAll();
    for (const l of this.byName.values()) native().close(l.fd);
    this.byName.clear();
  }
}
