// The broker's registry of listeners: name -> fd and what it is. The registry
// owns every fd in it until remove() hands one back (a reload dropped it) or
// closeAll(), when the broker stops. Pure bookkeeping: no I/O but close().
import { native } from '../native/binding';
import { FdbrokerError } from '../protocol/errors';
import type { ListenerInfo } from '../protocol/messages';
import type { OwnedListener } from './listeners';
import { MAX_LISTENERS } from '../protocol/limits';

export class Registry {
  private readonly byName = new Map<string, OwnedListener>();

  /** Takes ownership of `listener.fd`, or throws (and the caller keeps it) on a duplicate name. */
  add(listener: OwnedListener): void {
    if (this.byName.has(listener.info.name)) {
      throw new FdbrokerError('ERR_FDBROKER_DUPLICATE_NAME', `two listeners are named "${listener.info.name}"`);
    }
    if (this.byName.size >= MAX_LISTENERS) {
      throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `a broker holds at most ${MAX_LISTENERS} listeners`);
    }
    this.byName.set(listener.info.name, listener);
  }

  /** Takes `name` out; the caller owns its fd from then on. */
  remove(name: string): OwnedListener | undefined {
    const l = this.byName.get(name);
    this.byName.delete(name);
    return l;
  }

  has(name: string): boolean { return this.byName.has(name); }
  get size(): number { return this.byName.size; }
  infos(): ListenerInfo[] { return [...this.byName.values()].map((l) => l.info); }

  /** The listeners named (all when `names` is null), in the order asked; throws ERR_FDBROKER_UNKNOWN_LISTENER. */
  select(names: readonly string[] | null | undefined): OwnedListener[] {
    if (!names) return [...this.byName.values()];
    const unknown = names.filter((n) => !this.byName.has(n));
    if (unknown.length > 0) {
      const err = new FdbrokerError('ERR_FDBROKER_UNKNOWN_LISTENER',
        `no listener named ${unknown.map((n) => `"${n}"`).join(', ')}; this broker has ${this.describeNames()}`);
      (err as FdbrokerError & { names: string[] }).names = unknown;
      throw err;
    }
    return [...new Set(names)].map((n) => this.byName.get(n)!);
  }

  describeNames(): string {
    return this.byName.size === 0 ? 'no listeners' : [...this.byName.keys()].map((n) => `"${n}"`).join(', ');
  }

  closeAll(): void {
    for (const l of this.byName.values()) native().close(l.fd);
    this.byName.clear();
  }
}
