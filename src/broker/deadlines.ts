// The handshake or idle deadline of every client, kept by one timer for the
// whole broker instead of a setTimeout (a Timeout, a closure and its context)
// per client and per message. Every deadline of one Deadlines has the same
// length, so deadlines expire in the order they were set: a Map (insertion
// order; setting a key again moves it to the end) holds them sorted, and the
// one timer waits for the first.
export class Deadlines<K> {
  private readonly due = new Map<K, number>();
  private timer: NodeJS.Timeout | undefined;

  /** `onExpire(key)` runs once `ms` passed since the last set(key) without a delete(key). */
  constructor(private readonly ms: number, private readonly onExpire: (key: K) => void) {}

  get size(): number { return this.due.size; }

  /** (Re)starts `key`'s deadline. */
  set(key: K): void {
    this.due.delete(key);
    this.due.set(key, performance.now() + this.ms);
    this.arm();
  }

  delete(key: K): void {
    if (!this.due.delete(key) || this.due.size > 0) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    // A running timer fires at or before the first deadline (later ones only
    // move keys to the end) and arms itself again for what is left.
    if (this.timer !== undefined) return;
    const first = this.due.values().next();
    if (first.done) return;
    this.timer = setTimeout(() => this.fire(), Math.max(0, first.value - performance.now()));
  }

  private fire(): void {
    this.timer = undefined;
    const now = performance.now();
    for (const [key, at] of this.due) {
      if (at > now) break;
      this.due.delete(key);
      this.onExpire(key);
    }
    this.arm();
  }
}
