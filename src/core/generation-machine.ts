// The client side of a generation as a pure state machine: the rules a
// process follows between joining a broker and leaving it (ready, retire,
// standby, resume, release, rejoin after a lost broker, planned stop). Used
// by the library's Generation and by `fdbroker exec` alike; each executes
// the effects (sockets, timers, servers) and owns no rule of its own.
//
// Pure: no sockets, no timers, no clock reads. step(input, nowMs) returns the
// effects to carry out, in order; time comes in as an argument. Inputs and
// effects are plain data, so a model test can wire this machine to the
// broker's core in memory.
//
// Phases: starting (joined, not ready) -> ready (the broker acked ready) ->
// standby (told retire with a window: accepting stopped, connections kept) ->
// resuming (told resume: listeners re-adopted) -> ready again; retiring
// (draining, then leaving) and closed end it. "Broker lost" is a flag, not a
// phase: a generation serves on without its broker and rejoins one.
//
// Invariants (each is a rule below, and a unit test):
// 1. Every ready request settles exactly once: ok when a broker acked it
//    (or acks the rejoin that claims it), ERR_FDBROKER_READY_REFUSED when a
//    broker refused it or told this generation to retire first,
//    ERR_FDBROKER_CLOSED when the generation is closed first. A lost broker
//    does not settle it: the rejoin claims "ready" and its ack settles it.
// 2. A notice is never dropped while resuming: retire and release that
//    arrive during the re-adopt are queued and applied, in order, once the
//    resume completes (a failed re-adopt ends in retiring anyway). So a
//    generation told resume then retire ends retiring (or standing by, if
//    the retire grants a window), never serving beside its successor.
// 3. A standby window outlives a lost broker that announced
//    "standby-rejoin": the generation keeps standing by (its timer runs on)
//    and rejoins with state "standby" and the window left; if the window
//    ends first, it retires. Against a broker without the feature it
//    retires at once, as before the feature.
// 4. The rank is kept: a rejoin claims the number and the epoch the last
//    broker gave (epoch only to a broker listing "epoch").
// 5. `leaving` goes out only on a planned close, only to a broker listing
//    "leaving", and never from a generation the broker told to retire (its
//    end is no rollback anyway), standing by included, unless a resume
//    undid the retire. A drain the app started itself (retire() on its own
//    SIGTERM) is a planned stop: its close sends `leaving`.
// 6. A retiring or closed generation never serves again, and never rejoins
//    a lost broker unless it was told "moved" (a takeover: the successor
//    imports it and waits for it).
// 7. Heartbeat: pings are answered from here only while connected; whether
//    the joins ask for them is the executor's config (the serving process
//    asks, a wrapper does not).
import type { RejoinState } from '../protocol/messages';
import { REJOIN_RETRY_MAX_MS, REJOIN_RETRY_MS, STANDBY_GRACE_MS } from '../handover/defaults';

export type GenerationPhase = 'starting' | 'ready' | 'standby' | 'resuming' | 'retiring' | 'closed';

export interface GenerationMachineConfig {
  /** The standby window asked for at join and rejoin, in ms (0: none; `fdbroker exec` asks none). */
  standbyMs: number;
  /** Joins ask the broker to ping this process (the process that serves: true; a wrapper: false). */
  heartbeat: boolean;
  /** 'drain': the executor drains on retire and stands by when granted a window; 'app': the app retires itself (no standby handling, a resume just makes it ready). */
  retireMode: 'drain' | 'app';
  /** Self-broker mode: once ready, this process serves the path itself; its predecessor's connection ends as expected; no rejoin. */
  embedded: boolean;
  /** Extra time after a standby window before finishing retiring on its own (default STANDBY_GRACE_MS). */
  standbyGraceMs?: number;
  /** Rejoin backoff: first pause and cap (default REJOIN_RETRY_MS, REJOIN_RETRY_MAX_MS). */
  rejoinRetryMs?: number;
  rejoinRetryMaxMs?: number;
}

