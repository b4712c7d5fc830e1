// The broker: owns listeners (a ListenerSet) and hands duplicates of them to any
// client that asks over the control socket (an Acceptor + one Session per
// client). Policy lives here and in the pure GenerationTable / AcceptWatch;
// framing and syscalls live in transport/.
//
// Invariants: the broker never accepts on, shuts down or reconfigures a
// listener; it keeps every listener open for its whole life whatever clients
// do (only its owner removes one: removeNamedListener, a reload); it takes
// no fds from clients (SO_PASSRIGHTS off where the kernel has it,
// otherwise whatever arrives is closed and that client dropped); one client's
// errors end that client only, and no reply can exceed a message (errors are
// bounded, status comes in parts).
//
// Handover under faults (docs/FAULTS.md): the generation retired by a newer
// ready one stands by for a window; if the newer one leaves (crash, exit) or
// its listeners stall (a non-empty accept queue that does not shrink) within
// the window, the standby one is told to resume and the failed one to retire.
import { EventEmitter } from 'node:events';
import { debuglog } from 'node:util';
import { native } from '../native/binding';
import { assertSupportedRuntime } from '../native/runtime';
import { ENOPROTOOPT, EPERM } from '../native/errno';
import type { Acceptor, PathLock, PeerCred } from '../transport/acceptor';
import { acceptQueues } from '../transport/accept-queue';
import { Channel } from '../transport/channel';
import { describeSockets, matchesInfo } from '../transport/socket-info';
import { FdbrokerError, isErrorCode } from '../protocol/errors';
import {
  chunkListeners, decodeClientMessage, encodeListeners, negotiateVersion,
  type ClientInfo, type ClientMessage, type ListenerInfo, type PauseRequest, type RejoinMessage, type StatusMessage, type TakeoverMessage,
  type UnpauseRequest,
} from '../protocol/messages';
import { MAX_FDS_PER_MESSAGE, MAX_LISTENERS, MAX_MESSAGE_BYTES, PROTOCOL_FEATURES, PROTOCOL_VERSION, PROTOCOL_VERSIONS } from '../protocol/limits';
import { VERSION } from '../protocol/version';
import { AcceptWatch } from './accept-watch';
import { admissionRefusal, type Refusal } from './admission';
import { ReplyCache } from './reply-cache';
import { ControlSockets } from './control-sockets';
import { allows, makePolicy, type AccessOptions, type AccessPolicy } from './access';
import { decideHandout, grantOf, statusScope } from './grants';
import { scopeStatus } from './status-scope';
import { auditEvent, type AuditEvent } from './audit';
import { checkControlDirectory, checkSocketPathLength, listenerPidAt, lockPath } from './control-path';
import { HandoverCore, type CoreEvent, type Effect, type HoldFact } from '../core/handover-core';
import { holdFact } from './hold-fact';
import { Pauses } from './pauses';
import { HandoverStats } from '../metrics/handover-stats';
import { HolderCache, socketInode, type HoldersScan } from '../holders/holders';
import { createListener, type OwnedListener } from './listeners';
import { recordedSockets, recordSockets, socketsFile, type RecoveredFrom } from './recover';
import { SlotSockets } from './slot-sockets';
import { Deadlines } from './deadlines';
import { ListenerSet } from './listener-set';
import { buildStatus, inodesToScan } from './status-report';
import { Sampler } from './sampler';
import { Session } from './session';
import { createAll, grantChanges, planListeners, type ReloadResult, type ReloadSettings } from './reload';
import type { BrokerOptions, InternalBrokerOptions } from './options';
import type { BrokerEvents, TakeoverEvent } from './events';
import { retuneListener } from './retune';
import { RefusalTally } from './refusal-tally';
import { FdsInFlight, fdsInFlightPerUid } from './fds-in-flight';
import { softFdLimit } from '../client/fd-headroom';
import type { ListenerSpec } from './spec';
import { takeInheritedListeners } from '../systemd/listen-fds';
import { handoffOptions, takeoverRefusal } from '../takeover/options';
import { Handoff, sendHandoff, type HandoffHost } from '../takeover/handoff';
import {
  ACCEPT_SAMPLE_IDLE_INTERVAL_MS, ACCEPT_SAMPLE_INTERVAL_MS, HOLDERS_STATUS_TIMEOUT_MS, DEFAULT_CONTROL_MODE, DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_LISTEN_BACKLOG, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_CLIENTS_PER_UID, DEFAULT_MAX_QUEUED_MESSAGES,
  DEFAULT_READY_TIMEOUT_MS, DEFAULT_RETIRE_TIMEOUT_MS, DEFAULT_STALL_TIMEOUT_MS, DEFAULT_STANDBY_MS,
  GENERATION_CHECK_INTERVAL_MS, REJOIN_GRACE_MS, TAKEOVER_FLUSH_MS, TAKEOVER_REJOIN_WINDOW_MS,
  REFUSAL_SUMMARY_INTERVAL_MS, FDS_IN_FLIGHT_SHARE_PER_UID, MIN_FDS_IN_FLIGHT_PER_UID, DEFAULT_UNREAD_HANDOUT_TIMEOUT_MS,
} from './defaults';
import { pidAlive } from '../native/process';

export type { AuditEvent } from './audit';
export type { ReloadResult, ReloadSettings } from './reload';

const debug = debuglog('fdbroker');

export type { BrokerOptions, InternalBrokerOptions } from './options';
export type { AdoptEvent, BrokerEvents, RollbackEvent, StallEvent, StopEvent, TakeoverEvent } from './events';


/** A request refused by the grants, as deny() records it. */
type Denial = Refusal & { asked?: string[] };

export class Broker extends EventEmitter<BrokerEvents> {
  readonly controlPath: string;
  readonly startedAt = new Date();
  private readonly listenerSet = new ListenerSet();
  /** run --instances: each tcp listener's SO_REUSEPORT group, one socket per slot above 0. */
  private slotSockets = new SlotSockets(1);
  private readonly clients = new Map<number, Session>();
  /**
   * Every channel not yet closed, including clients being dropped that still
   * flush their last replies: their queued messages name the registry's fd
   * numbers, so all must be closed before the registry closes its fds.
   */
  private readonly channels = new Set<Channel>();
  /** The handover policy: every generation decision is its, this class carries them out. */
  private readonly core: HandoverCore;
  /** Generation number -> its client's session (none for detached or embedded ones). */
  private readonly sessionsByGeneration = new Map<number, Session>();
  private readonly acceptWatch: AcceptWatch;
  private readonly checkTimer: NodeJS.Timeout;
  private readonly sampler: Sampler | undefined;
  private readonly opts: Required<Pick<BrokerOptions, 'handshakeTimeoutMs' | 'idleTimeoutMs' | 'maxClients' | 'maxQueuedMessages' | 'maxClientsPerUid'>>;
  /** Clients that have not sent hello yet, and (with an idle timeout) greeted ones: one timer each, not one per client. */
  private readonly handshakeDeadlines: Deadlines<Session>;
  private readonly idleDeadlines: Deadlines<Session> | undefined;
  private policy: AccessPolicy;
  /** The spec of each listener created from one (not those taken from systemd or a predecessor): what a reload compares. */
  private readonly defaultBacklog: number;
  /**
   * Where reload() gets its settings (fdbroker serve --config sets it: the
   * file re-read, with the command line's flags over it). Throws to refuse.
   */
  reloadSource: (() => ReloadSettings) | undefined;
  /** The file reloadSource reads, if any: named in the handoff, so a successor not given one can read it too. */
  configPath: string | undefined;
  /**
   * Why a takeover must be refused now (ERR_FDBROKER_NOT_PERMITTED with this
   * text), or undefined. SystemdLink sets it: a supervisor that watches this
   * pid would see it exit and stop the service.
   */
  takeoverRefusal: string | undefined;
  private readonly brokerUid = process.getuid?.() ?? 0;
  /** Whether a ready is checked against /proc (BrokerOptions.verifyReady). */
  private readonly verifyReady: boolean;
  private readonly holders = new HolderCache();
  /** Paused listeners (`fdbroker pause`) and the notices that go with them (pauses.ts). */
  private readonly pauses = new Pauses({
    generations: () => [...this.sessionsByGeneration].flatMap(([number, session]) => {
      const g = this.core.get(number);
      return g ? [{ session, number, pid: g.pid, state: g.state, adopted: g.adopted, pausable: session.pausable }] : [];
    }),
    changed: (paused, resumed, byDeadline) => {
      if (paused.length > 0) this.emit('paused', paused);
      if (resumed.length > 0) this.emit('unpaused', resumed, byDeadline);
    },
  });
  /** Handover counters and histograms, fed by this broker's events: in status, and what metrics.ts serves. */
  readonly stats = new HandoverStats(this);
  /** PATH and PATH.owner (control-sockets.ts). */
  private readonly control: ControlSockets;
  /** Embedded mode: the number of the app's own generation. */
  readonly selfGeneration: number | undefined;
  private nextClientId = 1;
  /** Refusals at accept: the first of a uid reported as any refusal, the rest counted (refusal-tally.ts). */
  private readonly refusals: RefusalTally;
  /** The encoded replies of refusals at accept: a flood from one uid encodes its reply once. */
  private readonly refusalReplies = new ReplyCache();
  /** Requests refused by the grants, the same way per uid and request (grants.ts). */
  private readonly denials: RefusalTally;
  /** Unread handouts of uids other than the broker's and root (fds-in-flight.ts). */
  private readonly inFlight = new FdsInFlight();
  private readonly maxFdsInFlightPerUid: number;
  private readonly unreadHandoutTimeoutMs: number;
  private closed = false;
  /** The options this broker was started with, as a reload changed them since: a successor gets them (takeover). */
  private given: BrokerOptions;
  /** A takeover in flight (one at a time): the old broker's side of it. */
  private handoff: Handoff | undefined;
  /** Taken over: the successor's pid. From then on, clients leaving change nothing here. */
  private movedTo: number | undefined;

