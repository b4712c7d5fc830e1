// The broker's side of `fdbroker pause` / `fdbroker resume`: the pure
// PauseTable (src/core/pause-table.ts) with one timer for its next deadline,
// and the "accepting" notices that tell each generation which of its
// listeners it must not accept on. The rules of who may be paused are here,
// next to the table; broker.ts only routes requests and joins through them.
//
// - A pause is refused (ERR_FDBROKER_CANNOT_PAUSE) while a generation that
//   cannot stop accepting on its own (it did not join with `pause`: `fdbroker
//   exec`, older clients) is starting or ready on one of the listeners: a
//   foreign server cannot be paused from outside (SIGSTOP would freeze its
//   connections too), and a pause that some process ignores is no pause.
// - While a listener is paused, a join or an adopt that asks for it is
//   refused (ERR_FDBROKER_PAUSED): a deploy during a pause is refused, not
//   deferred (it would otherwise accept at once, or wait out a pause nobody
//   bounded for it). Resume first, or wait for the deadline.
// - Every generation that joined with `pause` gets the whole set of its
//   paused listeners each time it changes (and the empty set on resume).
import { FdbrokerError } from '../protocol/errors';
import { PauseTable, type PauseInfo } from '../core/pause-table';
import type { Session } from './session';

export interface PauseHost {
  /** Connected generations: their sessions, the names they adopted, their state. */
  generations(): Array<{ session: Session; number: number; pid: number; state: string; adopted: readonly string[]; pausable: boolean }>;
  /** Emitted when listeners resume (by request or deadline) and when they pause. */
  changed(paused: string[], resumed: string[], byDeadline: boolean): void;
}

export class Pauses {
  readonly table = new PauseTable();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly host: PauseHost, private readonly now: () => number = Date.now) {}

  /**
   * Pauses `names` (all of the broker's when null is given as `all`) for
   * `forMs`. Throws ERR_FDBROKER_CANNOT_PAUSE, naming the generations, when
   * one that cannot pause holds one of them.
   */
  pause(names: string[], forMs: number | undefined): PauseInfo[] {
    const wanted = new Set(names);
    const unable = this.host.generations().filter((g) => !g.pausable && (g.state === 'starting' || g.state === 'ready')
      && g.adopted.some((n) => wanted.has(n)));
    if (unable.length > 0) {
      throw new FdbrokerError('ERR_FDBROKER_CANNOT_PAUSE', `generation${unable.length > 1 ? 's' : ''} `
        + `${unable.map((g) => `${g.number} (pid ${g.pid})`).join(', ')} cannot stop accepting when told (\`fdbroker exec\`, or a client without pause support): `
        + 'nothing was paused. Pausing needs every process that accepts on the listener to be a startGeneration() app');
    }
    this.table.pause(names, this.now(), forMs);
    this.notify(wanted);
    this.arm();
    this.host.changed(names, [], false);
    return this.table.list();
  }

  /** Ends the pause of `names` (null: all); returns the listeners resumed. */
  resume(names: string[] | null): string[] {
    const resumed = this.table.resume(names, this.now());
    if (resumed.length > 0) this.afterResume(resumed, false);
    return resumed;
  }

  /** A join or adopt of `names` (null: all of `all`) is refused while any of them is paused. */
  refuseAdopt(names: readonly string[]): void {
    const paused = this.table.pausedOf(names);
    if (paused.length === 0) return;
    const until = Math.max(...paused.map((n) => this.table.get(n)!.until));
    throw new FdbrokerError('ERR_FDBROKER_PAUSED', `${paused.map((n) => `"${n}"`).join(', ')} ${paused.length > 1 ? 'are' : 'is'} paused `
      + `until ${new Date(until).toISOString()}: a new process would accept on it. Run \`fdbroker resume\` first, or start it after the pause`);
  }

  /** The set of paused listeners a generation that adopted `adopted` must not accept on. */
  pausedFor(adopted: readonly string[]): string[] { return this.table.pausedOf(adopted); }

  /** A listener removed (reload). */
  forget(name: string): void {
    if (this.table.isPaused(name)) {
      this.table.forget(name);
      this.arm();
    } else this.table.forget(name);
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private afterResume(resumed: string[], byDeadline: boolean): void {
    this.notify(new Set(resumed));
    this.arm();
    this.host.changed([], resumed, byDeadline);
  }

  /** Tells every pausable generation holding one of `touched` its paused set. */
  private notify(touched: Set<string>): void {
    for (const g of this.host.generations()) {
      if (!g.pausable || !g.adopted.some((n) => touched.has(n))) continue;
      g.session.reply({ type: 'accepting', paused: this.table.pausedOf(g.adopted) });
    }
  }

  private arm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const next = this.table.nextDeadline();
    if (next === undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const resumed = this.table.due(this.now());
      if (resumed.length > 0) this.afterResume(resumed, true);
      else this.arm();
    }, Math.max(0, next - this.now()));
    // A pause alone does not keep the broker's process alive.
    this.timer.unref();
  }
}