/** What a rejoin claims (PROTOCOL.md §2.6 rule 6). */
export interface RejoinClaim {
  generation: number;
  epoch: number;
  state: RejoinState;
  /** With state "standby": ms of the window left. */
  standbyLeft?: number;
  standby: number;
  heartbeat: boolean;
}

export type GenerationInput =
  /** The join was answered (or, self-broker first process, `connected: false`: no broker to join). */
  | { type: 'joined'; number: number; epoch: number; features: readonly string[]; connected?: boolean }
  | { type: 'ready-requested' }
  | { type: 'ready-acked' }
  | { type: 'ready-refused'; code: string; message: string }
  // The broker's notices (the wire messages fit: extra fields are ignored).
  | { type: 'retire'; by: number; standby?: number; reason?: 'newer' | 'failed' | 'not-holding' }
  | { type: 'resume'; failed: number; reason: string }
  | { type: 'release' }
  | { type: 'moved' }
  | { type: 'ping'; id: number }
  | { type: 'connection-lost' }
  /** The rejoin timer fired. */
  | { type: 'rejoin-timer' }
  /** The new connection's handshake is done (`features`: its welcome's). */
  | { type: 'rejoin-connected'; features: readonly string[] }
  | { type: 'rejoined'; number: number; state: string; epoch?: number }
  /** Connecting or rejoining failed; the executor closed the new connection. */
  | { type: 'rejoin-failed' }
  | { type: 'readopt-done' }
  | { type: 'readopt-failed' }
  | { type: 'standby-timer' }
  /** The app started draining on its own (Generation.retire()). */
  | { type: 'drain-started' }
  /** `planned`: a stop on purpose (close(), a forwarded SIGTERM), not after a retire. */
  | { type: 'close'; planned: boolean };

export type GenerationEvent =
  | { event: 'retire'; by: number }
  | { event: 'resume'; failed: number; reason: string }
  | { event: 'rejoin'; generation: number; state: string }
  | { event: 'brokerLost' };

export type GenerationEffect =
  /** Ask this generation's broker to commit ready; answer ready-acked or ready-refused (a lost connection is no refusal). Self-broker without a live predecessor connection: this process's own broker acks. */
  | { type: 'send-ready' }
  | { type: 'send-pong'; id: number }
  /** A planned stop: send `leaving`, then close the connection. */
  | { type: 'send-leaving' }
  | { type: 'close-connection' }
  /** Standby: close this process's listening handles, keep its connections. */
  | { type: 'stop-accepting' }
  /** Adopt the listeners anew and accept again on every server; answer readopt-done or readopt-failed. */
  | { type: 'readopt' }
  /** Retiring starts: drain (the library) or signal the program (exec); `drain: false`: the app retires itself. */
  | { type: 'start-retiring'; drain: boolean }
  | { type: 'schedule-rejoin'; delayMs: number }
  | { type: 'cancel-rejoin' }
  /** Connect to the path for a rejoin; answer rejoin-connected or rejoin-failed. */
  | { type: 'connect' }
  /** On the new connection; answer rejoined or rejoin-failed. */
  | { type: 'send-rejoin'; claim: RejoinClaim }
  /** The new connection is this generation's from now on (notices on it feed this machine). */
  | { type: 'use-new-connection' }
  /** The new connection is not wanted (closed, retiring meanwhile): close it. */
  | { type: 'drop-new-connection' }
  | { type: 'arm-standby-timer'; delayMs: number }
  | { type: 'clear-standby-timer' }
  | { type: 'settle-ready'; ok: true }
  | { type: 'settle-ready'; ok: false; code: 'ERR_FDBROKER_READY_REFUSED' | 'ERR_FDBROKER_CLOSED' | (string & {}); message: string }
  | ({ type: 'emit' } & GenerationEvent);

type Notice = Extract<GenerationInput, { type: 'retire' | 'release' | 'resume' }>;