  private constructor(options: InternalBrokerOptions) {
    super();
    this.given = options;
    this.slotSockets = new SlotSockets(options.instances ?? 1);
    this.controlPath = options.controlPath;
    this.control = new ControlSockets(options.controlPath, { mode: options.mode ?? DEFAULT_CONTROL_MODE, group: options.group }, {
      attach: (acceptor, owner) => this.listenOn(acceptor, owner),
      warn: (err) => this.warnOrKeep(err),
    });

    this.maxFdsInFlightPerUid = options.maxFdsInFlightPerUid
      ?? fdsInFlightPerUid(softFdLimit(), FDS_IN_FLIGHT_SHARE_PER_UID, MIN_FDS_IN_FLIGHT_PER_UID);
    this.unreadHandoutTimeoutMs = options.unreadHandoutTimeoutMs ?? DEFAULT_UNREAD_HANDOUT_TIMEOUT_MS;
    this.refusals = new RefusalTally(options.refusalSummaryIntervalMs ?? REFUSAL_SUMMARY_INTERVAL_MS,
      (cred, r) => this.reportRefusal(cred, r), (summary) => this.emit('refusals', summary));
    this.denials = new RefusalTally(options.refusalSummaryIntervalMs ?? REFUSAL_SUMMARY_INTERVAL_MS,
      (cred, r, op) => this.reportDenial(cred, r as Denial, op), (summary) => this.emit('refusals', summary));
    this.opts = {
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      maxClients: options.maxClients ?? DEFAULT_MAX_CLIENTS,
      maxQueuedMessages: options.maxQueuedMessages ?? DEFAULT_MAX_QUEUED_MESSAGES,
      maxClientsPerUid: options.maxClientsPerUid ?? DEFAULT_MAX_CLIENTS_PER_UID,
    };
    this.policy = makePolicy(this.brokerUid, options.access);
    this.handshakeDeadlines = new Deadlines(this.opts.handshakeTimeoutMs, (state) => this.timeout(state, 'ERR_FDBROKER_TIMEOUT',
      `no hello within ${this.opts.handshakeTimeoutMs} ms`));
    this.idleDeadlines = this.opts.idleTimeoutMs > 0 ? new Deadlines(this.opts.idleTimeoutMs, (state) => this.timeout(state, 'ERR_FDBROKER_TIMEOUT',
      `idle for ${this.opts.idleTimeoutMs} ms`)) : undefined;
    this.defaultBacklog = options.backlog ?? DEFAULT_LISTEN_BACKLOG;
    this.verifyReady = options.verifyReady !== false;
    const stallMs = options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
    const now = Date.now();
    this.core = new HandoverCore({
      readyTimeoutMs: options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS,
      retireTimeoutMs: options.retireTimeoutMs ?? DEFAULT_RETIRE_TIMEOUT_MS,
      standbyMs: options.self !== undefined ? 0 : options.standbyMs ?? DEFAULT_STANDBY_MS,
      stallMs,
      epoch: now,
      startedMs: now,
      rejoinGraceMs: REJOIN_GRACE_MS,
      detachedWindowMs: TAKEOVER_REJOIN_WINDOW_MS,
      oneStartingAtATime: options.self !== undefined,
    }, options.generations, now);
    this.acceptWatch = new AcceptWatch(stallMs);
    this.checkTimer = setInterval(() => {
      this.tick();
      this.checkListeners();
      if (this.listenerSet.removed.pendingCloses > 0) this.listenerSet.removed.closeUnqueued(this.queuedFd);
      if (this.unreadHandoutTimeoutMs > 0) {
        for (const s of this.inFlight.heldSince(Date.now() - this.unreadHandoutTimeoutMs)) {
          this.timeout(s, 'ERR_FDBROKER_TIMEOUT', `did not read its listeners within ${this.unreadHandoutTimeoutMs} ms`);
        }
      }
    }, GENERATION_CHECK_INTERVAL_MS);
    this.checkTimer.unref();
    if (stallMs > 0) {
      this.sampler = new Sampler(() => this.sampleQueues(), ACCEPT_SAMPLE_INTERVAL_MS, ACCEPT_SAMPLE_IDLE_INTERVAL_MS,
        () => this.core.hasStandby());
    }
    if (options.self === undefined) {
      this.selfGeneration = undefined;
    } else {
      const self = this.core.join({ clientId: 0, pid: process.pid, uid: process.getuid?.() ?? -1, ...(options.self.label ? { label: options.self.label } : {}) },
        [], now, { asNumber: options.self.number, self: true });
      this.selfGeneration = self.ok ? self.number : undefined;
    }
  }

  /** Warnings given while nobody listened for them (during start()), kept for the first 'warning' listener. */
  private readonly startWarnings: Error[] = [];

  private warnOrKeep(err: Error): void {
    if (this.listenerCount('warning') > 0) this.emit('warning', err);
    else this.startWarnings.push(err);
  }

  /** The warnings start() gave before anyone listened (e.g. serving without PATH.owner); each is returned once. */
  takeStartWarnings(): Error[] {
    return this.startWarnings.splice(0);
  }

  /** Carries out the core's decisions: notices to generations, events to listeners. */
  private execute(effects: Effect[], stall?: { listener: ListenerInfo; queued: number; since: number }): void {
    for (const e of effects) {
      if (e.type === 'send') this.sessionsByGeneration.get(e.to)?.reply(e.msg);
      else if (e.type === 'retireSelf') this.emit('retireSelf', e.by);
      else this.announce(e.event, stall);
    }
  }

  private announce(ev: CoreEvent, stall?: { listener: ListenerInfo; queued: number; since: number }): void {
    switch (ev.type) {
      // Who holds what changed: the next status scans again rather than reuse a scan from before.
      case 'join': this.holders.clear(); this.emit('join', ev.generation); return;
      case 'rejoin': this.emit('rejoin', ev.generation); return;
      case 'ready':
        debug('generation %d ready; retiring %s', ev.generation.number, ev.retire.join(',') || 'none');
        this.acceptWatch.reset();
        if (this.core.hasStandby()) this.sampler?.hurry();
        this.emit('ready', ev.generation, ev.retire);
        return;
      case 'leave': this.holders.clear(); this.emit('leave', ev.generation); return;
      case 'rollback':
        debug('generation %d failed (%s); resuming %s', ev.failed.number, ev.reason, ev.resumed ?? 'none');
        this.acceptWatch.reset();
        this.emit('rollback', { failed: ev.failed, reason: ev.reason, resumed: ev.resumed });
        return;
      case 'stopped':
        debug('generation %d stopped; resuming %s', ev.generation.number, ev.resumed ?? 'none');
        this.acceptWatch.reset();
        this.emit('stop', { generation: ev.generation, resumed: ev.resumed });
        return;
      case 'resumed':
        debug('generation %d resumes: nobody ready above it', ev.generation);
        this.acceptWatch.reset();
        this.emit('resume', ev.generation);
        return;
      case 'release':
        debug('generation %d: standby over', ev.generation);
        this.emit('release', ev.generation);
        return;
      case 'overdue': this.emit('overdue', ev.generation, ev.what); return;
      case 'notHolding':
        debug('generation %d refused: holds none of %s', ev.generation.number, ev.missing.join(','));
        this.emit('notHolding', ev.generation, ev.missing);
        return;
      case 'stall':
        if (stall) this.emit('stall', { listener: stall.listener, queued: stall.queued, generation: ev.generation, since: new Date(stall.since) });
        return;
    }
  }

