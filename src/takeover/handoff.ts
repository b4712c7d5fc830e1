// Broker takeover, the old broker's side (PROTOCOL.md §2.9): hand a successor
// everything (the handoff: versions, options, the generation table frozen by
// the core; then every listener's fd), hold the requests that would change
// the table until the successor commits or fails, then either hand over (tell
// every generation it moved, end every connection, close) or serve on as if
// nothing happened (replaying what was held). The successor's side is
// successor.ts. Who may take over, and when, is decided by the broker before
// a Handoff exists.
import { debuglog } from 'node:util';
import type { TableSnapshot } from '../core/handover-core';
import { chunkListeners, encodeHandoff, encodeListeners, type ClientMessage, type HandoffMessage, type ListenerInfo } from '../protocol/messages';
import { MAX_FDS_PER_MESSAGE, MAX_MESSAGE_BYTES } from '../protocol/limits';
import type { TakeoverEvent } from '../broker/events';
import type { Session } from '../broker/session';
import { TAKEOVER_COMMIT_TIMEOUT_MS } from '../broker/defaults';

const debug = debuglog('fdbroker');

/** The name the metrics socket travels under in a handoff (suffixed if a listener has it). */
export const METRICS_HANDOFF_NAME = 'fdbroker.metrics';

/** What a Handoff needs from the broker it runs in. */
export interface HandoffHost {
  /** Whether the control path is still this broker's own socket. */
  ownsPath(): boolean;
  /** Whether something (the successor) answers on the control path. */
  pathAnswers(): boolean;
  /** The successor renamed over the path and died: bind it again. */
  reclaimPath(): void;
  /** The core's journal: forwarded on commit. */
  commitTable(): { left: number[] };
  /** Nothing was handed over after all: the core replays its journal (the host executes the effects). */
  abortTable(): void;
  /** Carries out a request that was held, as if it arrived now. */
  replay(state: Session, msg: ClientMessage): void;
  /** Whether that client is still connected. */
  connected(state: Session): boolean;
  /** Ends the successor's connection (after its last replies). */
  drop(state: Session): void;
  /** Committed: move every generation to the successor and close (see Broker). */
  handOver(by: TakeoverEvent, held: Array<{ state: Session; msg: ClientMessage }>): void;
  aborted(by: TakeoverEvent, reason: string): void;
}

/**
 * Sends the successor the handoff and every listener's fd (the fds stay the
 * broker's). Returns false if its connection was dropped meanwhile.
 */
export function sendHandoff(state: Session, id: number, broker: HandoffMessage['broker'], options: HandoffMessage['options'],
  table: TableSnapshot, listeners: Array<{ info: ListenerInfo; fd: number }>, metrics?: { info: ListenerInfo; fd: number }): boolean {
  // The metrics socket goes last, under a name no listener has.
  let metricsName: string | undefined;
  if (metrics) {
    metricsName = METRICS_HANDOFF_NAME;
    for (let i = 2; listeners.some((l) => l.info.name === metricsName); i++) metricsName = `${METRICS_HANDOFF_NAME}.${i}`;
    listeners = [...listeners, { info: { ...metrics.info, name: metricsName }, fd: metrics.fd }];
  }
  const handoff = encodeHandoff({
    type: 'handoff', id, broker, options, nextGeneration: table.next, generations: table.generations,
    ...(metricsName !== undefined ? { metrics: metricsName } : {}),
    ...(table.epoch !== undefined ? { epoch: table.epoch } : {}), ...(table.floor !== undefined ? { floor: table.floor } : {}),
  });
  for (const p of handoff) if (!state.send(p, [])) return false;
  const infos = listeners.map((l) => l.info);
  const groups = chunkListeners(infos, MAX_FDS_PER_MESSAGE, MAX_MESSAGE_BYTES);
  for (let part = 0; part < groups.length; part++) {
    const group = groups[part]!;
    const payload = encodeListeners(id, part, part === groups.length - 1, group.map((i) => infos[i]!));
    if (!state.send(payload, group.map((i) => listeners[i]!.fd))) return false;
  }
  return true;
}

/** One takeover in flight, from the handoff to its commit or failure. */
export class Handoff {
  /** Requests that would change the generation table, held (their channels paused) until the takeover commits or fails. */
  private readonly held: Array<{ state: Session; msg: ClientMessage }> = [];
  private timer: NodeJS.Timeout;
  /** The commit timer ran out once while the successor served the path: the next time, this broker hands over. */
  private expiredOnce = false;
  private done = false;

  constructor(readonly session: Session, readonly id: number, readonly by: TakeoverEvent, private readonly host: HandoffHost) {
    this.timer = this.commitTimer();
  }

  /** Holds a join, ready or rejoin from another client (its channel is paused until the outcome). */
  hold(state: Session, msg: ClientMessage): void {
    this.held.push({ state, msg });
    state.channel.pause();
  }

  /** The successor says it answers on the path: returns the ack's `left`, or undefined when the path is still ours (no commit). */
  commit(): { left: number[] } | undefined {
    if (this.host.ownsPath()) return undefined;
    const r = this.host.commitTable();
    this.finish();
    return r;
  }

  /** After the ack of a commit: hand over. */
  handOver(): void {
    this.host.handOver(this.by, this.held);
  }

  /**
   * The takeover did not commit (the successor's connection closed, or it
   * took too long). If the path is still ours, nothing changed. If the
   * successor renamed its socket over the path and then died, bind it
   * again; if it renamed and lives, it serves: hand over as on commit.
   */
  abort(reason: string): void {
    if (this.done) return;
    if (!this.host.ownsPath() && this.host.pathAnswers()) {
      // It serves the path: wait once more for its commit (or its connection's end), then hand over regardless.
      if (reason === 'no commit in time' && !this.expiredOnce) {
        this.expiredOnce = true;
        this.timer = this.commitTimer();
        return;
      }
      this.host.commitTable();
      this.finish();
      this.handOver();
      return;
    }
    this.finish();
    this.host.abortTable();
    if (this.host.connected(this.session)) this.host.drop(this.session);
    this.host.reclaimPath(); // each path it no longer owns, if nothing answers there
    debug('takeover by pid %d aborted: %s', this.by.pid, reason);
    this.host.aborted(this.by, reason);
    // Nothing changed: the held requests are carried out now, in order, and their connections read on.
    for (const d of this.held) {
      if (!this.host.connected(d.state)) continue;
      this.host.replay(d.state, d.msg);
      d.state.channel.resume();
    }
  }

  get isDone(): boolean { return this.done; }

  private finish(): void {
    this.done = true;
    clearTimeout(this.timer);
  }

  private commitTimer(): NodeJS.Timeout {
    const timer = setTimeout(() => this.abort('no commit in time'), TAKEOVER_COMMIT_TIMEOUT_MS);
    timer.unref();
    return timer;
  }
}