export interface GenerationMachineState {
  readonly phase: GenerationPhase;
  readonly number: number;
  readonly epoch: number;
  /** A ready request waits for its answer (or for the rejoin that claims it). */
  readonly readyPending: boolean;
  /** A broker acked this generation's ready once. */
  readonly readyAcked: boolean;
  /** A live connection to a broker. */
  readonly connected: boolean;
  /** Lost its broker (not closed, not self-broker-first): serving on, rejoining if it may. */
  readonly brokerLost: boolean;
  /** Told "moved": the connection's end is a takeover, not a loss. */
  readonly moving: boolean;
  /** Features of the current (or last) broker. */
  readonly features: readonly string[];
  /** While standing by: when the window ends (ms, the clock of step()'s nowMs). */
  readonly standbyUntil: number | undefined;
  readonly rejoin: 'idle' | 'scheduled' | 'connecting' | 'sent';
  /** Notices queued while resuming. */
  readonly queued: readonly Notice[];
}

export class GenerationMachine {
  private readonly cfg: Required<GenerationMachineConfig>;
  private phase: GenerationPhase = 'starting';
  private number = 0;
  private epoch = 0;
  private readyPending = false;
  private readyAcked = false;
  private connected = false;
  private lost = false;
  private moving = false;
  private features: readonly string[] = [];
  private candidateFeatures: readonly string[] = [];
  private standbyUntil: number | undefined;
  private rejoin: GenerationMachineState['rejoin'] = 'idle';
  private rejoinDelay = 0;
  private claimed: RejoinState | undefined;
  private resumeInfo: { failed: number; reason: string } = { failed: 0, reason: '' };
  private queue: Notice[] = [];
  /** Retiring by the app's own retire() (no retire from the broker): its end is a planned stop. */
  private selfRetired = false;
  /** A retire arrived (applied, or queued behind a resume) and no resume made this generation ready since. */
  private toldToRetire = false;

  constructor(config: GenerationMachineConfig) {
    this.cfg = {
      standbyGraceMs: STANDBY_GRACE_MS, rejoinRetryMs: REJOIN_RETRY_MS, rejoinRetryMaxMs: REJOIN_RETRY_MAX_MS, ...config,
    };
  }

  get state(): GenerationMachineState {
    return {
      phase: this.phase, number: this.number, epoch: this.epoch, readyPending: this.readyPending, readyAcked: this.readyAcked,
      connected: this.connected, brokerLost: this.lost, moving: this.moving, features: this.features,
      standbyUntil: this.standbyUntil, rejoin: this.rejoin, queued: [...this.queue],
    };
  }

  /** Applies one input at time `nowMs`; returns the effects to carry out, in order. */
  step(input: GenerationInput, nowMs: number): GenerationEffect[] {
    const out: GenerationEffect[] = [];
    this.apply(input, nowMs, out);
    return out;
  }

