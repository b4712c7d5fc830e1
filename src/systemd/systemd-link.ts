// A broker under systemd (Type=notify): what it tells the service manager.
//   READY=1 + MAINPID   once every listener is bound and the control socket answers (ready())
//   STATUS=<summary>    on every join, rejoin, ready, leave and listener change
//   STOPPING=1          when it stops (stopping())
//   RELOADING=1 / READY=1 around a reload (the broker's reload events)
//   WATCHDOG=1          every WATCHDOG_USEC/2 when the manager asks for it
//   FDSTORE=1 + FDNAME  each listener's socket, pushed to the fd store, so a
//                       broker that crashes and is restarted gets it back
//                       (LISTEN_FDS/LISTEN_FDNAMES) with its queue intact;
//                       FDSTOREREMOVE=1 when a listener is removed.
// While linked, a takeover is refused (Broker.takeoverRefusal): the manager
// watches this pid, and a taken-over broker exits.
// Fd ownership: the listeners' fds stay the broker's; the manager keeps its
// own duplicates (FileDescriptorStoreMax= must leave room for them).
import type { GenerationInfo } from '../core/generation-info';
import type { Broker } from '../broker/broker';
import { monotonicUsec, type SdNotifier } from './sd-notify';
import type { ListenerInfo } from '../protocol/messages';

/** The one-line STATUS=: "2 listeners, 3 generations, serving: generation 7 (pid 4242)". */
export function statusLine(listeners: number, generations: readonly GenerationInfo[]): string {
  const ready = generations.filter((g) => g.state === 'ready').sort((a, b) => b.number - a.number)[0];
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  return `${plural(listeners, 'listener')}, ${plural(generations.length, 'generation')}, `
    + (ready ? `serving: generation ${ready.number} (pid ${ready.pid})` : 'no generation ready');
}

export interface SystemdLinkOptions {
  /** Send WATCHDOG=1 this often (watchdogIntervalMs(env)); undefined: no watchdog. */
  watchdogMs?: number;
  /** Push listeners to the fd store (default true; the unit needs FileDescriptorStoreMax=). */
  fdStore?: boolean;
  /**
   * Listeners that came from the manager (LISTEN_FDS): not pushed again. A
   * stored one is still in the store; a socket unit's is the socket unit's,
   * and a copy in the store would come back twice.
   */
  inherited?: Iterable<string>;
  /** Names whose stored copy must go before the new socket is pushed (a spec replaced it). */
  replaced?: Iterable<string>;
}

/**
 * Ties a broker to its service manager. Create it once the broker started;
 * call ready() when the control socket answers. The broker's reload events
 * ('reloading', then 'reloaded' or 'reloadFailed') send RELOADING=1 and
 * READY=1 by themselves; reloading()/ready() are there for other changes.
 */
export class SystemdLink {
  private readonly unsubscribe: Array<() => void> = [];
  private watchdog: NodeJS.Timeout | undefined;
  private stopped = false;
  private started = false;
  private lastStatus: string | undefined;
  private readonly refusal: string;

