// Instance slots' sockets (`fdbroker run --instances N`): for each tcp
// listener the broker created with SO_REUSEPORT, N-1 more sockets bound to
// the same address, one per slot above 0, together a SO_REUSEPORT group. The
// kernel spreads new connections over the group by a hash of their address;
// the broker holds every socket of it, so a slot whose process is gone (a
// crash, a restart) keeps its queue: its connections wait for the slot's next
// process, none is reset or refused. Slot 0 is served the listener's own fd.
//
// Fd ownership: this set owns every fd it made until closeAll(). A listener
// that was not created here with SO_REUSEPORT (inherited from systemd, adopted
// from a predecessor, added by a reload) has no group: every slot is handed
// its one fd (the shared accept queue).
//
// Security: SO_REUSEPORT lets another process of the same effective uid bind
// the port into the group and receive a share of its connections
// (docs/SECURITY.md); without --instances the broker never sets it.
import { native } from '../native/binding';
import { createListener } from './listeners';
import type { ListenerSpec } from './spec';

export class SlotSockets {
  /** Listener name -> fds of slots 1..N-1. */
  private readonly bySlot = new Map<string, number[]>();

  constructor(readonly instances: number) {}

  /** Whether listeners of `spec` are made with SO_REUSEPORT (tcp, with 2 or more instances). */
  wants(spec: ListenerSpec): boolean {
    return this.instances > 1 && spec.kind === 'tcp';
  }

  /** Binds slots 1..N-1 of `spec`'s listener, already bound with SO_REUSEPORT at `port`. Throws (closing what it made) if one cannot bind. */
  create(spec: ListenerSpec, port: number, backlog: number): void {
    const fds: number[] = [];
    try {
      for (let slot = 1; slot < this.instances; slot++) {
        fds.push(createListener({ ...spec, port }, backlog, { reusePort: true }).fd);
      }
    } catch (err) {
      for (const fd of fds) native().close(fd);
      throw err;
    }
    this.bySlot.set(spec.name, fds);
  }

  /** The fd slot `slot` is handed for listener `name`, or `fallback` (slot 0, or a listener without a group). */
  fdFor(name: string, slot: number, fallback: number): number {
    if (slot <= 0) return fallback;
    return this.bySlot.get(name)?.[slot - 1] ?? fallback;
  }

  /** Closes every socket of every group (the broker stops). */
  closeAll(): void {
    for (const fds of this.bySlot.values()) for (const fd of fds) native().close(fd);
    this.bySlot.clear();
  }
}