  /** Deadlines, standby windows and heartbeats (the core decides; nothing while a takeover holds the table). */
  private tick(): void {
    if (this.closed || this.movedTo !== undefined) return;
    this.pruneDetached();
    this.execute(this.core.tick(Date.now()));
  }

  /**
   * Takeover (the successor): a generation imported from the predecessor whose
   * process has exited will never rejoin: it leaves now, before any decision
   * counts it as serving (instead of after the rejoin window).
   */
  private pruneDetached(): void {
    if (this.core.isFrozen) return;
    for (const d of this.core.detached()) {
      if (!pidAlive(d.pid)) this.execute(this.core.leave(d.number, Date.now()));
    }
  }

  /**
   * Creates every listener, then the control socket. On any error, whatever
   * was created is closed again and the error is thrown.
   */
  static start(options: BrokerOptions): Broker {
    assertSupportedRuntime(); // Bun, Deno: ERR_FDBROKER_UNSUPPORTED_RUNTIME, before any fd is opened
    return Broker.startInternal(options);
  }

  /** @internal start() with the options only fdbroker itself passes (see InternalBrokerOptions). */
  static startInternal(options: InternalBrokerOptions): Broker {
    // Owned from here: whatever is not yet in the registry when start() fails is closed below.
    const pendingFds = new Set((options.listenerFds ?? []).map((l) => l.fd));
    let broker: Broker;
    try {
      broker = new Broker(options);
    } catch (err) {
      for (const fd of pendingFds) native().close(fd);
      throw err;
    }
    // Check the directory and take the path's lock before binding any
    // listener: a second broker on the same path is refused as such, not
    // with the EADDRINUSE of a port the first one holds.
    let lock: PathLock | undefined;
    try {
      checkSocketPathLength(options.controlPath);
      if (!options.insecureDir) checkControlDirectory(options.controlPath);
      if (!options.takeover) lock = lockPath(options.controlPath);
    } catch (err) {
      broker.stopTimers();
      for (const fd of pendingFds) native().close(fd);
      throw err;
    }
    let recorded: Set<number> | undefined;
    try {
      if (options.inherit !== false) {
        const inherited = takeInheritedListeners(process.env, options.backlog);
        for (const l of inherited) pendingFds.add(l.fd);
        for (const l of inherited) {
          pendingFds.delete(l.fd);
          broker.adopt(l);
        }
      }
      const given = options.listenerFds ?? [];
      const described = describeSockets(given.map((l) => l.fd));
      given.forEach((l, i) => {
        const d = described[i]!;
        const problem = d instanceof Error ? `cannot be inspected (${d.message})` : matchesInfo(d, l.info);
        if (problem) throw new FdbrokerError('ERR_FDBROKER_BAD_LISTENER', `listener "${l.info.name}" ${problem}`);
      });
      for (const l of given) {
        pendingFds.delete(l.fd);
        broker.adopt({ info: l.info, fd: l.fd }, l.spec);
      }
      for (const spec of options.listeners ?? []) {
        if (broker.listenerSet.has(spec.name)) {
          throw new FdbrokerError('ERR_FDBROKER_DUPLICATE_NAME', `two listeners are named "${spec.name}"`);
        }
        // Not in a takeover (the old broker serves on and holds what it recorded); never a socket this broker holds already.
        recorded ??= options.recover !== false && !options.takeover
          ? new Set([...recordedSockets(options.controlPath)].filter((i) => !broker.listenerSet.all().some((l) => broker.listenerSet.inodeOf(l) === i)))
          : new Set();
        const l = createListener(spec, broker.defaultBacklog, { insecureDir: options.insecureDir, recover: recorded, reusePort: broker.slotSockets.wants(spec) });
        broker.adopt(l, spec);
        if (l.recoveredFrom) broker.recovered.push({ listener: l.info, from: l.recoveredFrom });
        if (broker.slotSockets.wants(spec) && l.info.port !== undefined) broker.slotSockets.create(spec, l.info.port, spec.backlog ?? broker.defaultBacklog);
      }
      // Takeover: received listeners that the configuration names stay the configuration's (a reload may change them).
      for (const spec of options.receivedSpecs ?? []) {
        const rec = broker.listenerSet.get(spec.name);
        if (rec) rec.spec = spec;
      }
      // An embedded broker's listeners die with its app; a side path (gen.expose) is no path a broker restarts on.
      broker.recordsSockets = options.recover !== false && options.self === undefined;
      broker.control.open({ takeover: options.takeover, lock, withOwner: broker.recordsSockets });
      lock = undefined;
    } catch (err) {
      broker.stopTimers();
      broker.listenerSet.closeAll();
      broker.slotSockets.closeAll();
      for (const fd of pendingFds) native().close(fd);
      lock?.release();
      throw err;
    }
    broker.recordSockets();
    return broker;
  }

  /**
   * `owner`: PATH.owner's acceptor. The client limit (--max-clients) is not
   * applied there: only the broker's user and root reach it, and other
   * users' clients filling the limit must not lock them out.
   */
  private listenOn(acceptor: Acceptor, owner: boolean): void {
    // A peer with no grant (or over a client limit) is refused at accept: one reply and a close, no channel or session.
    acceptor.admit = (cred) => {
      const r = this.admission(cred, owner);
      if (!r) return undefined;
      this.refusals.record(cred, r);
      return { code: r.code, reply: this.refusalReplies.get(r) };
    };
    acceptor.on('connection', (fd, cred) => this.onConnection(fd, cred, owner));
    acceptor.on('warning', (err) => this.emit('warning', err));
  }

  private stopTimers(): void {
    clearInterval(this.checkTimer);
    this.pauses.close();
    this.refusals.close();
    this.denials.close();
    this.sampler?.stop();
  }

  /** The listeners' fds, for an app that embeds this broker (still owned by the broker). */
  listenerFdsForSelf(): Array<{ info: ListenerInfo; fd: number }> {
    return this.listenerSet.all().map((l) => ({ info: l.info, fd: l.fd }));
  }

  /** Embedded mode: the app's own generation serves now. Older generations are told to retire. */
  markSelfReady(): void {
    if (this.selfGeneration === undefined) throw new FdbrokerError('ERR_FDBROKER_READY_REFUSED', 'this broker has no self generation');
    const result = this.core.ready(this.selfGeneration, Date.now());
    if (!result.ok) throw new FdbrokerError('ERR_FDBROKER_READY_REFUSED', `generation ${this.selfGeneration} cannot become ready (${result.reason})`);
    this.execute(result.effects);
  }

  /**
   * Embedded mode: a successor that renamed its control socket over our path
   * died before ready. If nothing answers on the path, bind it again.
   */
  private reclaimPath(): void {
    if (this.control.reclaim()) this.emit('reclaimed');
  }

  /**
   * Creates a listener from `spec` and hands it out from now on (later adopts
   * and joins get it); emits 'listenerAdded'. Throws, changing nothing, when
   * the name is taken or the socket cannot be created. (Not `addListener`:
   * that is EventEmitter's; so is `removeListener`.)
   */
  addNamedListener(spec: ListenerSpec): ListenerInfo {
    this.refuseDuringTakeover('add a listener');
    if (this.listenerSet.has(spec.name)) throw new FdbrokerError('ERR_FDBROKER_DUPLICATE_NAME', `a listener is already named "${spec.name}"`);
    const l = createListener(spec, this.defaultBacklog, { insecureDir: this.given.insecureDir });
    this.register(l, spec);
    return l.info;
  }

  /**
   * Stops handing out `name` and closes the broker's copy; processes that hold
   * it keep their copies (and serve on them) until they retire. Status lists
   * it with `removed: true` while any process holds it. Emits 'listenerRemoved'.
   * Throws ERR_FDBROKER_UNKNOWN_LISTENER. These changes, and a reload, are
   * refused while a takeover is in flight (ERR_FDBROKER_UPGRADE_IN_PROGRESS).
   */
  removeNamedListener(name: string): ListenerInfo {
    this.refuseDuringTakeover('remove a listener');
    const l = this.listenerSet.remove(name, this.queuedFd);
    this.acceptWatch.forget(name);
    this.pauses.forget(name);
    debug('listener %s removed', name);
    this.emit('listenerRemoved', l.info);
    return l.info;
  }

  /**
   * A successor in flight holds the listeners and options as they were handed:
   * a change here would be lost when it commits (or resurrected, for a removal).
   */
  private refuseDuringTakeover(what: string): void {
    const t = this.takeoverInFlight();
    if (!t) return;
    throw new FdbrokerError('ERR_FDBROKER_UPGRADE_IN_PROGRESS',
      `cannot ${what} while pid ${t.by.pid} takes over this broker (it has the listeners and grants as they were): try again once the takeover is over, on whichever broker serves ${this.controlPath}`);
  }

