// Fds the broker sent that a client has not received yet. The kernel counts
// them against the broker's user, and once that user has more in flight than
// its RLIMIT_NOFILE, every sendmsg with fds fails (ETOOMANYREFS) for every
// client: one uid that asks and never reads would stop everyone's handouts,
// the owner's deploys included. So each uid other than the broker's and root
// gets a share, a handout that would exceed it is refused, and a client that
// sits on a handout for too long is dropped.
//
// A handout counts until the client reads it or closes its socket: closing
// ours does not free fds queued on the client's side. So each entry holds a
// duplicate of the broker's end (one fd per client with an unread handout,
// bounded by the share) and asks it for unread bytes (SIOCOUTQ), even after
// the client was dropped.
import { native } from '../native/binding';
import type { Session } from './session';

interface Held { end: number; uid: number; fds: number; since: number; session: Session | undefined }

export class FdsInFlight {
  private readonly held = new Map<Session, Held>();

  /** `fds` more were sent to `session` at `now` (the first unread handout's time is kept). */
  sent(session: Session, fds: number, now: number): void {
    if (fds <= 0) return;
    const h = this.held.get(session);
    if (h) {
      h.fds += fds;
      return;
    }
    const end = native().dup(session.channel.fd);
    if (end < 0) return; // EMFILE: not tracked; the kernel's own limit still applies
    this.held.set(session, { end, uid: session.info.uid, fds, since: now, session });
  }

  /** Fds in unread handouts of `uid`'s clients (connected or not); entries read or closed meanwhile are dropped. */
  ofUid(uid: number): number {
    let n = 0;
    for (const h of this.sweep()) if (h.uid === uid) n += h.fds;
    return n;
  }

  /** Connected clients that have held an unread handout since before `before` (each returned once). */
  heldSince(before: number): Session[] {
    const out: Session[] = [];
    for (const h of this.sweep()) {
      if (h.since < before && h.session && !h.session.channel.isClosed) out.push(h.session);
      if (h.since < before) h.session = undefined;
    }
    return out;
  }

  /** Closes every duplicate (the broker is closing). */
  closeAll(): void {
    for (const h of this.held.values()) native().close(h.end);
    this.held.clear();
  }

  /** The entries still unread; the others are closed and removed. */
  private sweep(): Held[] {
    const n = native();
    const out: Held[] = [];
    for (const [s, h] of this.held) {
      if (n.outq(h.end) > 0) {
        out.push(h);
        continue;
      }
      n.close(h.end);
      this.held.delete(s);
    }
    return out;
  }
}

/**
 * One uid's share: `share` of the broker's soft RLIMIT_NOFILE (a quarter by
 * default: it takes four such uids at once to reach the kernel's limit), at
 * least `min`.
 */
export function fdsInFlightPerUid(softNofile: number, share: number, min: number): number {
  if (!Number.isFinite(softNofile)) return Number.MAX_SAFE_INTEGER;
  return Math.max(min, Math.floor(softNofile * share));
}