  private apply(input: GenerationInput, now: number, out: GenerationEffect[]): void {
    if (this.phase === 'closed') {
      // Late answers after close: a new connection is closed, nothing else happens.
      if (input.type === 'rejoin-connected' || input.type === 'rejoined') out.push({ type: 'drop-new-connection' });
      if (input.type === 'ready-requested') out.push(settleClosed());
      return;
    }
    switch (input.type) {
      case 'joined':
        this.number = input.number;
        this.epoch = input.epoch;
        this.features = input.features;
        this.connected = input.connected !== false;
        return;
      case 'ready-requested':
        return this.onReadyRequested(out);
      case 'ready-acked':
        if (!this.readyPending) return;
        this.readyPending = false;
        this.readyAcked = true;
        if (this.phase === 'starting') this.phase = 'ready';
        out.push({ type: 'settle-ready', ok: true });
        return;
      case 'ready-refused':
        if (!this.readyPending) return;
        this.readyPending = false;
        out.push({ type: 'settle-ready', ok: false, code: input.code, message: input.message });
        return;
      case 'retire':
      case 'release':
        if (input.type === 'retire') this.toldToRetire = true;
        if (this.phase === 'resuming') {
          this.queue.push(input);
          return;
        }
        return input.type === 'retire' ? this.onRetire(input, now, out) : this.onRelease(out);
      case 'resume':
        // Behind a queued retire, a resume is part of the order the broker decided: keep it there.
        if (this.phase === 'resuming' && this.queue.length > 0) {
          this.queue.push(input);
          return;
        }
        return this.onResume(input, out);
      case 'moved':
        this.moving = true;
        return;
      case 'ping':
        if (this.connected) out.push({ type: 'send-pong', id: input.id });
        return;
      case 'connection-lost':
        if (!this.connected) return;
        this.connected = false;
        if (this.phase !== 'resuming') this.onLost(out);
        return;
      case 'rejoin-timer':
        if (this.rejoin !== 'scheduled') return;
        this.rejoin = 'connecting';
        out.push({ type: 'connect' });
        return;
      case 'rejoin-connected':
        return this.onRejoinConnected(input.features, now, out);
      case 'rejoin-failed':
        if (this.rejoin !== 'connecting' && this.rejoin !== 'sent') return;
        this.rejoinDelay = Math.min(Math.max(this.rejoinDelay * 2, this.cfg.rejoinRetryMs), this.cfg.rejoinRetryMaxMs);
        this.rejoin = 'scheduled';
        out.push({ type: 'schedule-rejoin', delayMs: this.rejoinDelay });
        return;
      case 'rejoined':
        return this.onRejoined(input, out);
      case 'readopt-done':
        if (this.phase !== 'resuming') return;
        this.phase = 'ready';
        out.push({ type: 'emit', event: 'resume', ...this.resumeInfo });
        if (!this.connected) this.onLost(out);
        // Applied in order; a queued resume may start another re-adopt, which queues what follows it again.
        while (this.queue.length > 0 && (this.phase as GenerationPhase) !== 'resuming') this.apply(this.queue.shift()!, now, out);
        return;
      case 'readopt-failed':
        if (this.phase !== 'resuming') return;
        // Cannot accept again: finish retiring (queued notices would end the same way).
        this.queue = [];
        return this.toRetiring(true, out);
      case 'standby-timer':
        if (this.phase !== 'standby') return;
        this.standbyUntil = undefined;
        return this.toRetiring(true, out);
      case 'drain-started':
        if (this.phase === 'retiring') return;
        if (this.phase === 'standby') out.push({ type: 'clear-standby-timer' });
        // Whether its end is a planned stop is decided at close: not if it was told to retire (toldToRetire).
        this.selfRetired = true;
        this.standbyUntil = undefined;
        this.phase = 'retiring';
        this.refuseReady(out, 'this generation is retiring');
        this.abandonRejoin(out);
        return;
      case 'close':
        return this.onClose(input.planned, out);
    }
  }

  private onReadyRequested(out: GenerationEffect[]): void {
    if (this.readyAcked && this.phase !== 'starting') {
      out.push({ type: 'settle-ready', ok: true });
      return;
    }
    if (this.phase !== 'starting') {
      out.push({ type: 'settle-ready', ok: false, code: 'ERR_FDBROKER_READY_REFUSED', message: `generation ${this.number} was told to retire before it was ready` });
      return;
    }
    if (this.readyPending) return;
    this.readyPending = true;
    // Broker lost: the rejoin claims "ready" and its ack settles it.
    if (this.connected || this.cfg.embedded) out.push({ type: 'send-ready' });
  }

  private onRetire(msg: { by: number; standby?: number; reason?: 'newer' | 'failed' | 'not-holding' }, now: number, out: GenerationEffect[]): void {
    this.toldToRetire = true; // never "leaving" after that (§2.6)
    if (this.phase !== 'starting' && this.phase !== 'ready') return;
    out.push({ type: 'emit', event: 'retire', by: msg.by });
    // A ready refused because this process holds none of its listeners: the notice may be read before the error reply.
    if (msg.reason === 'not-holding') {
      this.refuseReady(out, `generation ${this.number} said ready holding none of the listeners it adopted (it serves on a socket of its own, or none)`, 'ERR_FDBROKER_NOT_HOLDING');
    } else this.refuseReady(out, `generation ${this.number} was told to retire before its ready was answered`);
    const window = msg.standby ?? 0;
    if (this.cfg.retireMode === 'drain' && this.phase === 'ready' && window > 0 && msg.reason !== 'failed' && this.connected) {
      this.phase = 'standby';
      this.standbyUntil = now + window;
      out.push({ type: 'stop-accepting' }, { type: 'arm-standby-timer', delayMs: window + this.cfg.standbyGraceMs });
      return;
    }
    this.toRetiring(this.cfg.retireMode === 'drain', out);
  }