  /** Replaces the grants; they apply to requests (and connections) from now on, not to clients already connected. */
  setAccess(access: AccessOptions): void {
    this.refuseDuringTakeover('change the grants');
    this.policy = makePolicy(this.brokerUid, access);
    this.given = { ...this.given, access }; // what a successor gets (takeover)
  }

  /** Replaces the client limits (absent fields: the defaults); they apply to connections from now on. */
  setLimits(limits: { maxClients?: number; maxClientsPerUid?: number }): void {
    this.refuseDuringTakeover('change the limits');
    this.opts.maxClients = limits.maxClients ?? DEFAULT_MAX_CLIENTS;
    this.opts.maxClientsPerUid = limits.maxClientsPerUid ?? DEFAULT_MAX_CLIENTS_PER_UID;
    this.given = { ...this.given, maxClients: limits.maxClients, maxClientsPerUid: limits.maxClientsPerUid };
  }

  /**
   * Re-reads the settings from `reloadSource` and applies them (applyReload).
   * Emits 'reloading', then 'reloaded' or 'reloadFailed'. Throws
   * ERR_FDBROKER_NO_CONFIG when there is no source, or the source's error.
   */
  reload(): ReloadResult {
    this.emit('reloading');
    try {
      if (!this.reloadSource) {
        throw new FdbrokerError('ERR_FDBROKER_NO_CONFIG', 'this broker has no configuration to reload: start it with `fdbroker serve --config FILE`');
      }
      const result = this.applyReload(this.reloadSource());
      this.recordSockets();
      this.emit('reloaded', result);
      return result;
    } catch (err) {
      this.emit('reloadFailed', err as Error);
      throw err;
    }
  }