  constructor(private readonly broker: Broker, readonly notifier: SdNotifier, private readonly options: SystemdLinkOptions = {}) {
    // Taken over, this (the unit's main) process would exit: systemd stops the
    // service, empties the fd store and kills what is left in the unit's cgroup.
    this.refusal = `this broker runs under a service manager (NOTIFY_SOCKET=${notifier.socket}) that watches its pid: `
      + 'taken over, it would exit and the manager would stop the service; restart it through the manager instead '
      + '(`systemctl restart`: the fd store keeps the listeners and their queues)';
    broker.takeoverRefusal = this.refusal;
    const on = <K extends 'join' | 'rejoin' | 'ready' | 'leave' | 'release' | 'rollback'>(event: K) => {
      const f = () => this.status();
      broker.on(event, f as never);
      this.unsubscribe.push(() => broker.off(event, f as never));
    };
    for (const e of ['join', 'rejoin', 'ready', 'leave', 'release', 'rollback'] as const) on(e);
    const added = (info: ListenerInfo) => {
      if (this.started) this.store(info.name); // before ready(), ready() pushes it with the rest
      this.status();
    };
    const removed = (info: ListenerInfo) => {
      if (this.options.fdStore !== false) this.notifier.notify({ FDSTOREREMOVE: 1, FDNAME: info.name });
      this.status();
    };
    broker.on('listenerAdded', added);
    broker.on('listenerRemoved', removed);
    // A reload (SIGHUP, `fdbroker reload`): RELOADING=1 before, READY=1 after, applied or refused.
    // Before the first ready() there is nothing to tell: ready() reports the outcome.
    const reloading = () => { if (this.started) this.reloading(); };
    const reloaded = () => { if (this.started) this.ready(); };
    broker.on('reloading', reloading);
    broker.on('reloaded', reloaded);
    broker.on('reloadFailed', reloaded);
    this.unsubscribe.push(() => broker.off('listenerAdded', added), () => broker.off('listenerRemoved', removed),
      () => broker.off('reloading', reloading), () => broker.off('reloaded', reloaded), () => broker.off('reloadFailed', reloaded));
  }

  /**
   * First call: pushes the listeners to the fd store, then READY=1 with
   * MAINPID and STATUS, and starts the watchdog. Later calls (after
   * reloading()): READY=1 and STATUS.
   */
  ready(): void {
    if (this.stopped) return;
    const first = !this.started;
    if (first) {
      this.started = true;
      for (const name of this.options.replaced ?? []) this.notifier.notify({ FDSTOREREMOVE: 1, FDNAME: name });
      const inherited = new Set(this.options.inherited ?? []);
      for (const l of this.broker.listenerInfos()) if (!inherited.has(l.name)) this.store(l.name);
    }
    this.lastStatus = this.summary();
    this.notifier.notify({ READY: 1, ...(first ? { MAINPID: process.pid } : {}), STATUS: this.lastStatus });
    if (first && this.options.watchdogMs !== undefined) {
      this.watchdog = setInterval(() => this.notifier.notify({ WATCHDOG: 1 }), this.options.watchdogMs);
      this.watchdog.unref();
    }
  }

  /** RELOADING=1 (with MONOTONIC_USEC, which systemd >= 253's Type=notify-reload wants). Follow it with ready(). */
  reloading(): void {
    if (this.stopped) return;
    this.lastStatus = 'reloading';
    this.notifier.notify({ RELOADING: 1, MONOTONIC_USEC: monotonicUsec(), STATUS: this.lastStatus });
  }

  /** STOPPING=1; stops the watchdog and further notifications. The fd store is left as it is: systemd empties it when the unit stops for good. */
  stopping(): void {
    if (this.stopped) return;
    this.notifier.notify({ STOPPING: 1, STATUS: 'stopping' });
    this.close();
  }

  /** Stops listening to the broker and the watchdog. Idempotent. */
  close(): void {
    this.stopped = true;
    if (this.broker.takeoverRefusal === this.refusal) this.broker.takeoverRefusal = undefined;
    clearInterval(this.watchdog);
    for (const u of this.unsubscribe.splice(0)) u();
    this.notifier.close();
  }

  private summary(): string {
    return statusLine(this.broker.listenerInfos().length, this.broker.status().generations);
  }

  private status(): void {
    if (this.stopped || !this.started) return;
    const s = this.summary();
    if (s === this.lastStatus) return;
    this.lastStatus = s;
    this.notifier.notify({ STATUS: s });
  }

  private store(name: string): void {
    if (this.options.fdStore === false) return;
    const l = this.broker.listenerFdsForSelf().find((x) => x.info.name === name);
    if (l) this.notifier.notify({ FDSTORE: 1, FDNAME: name }, [l.fd]);
  }
}