  private onRelease(out: GenerationEffect[]): void {
    if (this.phase !== 'standby') return;
    out.push({ type: 'clear-standby-timer' });
    this.standbyUntil = undefined;
    this.toRetiring(true, out);
  }

  private onResume(msg: { failed: number; reason: string }, out: GenerationEffect[]): void {
    this.resumeInfo = { failed: msg.failed, reason: msg.reason };
    if (this.cfg.retireMode === 'app' && this.phase === 'retiring') {
      // The app retires itself, so it resumes itself too: it never stopped accepting.
      this.phase = 'ready';
      this.toldToRetire = false;
      out.push({ type: 'emit', event: 'resume', failed: msg.failed, reason: msg.reason });
      return;
    }
    if (this.phase !== 'standby') return;
    this.phase = 'resuming';
    this.toldToRetire = false; // the broker's word now: serve (a retire queued later counts again)
    this.standbyUntil = undefined;
    out.push({ type: 'clear-standby-timer' }, { type: 'readopt' });
  }

  /** The connection ended (the phase is not resuming: a re-adopt in flight reports first). */
  private onLost(out: GenerationEffect[]): void {
    const moving = this.moving;
    if (this.cfg.embedded) {
      // Self-broker: the predecessor's broker goes away once it retired us; a pending ready is this process's own to ack now.
      if (this.readyPending) out.push({ type: 'send-ready' });
      else if (this.phase !== 'ready' && this.phase !== 'retiring') out.push({ type: 'emit', event: 'brokerLost' });
      return;
    }
    this.lost = true;
    switch (this.phase) {
      case 'retiring':
        if (moving) this.scheduleRejoin(0, out);
        return;
      case 'standby':
        if (!moving && !this.features.includes('standby-rejoin')) {
          // Nobody can tell it to resume any more (an older broker): finish retiring, as before the feature.
          out.push({ type: 'clear-standby-timer' });
          this.standbyUntil = undefined;
          this.toRetiring(true, out);
          return;
        }
        break;
      default:
        break;
    }
    if (!moving) out.push({ type: 'emit', event: 'brokerLost' });
    this.scheduleRejoin(moving ? 0 : this.cfg.rejoinRetryMs, out);
  }

  private scheduleRejoin(delayMs: number, out: GenerationEffect[]): void {
    if (this.rejoin !== 'idle') return;
    this.rejoin = 'scheduled';
    this.rejoinDelay = delayMs;
    out.push({ type: 'schedule-rejoin', delayMs });
  }

  /** Stops rejoining a lost broker (retiring now), unless a takeover moved it: the successor waits for it. */
  private abandonRejoin(out: GenerationEffect[]): void {
    if (this.rejoin === 'idle' || this.moving) return;
    if (this.rejoin === 'scheduled') out.push({ type: 'cancel-rejoin' });
    else out.push({ type: 'drop-new-connection' });
    this.rejoin = 'idle';
  }

  private onRejoinConnected(features: readonly string[], now: number, out: GenerationEffect[]): void {
    if (this.rejoin !== 'connecting') {
      out.push({ type: 'drop-new-connection' });
      return;
    }
    this.candidateFeatures = features;
    let state: RejoinState;
    let standbyLeft: number | undefined;
    if (this.phase === 'retiring') state = 'retiring';
    else if (this.phase === 'standby') {
      if (features.includes('standby-rejoin')) {
        state = 'standby';
        standbyLeft = Math.max(0, (this.standbyUntil ?? now) - now);
      } else if (this.moving) {
        // An older successor keeps the window from the table it imported.
        state = 'retiring';
      } else {
        // A broker that cannot take the window back: finish retiring.
        out.push({ type: 'clear-standby-timer' }, { type: 'drop-new-connection' });
        this.rejoin = 'idle';
        this.standbyUntil = undefined;
        this.toRetiring(true, out);
        return;
      }
    } else state = this.readyAcked || this.readyPending ? 'ready' : 'starting';
    this.rejoin = 'sent';
    this.claimed = state;
    out.push({
      type: 'send-rejoin',
      claim: {
        generation: this.number, epoch: this.epoch, state, ...(standbyLeft !== undefined ? { standbyLeft } : {}),
        standby: this.cfg.standbyMs, heartbeat: this.cfg.heartbeat,
      },
    });
  }