  /**
   * Applies `settings` atomically: every new socket (new names, and names
   * whose spec changed) is created first; if one fails, those created are
   * closed and nothing changes (ERR_FDBROKER_RELOAD_FAILED, the system error
   * as cause). Then removed and changed listeners are removed, new and
   * changed ones added (a change is a remove and an add: the new socket is
   * bound while the old one still listens, so a change must move to another
   * address; a change of options only, nodelay or backlog, is applied to the
   * held socket in place), and the grants and limits replaced.
   */
  applyReload(settings: ReloadSettings): ReloadResult {
    this.refuseDuringTakeover('reload');
    const plan = planListeners(this.listenerSet.specs(), settings.listeners, this.defaultBacklog);
    const taken = plan.add.find((s) => this.listenerSet.has(s.name));
    if (taken) {
      throw new FdbrokerError('ERR_FDBROKER_DUPLICATE_NAME',
        `listener "${taken.name}" exists and was not created from the configuration (systemd or --adopt-from): a reload cannot replace it`);
    }
    const count = this.listenerSet.size - plan.remove.length + plan.add.length;
    if (count > MAX_LISTENERS) throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `a broker holds at most ${MAX_LISTENERS} listeners, not ${count}`);
    // An empty or half-written file must not take the service down.
    if (count === 0) {
      throw new FdbrokerError('ERR_FDBROKER_RELOAD_FAILED',
        'reload refused, nothing changed: it would leave the broker with no listeners (an empty or truncated file?); stop the broker instead');
    }
    const created = createAll([...plan.add, ...plan.change], this.defaultBacklog, new Set(plan.change.map((s) => s.name)), { insecureDir: this.given.insecureDir });
    // Options changed at the same address: the held socket takes them in place (src/broker/retune.ts).
    try {
      for (const s of plan.retune) retuneListener(this.listenerSet.select([s.name])[0]!.fd, s, this.defaultBacklog);
    } catch (err) {
      for (const c of created) native().close(c.l.fd);
      throw new FdbrokerError('ERR_FDBROKER_RELOAD_FAILED', `reload refused: ${(err as Error).message}`, { cause: err });
    }
    for (const s of plan.retune) {
      const rec = this.listenerSet.select([s.name])[0]!;
      rec.spec = s;
      if (rec.info.kind !== 'udp') rec.info.backlog = s.backlog ?? this.defaultBacklog;
    }
    for (const name of [...plan.remove, ...plan.change.map((s) => s.name)]) this.removeNamedListener(name);
    for (const c of created) this.register(c.l, c.spec);
    const grants = grantChanges(this.given.access ?? {}, settings.access ?? {});
    this.setAccess(settings.access ?? {});
    this.setLimits(settings.limits ?? {});
    return { added: plan.add.map((s) => s.name), removed: plan.remove, changed: [...plan.change, ...plan.retune].map((s) => s.name), grants };
  }

  private register(l: OwnedListener, spec: ListenerSpec): void {
    this.adopt(l, spec);
    debug('listener %s added', spec.name);
    this.emit('listenerAdded', l.info);
  }

  /** Whether a reply still queued for some client names `fd` (RemovedListeners closes it only after). */
  private readonly queuedFd = (fd: number): boolean => [...this.channels].some((ch) => ch.queues(fd));

  /**
   * Listeners this broker took back at start from a stopped broker's
   * generations instead of binding them anew (BrokerOptions.recover): the
   * caller says so once, since no event can reach it before start() returns.
   */
  readonly recovered: { listener: ListenerInfo; from: RecoveredFrom }[] = [];

  /**
   * The listening socket the metrics endpoint serves on (--metrics), owned
   * here: never handed to a client, handed to a takeover successor with the
   * listeners (so the port is never free), closed with the broker.
   */
  metricsSocket: OwnedListener | undefined;

  /** Takes ownership of the metrics endpoint's socket (closing one held before). */
  holdMetricsSocket(l: OwnedListener | undefined): void {
    if (this.metricsSocket && this.metricsSocket.fd !== l?.fd) native().close(this.metricsSocket.fd);
    this.metricsSocket = l;
  }

  /** Whether this broker keeps PATH.sockets (set at start). */
  private recordsSockets = false;

  /** PATH.sockets: what a broker started later on this path may take back from the generations (recover.ts). */
  private recordSockets(): void {
    if (!this.recordsSockets) return;
    const inodes = this.listenerSet.all().map((l) => this.listenerSet.inodeOf(l)).filter((i): i is number => i !== undefined);
    const err = recordSockets(this.controlPath, inodes);
    if (err) debug('cannot record the listeners in %s: %s', socketsFile(this.controlPath), err.message);
  }

  private adopt(l: OwnedListener, spec?: ListenerSpec): void {
    try {
      this.listenerSet.add(l, spec);
    } catch (err) {
      native().close(l.fd);
      throw err;
    }
  }

  /** What `fdbroker status` shows (with holders when a /proc scan is given). */
  status(id = 0, scan?: HoldersScan): StatusMessage {
    return buildStatus({
      id, controlPath: this.controlPath, startedAt: this.startedAt, listeners: this.listenerSet, closed: this.closed,
      stalledSince: (name) => this.acceptWatch.stalledSince(name),
      pause: (name, now) => ({ info: this.pauses.table.get(name), ms: this.pauses.table.pausedMs(name, now) }),
      clients: [...this.clients.values()].map((c) => c.info), generations: this.core.list(), metrics: this.stats.snapshot(), scan,
    });
  }

  /**
   * status() with every holder of each listener: a /proc scan, shared with
   * other requests within a second (HolderCache), given up after
   * HOLDERS_STATUS_TIMEOUT_MS (the answer then has no holders).
   */
  async statusWithHolders(id = 0): Promise<StatusMessage> {
    const scan = await Promise.race([
      this.holders.get(inodesToScan(this.listenerSet)).catch(() => undefined),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), HOLDERS_STATUS_TIMEOUT_MS).unref()),
    ]);
    return this.status(id, scan);
  }

  /**
   * Answers status with every holder of each listener (a /proc scan, cached
   * for a second). The client's channel is paused meanwhile, so its later
   * requests are answered after this one, in order.
   */
  private replyStatus(state: Session, id: number, withHolders = true): void {
    // What this peer may see: every listener for the owner, its granted names otherwise (status-scope.ts).
    const scope = statusScope(this.policy, state.info);
    if (!withHolders) {
      state.reply(scopeStatus(this.status(id), scope));
      return;
    }
    state.channel.pause();
    const failed = (err: unknown) => {
      this.emit('warning', err as Error);
      this.fatal(state, new FdbrokerError('ERR_FDBROKER_INTERNAL', `the broker failed on a status request: ${(err as Error).message}`));
    };
    void this.statusWithHolders(id).then((s) => {
      if (this.closed || !this.clients.has(state.info.id)) return;
      try {
        state.reply(scopeStatus(s, scope));
      } catch (err) {
        failed(err);
        return;
      }
      state.channel.resume();
    }, (err: unknown) => {
      if (!this.closed && this.clients.has(state.info.id)) failed(err);
    });
  }

  listenerInfos(): ListenerInfo[] { return this.listenerSet.infos(); }
  get clientCount(): number { return this.clients.size; }

  /** Whether close() unlinked the control path (it still named this broker's socket). */
  pathRemoved = false;

  /** Disconnects every client, closes the control socket (removing its path if still ours) and every listener. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopTimers();
    this.pathRemoved = this.control.close();
    this.inFlight.closeAll();
    for (const c of this.clients.values()) this.drop(c);
    for (const ch of this.channels) ch.close();
    this.channels.clear();
    this.listenerSet.closeAll();
    this.holdMetricsSocket(undefined);
    this.slotSockets.closeAll();
  }

  private reportRefusal(cred: PeerCred, r: Refusal): void {
    const info: ClientInfo = typeof cred === 'number'
      ? { id: this.nextClientId++, pid: 0, uid: -1, gid: -1, connectedAt: new Date().toISOString(), adopted: [] }
      : { id: this.nextClientId++, pid: cred.pid, uid: cred.uid, gid: cred.gid, connectedAt: new Date().toISOString(), adopted: [] };
    this.auditLog('connect', info, r.code);
    this.emit('clientError', info, new FdbrokerError(r.code, r.message));
  }

  /** `given`: the credentials the acceptor read (and admitted). */
  /** Why a peer with `cred` may not connect now (admission.ts), on PATH.owner (`owner`) or PATH. */
  private admission(cred: PeerCred, owner: boolean): Refusal | undefined {
    return admissionRefusal(cred, {
      policy: this.policy, brokerUid: this.brokerUid, clients: this.clients.size, maxClients: owner ? Infinity : this.opts.maxClients,
      maxClientsPerUid: this.opts.maxClientsPerUid, clientsOfUid: (uid) => this.clientsOfUid(uid),
    });
  }

  private onConnection(fd: number, given: PeerCred | undefined, owner: boolean): void {
    const n = native();
    const c = n.constants;
    // Refuse SCM_RIGHTS at the socket (Linux >= 6.16): a client's sendmsg with
    // fds then fails with EPERM in the client and nothing reaches the broker.
    const pr = n.setsockoptInt(fd, c.SOL_SOCKET, c.SO_PASSRIGHTS, 0);
    if (pr < 0 && pr !== ENOPROTOOPT && pr !== EPERM) debug('SO_PASSRIGHTS failed: %d', pr);
    const cred = given ?? n.peercred(fd);
    const info: ClientInfo = {
      id: this.nextClientId++,
      pid: typeof cred === 'number' ? 0 : cred.pid,
      uid: typeof cred === 'number' ? -1 : cred.uid,
      gid: typeof cred === 'number' ? -1 : cred.gid,
      connectedAt: new Date().toISOString(),
      adopted: [],
    };
    // The broker takes no fds. Where SO_PASSRIGHTS is missing, receive with
    // room for at most one (more is cut off by MSG_CTRUNC and closed by the
    // native layer); onMessage closes any that arrive and drops the client.
    let channel: Channel;
    try {
      channel = new Channel(fd, { maxFdsPerMessage: 0, maxQueuedMessages: this.opts.maxQueuedMessages });
    } catch (err) {
      n.close(fd);
      this.emit('warning', err as Error);
      return;
    }
    this.channels.add(channel);
    const state = new Session(info, channel, (err) => this.emit('clientError', info, err));
    // One 'close' listener per client (forget() is a no-op for a refused one, never added to clients).
    channel.on('close', () => {
      this.channels.delete(channel);
      this.forget(state);
    });
    // Fail closed: no credentials, or credentials without any grant, end the
    // client before it learns anything about the listeners. (The acceptor
    // asked the same at accept; asked again here, so no path can skip it.)
    const r = this.admission(cred, owner);
    if (r) {
      const refusal = new FdbrokerError(r.code, r.message);
      state.reply({ type: 'error', code: refusal.code, message: refusal.message });
      channel.end();
      this.auditLog('connect', info, refusal.code);
      this.emit('clientError', info, refusal);
      return;
    }
    this.clients.set(info.id, state);
    debug('client %d connected: pid %d uid %d', info.id, info.pid, info.uid);
    this.emit('connect', info);
    this.handshakeDeadlines.set(state);
    channel.on('message', (payload, fds) => this.onMessage(state, payload, fds));
    channel.on('error', (err) => {
      this.emit('clientError', info, err);
      this.forget(state);
    });
    channel.resume();
  }

  /** Connected clients of `uid`, counted without building an array (this runs on every connect). */
  private clientsOfUid(uid: number): number {
    let n = 0;
    for (const c of this.clients.values()) if (c.info.uid === uid) n++;
    return n;
  }

  private timeout(state: Session, code: 'ERR_FDBROKER_TIMEOUT', message: string): void {
    const err = new FdbrokerError(code, message);
    state.reply({ type: 'error', code, message });
    this.emit('clientError', state.info, err);
    this.drop(state, true);
  }

  private armIdle(state: Session): void {
    this.handshakeDeadlines.delete(state);
    this.idleDeadlines?.set(state);
  }

  private onMessage(state: Session, payload: Buffer, fds: number[]): void {
    // Fds from a client are never kept: close them before anything else.
    for (const fd of fds) native().close(fd);
    // Whatever a client sends, it ends that client at most: no exception
    // from handling one message may reach the event loop (and end the broker).
    try {
      this.handle(state, payload, fds.length);
    } catch (err) {
      this.emit('warning', err as Error);
      this.fatal(state, new FdbrokerError('ERR_FDBROKER_INTERNAL', `the broker failed on a request: ${(err as Error).message}`));
    }
  }

  private handle(state: Session, payload: Buffer, fdCount: number): void {
    let msg: ClientMessage;
    try {
      msg = decodeClientMessage(payload, fdCount);
    } catch (err) {
      this.fatal(state, err as FdbrokerError);
      return;
    }
    if (!state.greeted && msg.type !== 'hello') {
      this.fatal(state, new FdbrokerError('ERR_FDBROKER_PROTOCOL', `"${msg.type}" before "hello"`));
      return;
    }
    this.armIdle(state);
    if (msg.type === 'join' || msg.type === 'ready' || msg.type === 'rejoin') this.pruneDetached();
    // A takeover in flight freezes the generation table the successor got:
    // joins, readies and rejoins wait (unread) for its outcome.
    const t = this.takeoverInFlight();
    if (t && t.session !== state && (msg.type === 'join' || msg.type === 'ready' || msg.type === 'rejoin')) {
      t.hold(state, msg);
      return;
    }
    this.dispatch(state, msg);
  }

  private dispatch(state: Session, msg: ClientMessage): void {
    switch (msg.type) {
      case 'hello': {
        if (state.greeted) {
          this.fatal(state, new FdbrokerError('ERR_FDBROKER_PROTOCOL', 'a second "hello"'));
          return;
        }
        const version = negotiateVersion(msg.versions, PROTOCOL_VERSIONS);
        if (version === undefined) {
          const err = new FdbrokerError('ERR_FDBROKER_VERSION',
            `no common protocol version: the client speaks ${msg.versions.join(', ')}, this broker ${PROTOCOL_VERSIONS.join(', ')}`);
          state.reply({ type: 'error', code: err.code, message: err.message, versions: [...PROTOCOL_VERSIONS] });
          this.emit('clientError', state.info, err);
          this.drop(state, true);
          return;
        }
        state.greeted = true;
        state.reply({
          type: 'welcome', version,
          broker: { pid: process.pid, software: `fdbroker/${VERSION}`, embedded: this.selfGeneration !== undefined },
          features: [...PROTOCOL_FEATURES],
        });
        return;
      }
      case 'adopt':
        if (!this.permit(state, msg.id, 'adopt', msg.names ?? undefined)) return;
        this.handOut(state, msg.id, msg.names ?? null);
        return;
      case 'join':
        if (!this.permit(state, msg.id, 'join', msg.names ?? undefined)) return;
        if (state.generation !== undefined) {
          state.reply({ type: 'error', id: msg.id, code: 'ERR_FDBROKER_PROTOCOL', message: `already generation ${state.generation}` });
          return;
        }
        state.pausable = msg.pause === true;
        this.handOut(state, msg.id, msg.names ?? null, { label: msg.label ?? '', standby: msg.standby ?? 0, heartbeat: msg.heartbeat === true, spare: msg.spare === true, slot: msg.slot ?? 0 });
        return;
      case 'rejoin':
        if (!this.permit(state, msg.id, 'rejoin', msg.names ?? undefined)) return;
        this.onRejoin(state, msg);
        return;
      case 'ready':
        if (!this.permit(state, msg.id, 'ready')) return;
        this.onReady(state, msg.id);
        return;
      case 'status':
        if (!this.permit(state, msg.id, 'status')) return;
        this.replyStatus(state, msg.id, msg.holders !== false);
        return;
      case 'pong':
        if (state.generation !== undefined) this.core.pong(state.generation, msg.id);
        return;
      case 'leaving':
        // No answer: the connection's end that follows is a planned stop, not a crash.
        state.leaving = true;
        return;
      case 'takeover':
        this.onTakeover(state, msg);
        return;
      case 'committed':
        if (this.takeoverInFlight()?.session !== state || this.handoff!.id !== msg.id) {
          this.fatal(state, new FdbrokerError('ERR_FDBROKER_PROTOCOL', `"committed" ${msg.id} answers no takeover of this connection`));
          return;
        }
        this.onCommitted(state, msg.id);
        return;
      case 'reload':
        this.onReload(state, msg.id);
        return;
      case 'pause':
      case 'unpause':
        this.onPause(state, msg);
        return;
      case 'holding':
        // No answer: a report from a connection that is no generation, or one that serves, changes nothing.
        if (state.generation !== undefined) this.core.holding(state.generation, msg, Date.now());
        return;
    }
  }

  /**
   * A new broker asks for everything (PROTOCOL.md §2.9): only the broker's
   * own uid or root, one at a time, never an older version. It gets the
   * handoff (versions, options, generation table), then every listener's fd.
   * Nothing changes here until it commits: if it fails first, this broker
   * serves on as before.
   */
  private onTakeover(state: Session, msg: TakeoverMessage): void {
    const refusal = takeoverRefusal({
      uid: state.info.uid, permitted: allows(this.policy, state.info, 'takeover'), brokerUid: this.brokerUid,
      embedded: this.selfGeneration !== undefined, refusal: this.takeoverRefusal, inFlightBy: this.takeoverInFlight()?.by.pid,
      paused: this.pauses.table.list().map((p) => p.name),
      mine: { protocol: PROTOCOL_VERSION, software: VERSION }, theirs: msg,
    });
    if (refusal) {
      state.reply({ type: 'error', id: msg.id, code: refusal.code, message: refusal.message });
      this.auditLog('takeover', state.info, refusal.code);
      this.emit('clientError', state.info, refusal);
      return;
    }
    const listeners = this.listenerSet.all();
    const table = this.core.freeze();
    const by: TakeoverEvent = { pid: state.info.pid, software: msg.software, listeners: listeners.length, generations: table.generations.length };
    const broker = {
      pid: process.pid, software: VERSION, protocol: PROTOCOL_VERSION, startedAt: this.startedAt.toISOString(),
      ...(this.configPath !== undefined ? { config: this.configPath } : {}),
    };
    this.handoff = new Handoff(state, msg.id, by, this.handoffHost());
    if (!sendHandoff(state, msg.id, broker, handoffOptions(this.given), table, listeners, this.metricsSocket)) return; // dropped: its close aborts the takeover
    this.auditLog('takeover', state.info, 'ok', listeners.map((l) => l.info.name));
    debug('takeover by pid %d (%s): handed %d listeners, %d generations', by.pid, by.software, by.listeners, by.generations);
    this.emit('takeover', by);
  }

  private takeoverInFlight(): Handoff | undefined {
    return this.handoff && !this.handoff.isDone ? this.handoff : undefined;
  }

  /**
   * The successor says it answers on the path now: check that it does, then
   * move every generation to it and close. The ack carries the generations
   * that left here meanwhile: the successor's copy of the table still has them.
   */
  private onCommitted(state: Session, id: number): void {
    // Not merely unlinked or replaced by someone else: the successor itself listens there.
    const listener = listenerPidAt(this.controlPath);
    if (listener !== undefined && listener !== state.info.pid) {
      this.fatal(state, new FdbrokerError('ERR_FDBROKER_PROTOCOL', `"committed", but ${this.controlPath} `
        + `${typeof listener === 'string' ? listener : `is answered by pid ${listener}, not the successor (pid ${state.info.pid})`}: the takeover is off`));
      return;
    }
    const r = this.handoff!.commit();
    if (!r) {
      this.fatal(state, new FdbrokerError('ERR_FDBROKER_PROTOCOL', `"committed", but ${this.controlPath} is still this broker's socket: the takeover is off`));
      return;
    }
    state.reply({ type: 'ack', id, ...(r.left.length > 0 ? { left: r.left } : {}) });
    this.handoff!.handOver();
  }

  /** Takeover (the successor): generations the predecessor saw leave while it handed over. */
  applyForwardedLeaves(left: number[]): void {
    if (this.closed || left.length === 0) return;
    this.execute(this.core.applyForwarded(left, Date.now()));
  }

  private handoffHost(): HandoffHost {
    return {
      ownsPath: () => this.control.ownsPath(),
      // The successor itself answers there (not merely something: another user's socket is no successor to hand over to).
      // undefined: a listener whose queue is full, which only the successor could have renamed over our path.
      pathAnswers: () => {
        const pid = listenerPidAt(this.controlPath);
        return pid === undefined || pid === this.handoff?.by.pid;
      },
      reclaimPath: () => this.reclaimPath(),
      commitTable: () => this.core.commit(),
      abortTable: () => this.execute(this.core.abort(Date.now())),
      replay: (state, msg) => {
        try {
          this.dispatch(state, msg);
        } catch (err) {
          this.emit('warning', err as Error);
          this.fatal(state, new FdbrokerError('ERR_FDBROKER_INTERNAL', `the broker failed on a request: ${(err as Error).message}`));
        }
      },
      connected: (state) => this.clients.has(state.info.id) && !state.channel.isClosed,
      drop: (state) => this.drop(state, true),
      handOver: (by, held) => this.handOver(by, held),
      aborted: (by, reason) => {
        // The successor may have written PATH.sockets already: it is this broker's again.
        this.recordSockets();
        this.emit('takeoverAborted', by, reason);
      },
    };
  }

  /** Committed: every generation is told to rejoin the successor, every client's connection ends, then this broker closes. */
  private handOver(by: TakeoverEvent, held: Array<{ state: Session; msg: ClientMessage }>): void {
    if (this.movedTo !== undefined) return;
    this.movedTo = by.pid;
    this.stopTimers();
    // Stop accepting first: the path is the successor's (close() leaves a path that is not this socket's).
    this.control.close();
    // A held join or rejoin is answered: retry, on the path (the successor); a held ready is carried by the rejoin.
    for (const d of held) {
      if (d.msg.type === 'join' || d.msg.type === 'rejoin') {
        d.state.reply({ type: 'error', id: d.msg.id, code: 'ERR_FDBROKER_TAKEN_OVER',
          message: `this broker was taken over by pid ${by.pid} while the ${d.msg.type} waited: connect to ${this.controlPath} again` });
      }
    }
    for (const c of [...this.clients.values()]) {
      if (c.generation !== undefined) c.reply({ type: 'moved', generation: c.generation, to: by.pid });
      c.channel.end();
    }
    // The listeners' fds may be named by messages still queued: close once every channel has flushed (or after a bound).
    const deadline = Date.now() + TAKEOVER_FLUSH_MS;
    const finish = () => {
      if (this.channels.size > 0 && Date.now() < deadline) {
        setTimeout(finish, 10);
        return;
      }
      this.close();
      debug('taken over by pid %d', by.pid);
      this.emit('takenOver', by);
    };
    finish();
  }

  /** Takeover (the successor): takes the path's lock once the predecessor exits (ControlSockets.acquireLock). */
  acquirePathLock(): void {
    this.control.acquireLock();
  }

  /**
   * `fdbroker pause` / `fdbroker resume` (pauses.ts): the broker's own uid and
   * root only; not on an embedded broker (its own process accepts and has no
   * notice channel), nor while a takeover is in flight.
   */
  private onPause(state: Session, msg: PauseRequest | UnpauseRequest): void {
    const refuse = (err: FdbrokerError) => {
      state.reply({ type: 'error', id: msg.id, code: err.code, message: err.message });
      this.auditLog(msg.type, state.info, err.code, msg.names ?? undefined);
      this.emit('clientError', state.info, err);
    };
    if (state.info.uid !== this.brokerUid && state.info.uid !== 0) {
      refuse(new FdbrokerError('ERR_FDBROKER_NOT_PERMITTED', `uid ${state.info.uid} may not ${msg.type} this broker: only its own uid (${this.brokerUid}) and root may`));
      return;
    }
    if (this.selfGeneration !== undefined) {
      refuse(new FdbrokerError('ERR_FDBROKER_CANNOT_PAUSE', 'this broker is embedded in an app, which accepts on the listeners itself: it cannot be paused'));
      return;
    }
    let names: string[];
    try {
      this.refuseDuringTakeover(msg.type);
      names = this.listenerSet.select(msg.names ?? null).filter((l) => l.info.kind !== 'udp').map((l) => l.info.name);
    } catch (err) {
      refuse(err as FdbrokerError);
      return;
    }
    if (msg.type === 'pause') {
      try {
        this.pauses.pause(names, msg.forMs);
      } catch (err) {
        refuse(err as FdbrokerError);
        return;
      }
    } else {
      this.pauses.resume(msg.names ? names : null);
    }
    this.auditLog(msg.type, state.info, 'ok', names);
    const iso = (ms: number) => new Date(ms).toISOString();
    state.reply({ type: 'paused', id: msg.id, listeners: this.pauses.table.list().map((p) => ({ name: p.name, since: iso(p.since), until: iso(p.until) })) });
  }

  /** The broker's own uid, root, and uids a rule grants `reload` (--allow-uid does not) may reload. */
  private onReload(state: Session, id: number): void {
    if (!this.permit(state, id, 'reload')) return;
    let result: ReloadResult;
    try {
      result = this.reload();
    } catch (err) {
      const e = err as FdbrokerError;
      const cause = (e.cause as { code?: unknown } | undefined)?.code;
      const code = isErrorCode(e.code) ? e.code : 'ERR_FDBROKER_RELOAD_FAILED';
      state.reply({ type: 'error', id, code, message: e.message, ...(typeof cause === 'string' ? { cause } : {}) });
      this.auditLog('reload', state.info, code);
      return;
    }
    state.reply({ type: 'reloaded', id, ...result });
    this.auditLog('reload', state.info, 'ok', [...result.added, ...result.removed, ...result.changed]);
  }

  /** Checks the grant for `op` (grants.ts); refuses when missing (audited, counted per uid like refusals at accept). */
  private permit(state: Session, id: number, op: Exclude<AuditEvent['op'], 'pause' | 'unpause'>, names?: string[]): boolean {
    const grant = grantOf(op);
    if (allows(this.policy, state.info, grant)) return true;
    this.deny(state, id, op, { code: 'ERR_FDBROKER_NOT_PERMITTED',
      message: `uid ${state.info.uid} (gid ${state.info.gid}) may not ${op} on this broker; its owner can grant it with --grant 'uid=${state.info.uid} ${grant === 'adopt' ? 'adopt=NAME' : grant}'` }, names);
    return false;
  }

  /** Answers a request the grants refuse; the first of its uid and request per interval is audited and reported, the rest counted. */
  private deny(state: Session, id: number, op: AuditEvent['op'], r: Refusal & { names?: string[] }, asked?: string[]): void {
    state.reply({ type: 'error', id, code: r.code, message: r.message, ...(r.names ? { names: r.names } : {}) });
    // The tally hands back the objects it was given: the client's info, and the names asked for its audit line (never in a reply).
    const denial: Denial = { code: r.code, message: r.message, ...(asked ? { asked } : {}) };
    this.denials.record(state.info, denial, op);
  }

  private reportDenial(cred: PeerCred, r: Denial, op: string): void {
    const info = cred as ClientInfo; // deny() records a session's info
    this.auditLog(op as AuditEvent['op'], info, r.code, r.asked);
    this.emit('clientError', info, new FdbrokerError(r.code, r.message));
  }

  private auditLog(op: AuditEvent['op'], c: { pid: number; uid: number; gid: number }, result: string, names?: string[], generation?: number): void {
    if (this.listenerCount('audit') === 0) return;
    this.emit('audit', auditEvent(op, c, result, names, generation));
  }

  private handOut(state: Session, id: number, names: string[] | null, join?: { label: string; standby: number; heartbeat: boolean; spare: boolean; slot: number }): void {
    const op = join === undefined ? 'adopt' : 'join';
    // Per-name grants: a scoped peer gets only its names, and learns no others (grants.ts).
    const granted = decideHandout(this.policy, state.info, names, this.listenerSet.names(), op);
    if (!granted.ok) {
      this.deny(state, id, op, granted, names ?? undefined);
      return;
    }
    let selected: OwnedListener[];
    try {
      selected = this.listenerSet.select(granted.names);
    } catch (err) {
      const e = err as FdbrokerError & { names?: string[] };
      state.reply({ type: 'error', id, code: e.code, message: e.message, names: e.names });
      this.auditLog(op, state.info, e.code, names ?? undefined);
      this.emit('clientError', state.info, e);
      return;
    }
    // One handout at a time per client: fds sent and not yet read count
    // against the broker's user in the kernel (ETOOMANYREFS for everyone once
    // over RLIMIT_NOFILE), so a client that has not read its last handout gets
    // no more. Not merely unread notices: a generation resumed while it was
    // not running reads "resume" and adopts again before it reads the
    // "retire" queued behind it (the resume must not fail for that).
    if (selected.length > 0 && state.lastSentFds && native().outq(state.channel.fd) > 0) {
      const err = new FdbrokerError('ERR_FDBROKER_UNREAD_REPLY', 'read the previous reply before asking for more listeners');
      state.reply({ type: 'error', id, code: err.code, message: err.message });
      this.auditLog(op, state.info, err.code, names ?? undefined);
      this.emit('clientError', state.info, err);
      return;
    }
    // Per uid, fds in unread handouts stay under a share of RLIMIT_NOFILE (one handout alone always may go).
    const capped = selected.length > 0 && state.info.uid !== this.brokerUid && state.info.uid !== 0;
    const held = capped ? this.inFlight.ofUid(state.info.uid) : 0;
    if (held > 0 && held + selected.length > this.maxFdsInFlightPerUid) {
      const err = new FdbrokerError('ERR_FDBROKER_UNREAD_REPLY', `uid ${state.info.uid} has ${held} listeners in handouts its clients have not read `
        + `(at most ${this.maxFdsInFlightPerUid} with this one): read them, or close those connections, first`);
      state.reply({ type: 'error', id, code: err.code, message: err.message });
      this.auditLog(op, state.info, err.code, names ?? undefined);
      this.emit('clientError', state.info, err);
      return;
    }
    // A paused listener is handed to nobody new: a deploy during a pause is refused (pauses.ts). A generation
    // adopting again (a resume after standby) is no one new: it is told its paused set, and keeps to it.
    try {
      if (state.generation === undefined) this.pauses.refuseAdopt(selected.map((l) => l.info.name));
    } catch (err) {
      const e = err as FdbrokerError;
      state.reply({ type: 'error', id, code: e.code, message: e.message });
      this.auditLog(op, state.info, e.code, names ?? undefined);
      this.emit('clientError', state.info, e);
      return;
    }
    const infos = selected.map((l) => l.info);
    const groups = chunkListeners(infos, MAX_FDS_PER_MESSAGE, MAX_MESSAGE_BYTES);
    const names_ = infos.map((i) => i.name);
    let generation: number | undefined;
    let joined: Effect[] = [];
    if (join !== undefined) {
      const r = this.core.join({ clientId: state.info.id, pid: state.info.pid, uid: state.info.uid, ...(join.label ? { label: join.label } : {}) },
        names_, Date.now(), { standbyMs: join.standby, heartbeat: join.heartbeat, spare: join.spare, slot: join.slot });
      if (!r.ok) {
        // Embedded mode: at most one process not yet ready (tableflip's invariant). A second successor
        // would rename its control socket over the first one's, and one of them would serve on a path nobody reaches.
        const err = new FdbrokerError('ERR_FDBROKER_UPGRADE_IN_PROGRESS',
          'another successor is starting (or this process is not ready yet): one upgrade at a time; try again once it is ready or gone');
        state.reply({ type: 'error', id, code: err.code, message: err.message });
        this.auditLog(op, state.info, err.code, names ?? undefined);
        this.emit('clientError', state.info, err);
        return;
      }
      generation = r.number;
      joined = r.effects;
      state.generation = generation;
      this.sessionsByGeneration.set(generation, state);
    }
    for (let part = 0; part < groups.length; part++) {
      const group = groups[part]!;
      const payload = encodeListeners(id, part, part === groups.length - 1, group.map((i) => infos[i]!), generation, generation !== undefined ? this.core.epoch : undefined);
      // An instance slot gets its socket of the listener's SO_REUSEPORT group (slot-sockets.ts), if it has one.
      if (!state.send(payload, group.map((i) => this.slotSockets.fdFor(selected[i]!.info.name, join?.slot ?? 0, selected[i]!.fd)))) {
        this.forget(state);
        return;
      }
    }
    if (capped) this.inFlight.sent(state, selected.length, Date.now());
    this.noteAdopted(state, names_);
    this.auditLog(op, state.info, 'ok', names_, generation);
    debug('client %d (pid %d) adopted %s', state.info.id, state.info.pid, names_.join(','));
    this.emit('adopt', { client: { ...state.info }, names: names_, generation });
    this.execute(joined);
  }

  private noteAdopted(state: Session, names: string[]): void {
    const adopted = new Set(state.info.adopted); // a Set: includes() per name is O(N²) for 1,000s of listeners
    for (const n of names) if (!adopted.has(n)) { adopted.add(n); state.info.adopted.push(n); }
  }

  /**
   * A generation that outlived its broker (or moved with it: a takeover)
   * joins this one in the state it had. No fds: it has its listeners. The
   * core decides its number, state and rank; the ack comes before any notice.
   */
  private onRejoin(state: Session, msg: RejoinMessage): void {
    if (state.generation !== undefined) {
      state.reply({ type: 'error', id: msg.id, code: 'ERR_FDBROKER_PROTOCOL', message: `already generation ${state.generation}` });
      return;
    }
    const names = (msg.names ?? []).filter((n) => this.listenerSet.has(n));
    const r = this.core.rejoin({ clientId: state.info.id, pid: state.info.pid, uid: state.info.uid, ...(msg.label ? { label: msg.label } : {}) }, {
      number: msg.generation, state: msg.state, epoch: msg.epoch, standbyLeft: msg.standbyLeft, standbyMs: msg.standby ?? 0, heartbeat: msg.heartbeat === true, slot: msg.slot,
    }, names, Date.now());
    state.generation = r.number;
    this.sessionsByGeneration.set(r.number, state);
    this.noteAdopted(state, names);
    state.reply({ type: 'ack', id: msg.id, generation: r.number, state: r.state, epoch: r.epoch });
    this.auditLog('rejoin', state.info, 'ok', names, r.number);
    this.execute(r.effects);
  }

  /**
   * A generation says ready: first the fact the core judges it on (does its
   * process hold the listeners it adopted? hold-fact.ts, bounded in time),
   * then the core's decision. The client's channel is paused meanwhile, so
   * its later requests are answered after this one, in order.
   */
  private onReady(state: Session, id: number): void {
    const n = state.generation;
    const gen = n === undefined ? undefined : this.core.get(n);
    if (n === undefined || gen === undefined || gen.state !== 'starting' || !this.verifyReady) {
      this.decideReady(state, id, undefined);
      return;
    }
    const adopted: Array<{ name: string; inode: number }> = [];
    for (const name of gen.adopted) {
      const rec = this.listenerSet.get(name);
      if (!rec) continue;
      // In an instance slot the process holds its slot's socket of the group (slot-sockets.ts), not the first one.
      const fd = this.slotSockets.fdFor(name, gen.slot ?? 0, rec.fd);
      let inode: number | undefined;
      try { inode = fd === rec.fd ? this.listenerSet.inodeOf(rec) : socketInode(fd); } catch { inode = undefined; }
      if (inode !== undefined) adopted.push({ name, inode });
    }
    state.channel.pause();
    void holdFact(state.info.pid, adopted).then((fact) => {
      if (this.closed || this.movedTo !== undefined || !this.clients.has(state.info.id)) return;
      state.channel.resume();
      // A takeover began meanwhile: the ready waits for its outcome like any other (and is checked again then).
      const t = this.takeoverInFlight();
      if (t && t.session !== state) {
        t.hold(state, { type: 'ready', id });
        return;
      }
      try {
        this.decideReady(state, id, fact);
      } catch (err) {
        this.emit('warning', err as Error);
        this.fatal(state, new FdbrokerError('ERR_FDBROKER_INTERNAL', `the broker failed on a ready: ${(err as Error).message}`));
      }
    });
  }

  private decideReady(state: Session, id: number, fact: HoldFact | undefined): void {
    const n = state.generation;
    const result = n === undefined ? { ok: false as const, reason: 'unknown' as const } : this.core.ready(n, Date.now(), fact);
    if (!result.ok) {
      const missing = fact?.result === 'missing' ? fact.missing : [];
      const why = {
        unknown: 'this connection has not joined as a generation (send "join" first)',
        retiring: `generation ${n} was told to retire: a newer generation serves`,
        overdue: `generation ${n} was not ready within the ready timeout; start a new one`,
        failed: `generation ${n} failed after it was ready (it stopped accepting) and was rolled back`,
        'not-holding': `generation ${n} (pid ${state.info.pid}) says ready but neither it nor any process it started holds `
          + `${missing.map((m) => `"${m}"`).join(', ')}: it serves on a socket of its own, or on none. `
          + 'Serve the adopted listener (listen({ fd }) / the fd from LISTEN_FDS) instead of binding; the older generation serves on',
      }[result.reason];
      const code = result.reason === 'not-holding' ? 'ERR_FDBROKER_NOT_HOLDING' : 'ERR_FDBROKER_READY_REFUSED';
      this.auditLog('ready', state.info, code, result.reason === 'not-holding' ? missing : undefined, n);
      state.reply({ type: 'error', id, code, message: why, ...(missing.length > 0 ? { names: missing } : {}) });
      this.emit('clientError', state.info, new FdbrokerError(code, why));
      if (result.effects) this.execute(result.effects);
      return;
    }
    this.auditLog('ready', state.info, 'ok', undefined, n);
    state.reply({ type: 'ack', id, generation: n, state: 'ready' });
    this.execute(result.effects);
  }

  /** A listener that no longer listens (a holder shut it down) is broken for every holder: report it once. */
  private checkListeners(): void {
    const n = native();
    const c = n.constants;
    for (const l of this.listenerSet.streams()) {
      const r = n.getsockoptInt(l.fd, c.SOL_SOCKET, c.SO_ACCEPTCONN);
      if (typeof r !== 'number' && r.value === 1) continue;
      l.broken = true;
      this.emit('listenerBroken', l.info);
    }
  }

  /**
   * Samples every stream listener's accept queue. A stall (a queue that does
   * not drain) on a listener the newest ready generation holds rolls it back
   * when a generation stands by, and is reported either way.
   */
  private sampleQueues(): void {
    // During a takeover the table is frozen (see handle()): no rollback is started here.
    if (this.closed || this.takeoverInFlight()) return;
    this.tick();
    const listeners = this.listenerSet.streams();
    if (listeners.length === 0) return;
    let results: ReturnType<typeof acceptQueues>;
    try {
      results = acceptQueues(listeners.map((l) => l.fd));
    } catch (err) {
      // A bug or an addon without the call: say so once and stop watching, rather than every sample.
      this.sampler?.stop();
      this.emit('warning', new Error(`accept queues cannot be read, stalls are not detected: ${(err as Error).message}`, { cause: err }));
      return;
    }
    const now = Date.now();
    listeners.forEach((l, i) => {
      const q = results[i]!;
      if (q instanceof Error) return;
      l.queue = q;
      // Paused: nobody accepts on purpose; the queue is no stall (its watch starts afresh at the resume).
      if (this.pauses.table.isPaused(l.info.name)) {
        this.acceptWatch.forget(l.info.name);
        return;
      }
      const stall = this.acceptWatch.sample(l.info.name, q.queued, now);
      if (!stall) return;
      this.execute(this.core.stalled(l.info.name, now), { listener: l.info, queued: q.queued, since: stall.since });
    });
  }

  private fatal(state: Session, err: FdbrokerError): void {
    const code = err.code ?? 'ERR_FDBROKER_PROTOCOL';
    state.reply({ type: 'error', code, message: err.message });
    this.emit('clientError', state.info, err);
    this.drop(state, true);
  }

  /** Ends a client: gracefully (after queued replies) or at once. */
  private drop(state: Session, graceful = false): void {
    if (graceful) state.channel.end();
    else state.channel.close();
    this.forget(state);
  }

  private forget(state: Session): void {
    this.handshakeDeadlines.delete(state);
    this.idleDeadlines?.delete(state);
    if (!this.clients.delete(state.info.id)) return;
    debug('client %d gone', state.info.id);
    if (this.takeoverInFlight()?.session === state && this.movedTo === undefined) this.handoff!.abort('its connection closed before it committed');
    if (state.generation !== undefined) this.sessionsByGeneration.delete(state.generation);
    // Taken over: the generations moved to the successor; nothing here changes any more.
    // Not while the broker itself stops either: its clients leave then by its own doing.
    if (state.generation !== undefined && this.movedTo === undefined && !this.closed) {
      const gone = this.core.get(state.generation);
      this.execute(this.core.leave(state.generation, Date.now(), state.leaving));
      if (gone?.state === 'starting' && this.selfGeneration !== undefined) this.reclaimPath();
    }
    this.emit('disconnect', state.info);
  }
}

