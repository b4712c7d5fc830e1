// The events a Broker emits, and their payloads. A leaf module of types, so
// that what listens to a broker (metrics, systemd, the CLI) need not import it.
import type { ClientInfo, ListenerInfo } from '../protocol/messages';
import type { GenerationInfo } from '../core/generation-info';
import type { AuditEvent } from './audit';
import type { ReloadResult } from './reload';
import type { RefusalSummary } from './refusal-tally';

/** The successor of a takeover, as the old broker knows it. */
export interface TakeoverEvent { pid: number; software: string; listeners: number; generations: number }

export interface AdoptEvent { client: ClientInfo; names: string[]; generation?: number }

/** A generation stopped on purpose (it said "leaving") while it served: not a rollback. */
export interface StopEvent {
  generation: GenerationInfo;
  /** The generation told to resume (one stood by), or undefined: nobody may be accepting now. */
  resumed: number | undefined;
}

export interface RollbackEvent {
  /** The generation that failed (it left, or stopped accepting). */
  failed: GenerationInfo;
  /** 'left' (exited, crashed or disconnected), 'stalled' (its accept queue did not drain) or 'hung' (it stopped answering pings). */
  reason: 'left' | 'stalled' | 'hung';
  /** The generation told to resume, or undefined when none stood by (nobody may be accepting now). */
  resumed: number | undefined;
}

export interface StallEvent {
  listener: ListenerInfo;
  /** Connections waiting in the accept queue. */
  queued: number;
  /** The newest ready generation, which should be accepting. */
  generation: number | undefined;
  since: Date;
}

export interface BrokerEvents {
  /** A client connected. */
  connect: [client: ClientInfo];
  /** A client disconnected (or was dropped). */
  disconnect: [client: ClientInfo];
  /** Listeners were handed to a client. */
  adopt: [event: AdoptEvent];
  /** A client misbehaved and was answered with an error or dropped. */
  clientError: [client: ClientInfo, err: Error];
  /** A client joined as a generation and received its listeners. */
  join: [generation: GenerationInfo];
  /** A generation that outlived its broker joined this one. */
  rejoin: [generation: GenerationInfo];
  /** A generation became ready; `retire` lists the generations told to retire (or stand by). */
  ready: [generation: GenerationInfo, retire: number[]];
  /** A generation disconnected (exited, crashed, or closed its connection). */
  leave: [generation: GenerationInfo];
  /** A generation was not ready in time, or did not leave in time after being told to retire. */
  overdue: [generation: GenerationInfo, what: 'ready' | 'retire'];
  /** Listeners paused (`fdbroker pause`): no generation accepts on them until they resume. */
  paused: [names: string[]];
  /** Listeners resumed: by `fdbroker resume`, or their pause's deadline (`byDeadline`). */
  unpaused: [names: string[], byDeadline: boolean];
  /** A generation said ready while holding no copy of `missing` (listeners it adopted): refused, failed, told to retire. */
  notHolding: [generation: GenerationInfo, missing: string[]];
  /** The newest ready generation failed; the one standing by (if any) was told to resume. */
  rollback: [event: RollbackEvent];
  /** The ready generation stopped on purpose (planned: it said "leaving"); the one standing by (if any) was told to resume. */
  stop: [event: StopEvent];
  /** A generation standing by with nobody ready above it (after a restart, whoever served did not come back) was told to resume. */
  resume: [generation: number];
  /** A standby window ended: that generation drains and leaves now. */
  release: [generation: number];
  /** A listener's accept queue has not drained for the stall timeout: nobody accepts. Once per episode. */
  stall: [event: StallEvent];
  /** Embedded mode: a newer generation is ready; the app that embeds this broker should drain and exit. */
  retireSelf: [by: number];
  /** Embedded mode: a successor took the control path and died before ready; this broker bound it again. */
  reclaimed: [];
  /** One line of audit: every handout, join, ready and every refusal (refusals at connect: the first of a uid, see 'refusals'). */
  audit: [event: AuditEvent];
  /** Connections refused at accept after the first of their uid, counted: one event per uid and reason per interval. */
  refusals: [summary: RefusalSummary];
  /** A listener stopped listening (a holder called shutdown() on it): it is broken for every holder. */
  listenerBroken: [info: ListenerInfo];
  /** A listener was created after start (a reload added it): later adopts and generations get it. */
  listenerAdded: [info: ListenerInfo];
  /** A listener was removed (a reload dropped it): the broker closed its copy and no longer hands it out. */
  listenerRemoved: [info: ListenerInfo];
  /** A reload starts (before its settings are read): the spot for sd_notify RELOADING=1. */
  reloading: [];
  /** A reload was applied (sd_notify READY=1 again). */
  reloaded: [result: ReloadResult];
  /** A reload was refused and nothing changed (sd_notify READY=1 again: the old configuration serves). */
  reloadFailed: [err: Error];
  /** Something recoverable went wrong in the broker itself (e.g. EMFILE on accept). */
  warning: [err: Error];
  /** Takeover: everything was handed to a successor; this broker serves on until it commits. */
  takeover: [by: TakeoverEvent];
  /** Takeover: the successor failed before it committed (`reason`); this broker serves on, unchanged. */
  takeoverAborted: [by: TakeoverEvent, reason: string];
  /** Takeover: the successor serves the path; the generations were told to rejoin it and this broker is closed. */
  takenOver: [by: TakeoverEvent];
}