  private onRejoined(ack: { number: number; state: string; epoch?: number }, out: GenerationEffect[]): void {
    if (this.rejoin !== 'sent') {
      out.push({ type: 'drop-new-connection' });
      return;
    }
    this.rejoin = 'idle';
    this.rejoinDelay = 0;
    this.connected = true;
    this.lost = false;
    this.moving = false;
    this.features = this.candidateFeatures;
    this.number = ack.number;
    if (ack.epoch !== undefined) this.epoch = ack.epoch;
    out.push({ type: 'use-new-connection' }, { type: 'emit', event: 'rejoin', generation: ack.number, state: ack.state });
    if (this.claimed === 'ready' && this.readyPending) {
      this.readyPending = false;
      if (ack.state === 'ready') {
        this.readyAcked = true;
        if (this.phase === 'starting') this.phase = 'ready';
        out.push({ type: 'settle-ready', ok: true });
      } else {
        out.push({ type: 'settle-ready', ok: false, code: 'ERR_FDBROKER_READY_REFUSED', message: `generation ${ack.number} rejoined as ${ack.state}: a newer generation serves` });
      }
    }
    // A ready asked after the rejoin went out (it claimed "starting"): ask this broker now.
    if (this.readyPending && this.claimed !== 'ready' && this.phase === 'starting') out.push({ type: 'send-ready' });
    // Standing by: the broker's answer says what the window became.
    if (this.phase === 'standby' && ack.state !== 'standby') {
      out.push({ type: 'clear-standby-timer' });
      this.standbyUntil = undefined;
      if (ack.state === 'ready') {
        this.phase = 'resuming';
        this.resumeInfo = { failed: 0, reason: 'rejoin' };
        out.push({ type: 'readopt' });
      } else {
        this.toRetiring(true, out);
      }
    }
  }

  private toRetiring(drain: boolean, out: GenerationEffect[]): void {
    this.phase = 'retiring';
    out.push({ type: 'start-retiring', drain });
    this.abandonRejoin(out);
  }

  /** A ready in flight is answered "refused" once this generation is told to retire (the broker refuses it then). */
  private refuseReady(out: GenerationEffect[], message: string, code = 'ERR_FDBROKER_READY_REFUSED'): void {
    if (!this.readyPending) return;
    this.readyPending = false;
    out.push({ type: 'settle-ready', ok: false, code, message });
  }

  private onClose(planned: boolean, out: GenerationEffect[]): void {
    if (this.readyPending) {
      this.readyPending = false;
      out.push(settleClosed());
    }
    if (this.phase === 'standby') out.push({ type: 'clear-standby-timer' });
    if (this.rejoin === 'scheduled') out.push({ type: 'cancel-rejoin' });
    else if (this.rejoin !== 'idle') out.push({ type: 'drop-new-connection' });
    this.rejoin = 'idle';
    if (this.connected) {
      // Never after a retire the broker sent (standing by included), unless a resume undid it (PROTOCOL.md §2.6).
      const plannedStop = !this.toldToRetire && (this.phase === 'retiring' ? this.selfRetired : planned);
      out.push(plannedStop && this.features.includes('leaving') ? { type: 'send-leaving' } : { type: 'close-connection' });
    }
    this.phase = 'closed';
    this.connected = false;
    this.standbyUntil = undefined;
    this.queue = [];
  }
}

function settleClosed(): GenerationEffect {
  return { type: 'settle-ready', ok: false, code: 'ERR_FDBROKER_CLOSED', message: 'the generation was closed before its ready was answered' };
}
