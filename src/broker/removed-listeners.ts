// Listeners a reload removed. The broker's copy is closed at once, or, while
// a reply queued for a slow client still names its fd number, as soon as no
// queue does (the number must not be reused before the kernel has the fd).
// Processes that hold a copy keep serving on it; status lists the listener
// (removed: true) while a /proc scan shows a holder, and a scan that shows
// none forgets it. Bookkeeping only: no I/O but close().
import { native } from '../native/binding';
import type { HolderInfo, ListenerInfo } from '../protocol/messages';
import type { HoldersScan } from '../holders/holders';

/** Most removed listeners status lists; older ones are forgotten (their holders still serve on them). */
export const MAX_REMOVED_LISTED = 256;

export class RemovedListeners {
  private entries: Array<{ info: ListenerInfo; inode: number | undefined }> = [];
  /** Fds still named by a queued reply. */
  private readonly closing = new Set<number>();

  /** Takes `fd` (closed now, or once `queued(fd)` is false). `inode`: the socket's, to find its holders. */
  add(info: ListenerInfo, inode: number | undefined, fd: number, queued: (fd: number) => boolean): void {
    this.entries.push({ info, inode });
    // Without a status to prune them (a scan shows who still holds each), entries would grow with every reload.
    if (this.entries.length > MAX_REMOVED_LISTED) this.entries.splice(0, this.entries.length - MAX_REMOVED_LISTED);
    if (queued(fd)) this.closing.add(fd);
    else native().close(fd);
  }

  /** Closes the fds no queue names any more; call now and then. */
  closeUnqueued(queued: (fd: number) => boolean): void {
    for (const fd of this.closing) {
      if (queued(fd)) continue;
      this.closing.delete(fd);
      native().close(fd);
    }
  }

  get pendingCloses(): number { return this.closing.size; }

  /** When the broker stops, after every channel is closed. */
  closeAll(): void {
    for (const fd of this.closing) native().close(fd);
    this.closing.clear();
  }

  has(name: string): boolean { return this.entries.some((e) => e.info.name === name); }

  inodes(): number[] { return this.entries.flatMap((e) => (e.inode === undefined ? [] : [e.inode])); }

  /** For status: with a scan, only those still held (the others are forgotten); without one, all. */
  list(scan: HoldersScan | undefined, holdersOf: (inode: number | undefined, scan: HoldersScan) => HolderInfo[]): ListenerInfo[] {
    if (scan) this.entries = this.entries.filter((e) => e.inode !== undefined && (scan.byInode.get(e.inode)?.length ?? 0) > 0);
    return this.entries.map((e) => ({ ...e.info, removed: true, ...(scan ? { holders: holdersOf(e.inode, scan) } : {}) }));
  }
}
