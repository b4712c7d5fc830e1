// What a Broker is started with: the options users pass, and those only
// fdbroker itself passes (an embedded broker, a takeover, listeners handed over).
// A leaf module of types: importing it pulls in no runtime code.
import type { ListenerInfo } from '../protocol/messages';
import type { TableSnapshot } from '../core/handover-core';
import type { AccessOptions } from './access';
import type { ListenerSpec } from './spec';

export interface BrokerOptions {
  /** Path of the control socket. */
  controlPath: string;
  /** Listeners to create. */
  listeners?: ListenerSpec[];
  /**
   * `run --instances N` (2 or more): each tcp listener created here is a
   * SO_REUSEPORT group of N sockets, one per instance slot (slot-sockets.ts);
   * a generation that joins in slot k is handed socket k.
   */
  instances?: number;
  /** Who may adopt (which listeners), read status, deploy, reload and take over besides the broker's own uid and root (access.ts, grants.ts). */
  access?: AccessOptions;
  /** Most clients per uid, for uids other than the broker's own and root (default 64). */
  maxClientsPerUid?: number;
  /**
   * Most fds one uid (not the broker's, not root) may have in handouts its
   * clients have not read; more is ERR_FDBROKER_UNREAD_REPLY (default: a
   * quarter of the broker's RLIMIT_NOFILE, see fds-in-flight.ts).
   */
  maxFdsInFlightPerUid?: number;
  /** Such a client that has not read a handout for this long is dropped (default DEFAULT_UNREAD_HANDOUT_TIMEOUT_MS; 0: never). */
  unreadHandoutTimeoutMs?: number;
  /** Refusals at connect after the first of a uid are counted and reported ('refusals') once per this interval (default REFUSAL_SUMMARY_INTERVAL_MS). */
  refusalSummaryIntervalMs?: number;
  /** Accept a control socket (or unix listener) directory that fails the safety checks. */
  insecureDir?: boolean;
  /**
   * A listener whose address is in use by a listening socket this broker's
   * user created (a stopped broker's, still held by its generations) is taken
   * back from a holder with pidfd_getfd instead of failing with EADDRINUSE,
   * and this broker records its own listeners in PATH.sockets for a later
   * one (default true, except for a broker embedded in an app; see recover.ts).
   */
  recover?: boolean;
  /** Take sockets passed by systemd (LISTEN_FDS) as listeners too (default true). */
  inherit?: boolean;
  /** Backlog for created listeners without their own (default 511). */
  backlog?: number;
  /** Mode of the control socket (default 0600). */
  mode?: number;
  /** Group of the control socket. */
  group?: number;
  handshakeTimeoutMs?: number;
  /** A generation not ready within this time is reported and its ready() refused (default 60 s). */
  readyTimeoutMs?: number;
  /** A retiring generation still connected after this time is reported (default 30 s). */
  retireTimeoutMs?: number;
  /** Longest standby window granted to a retired generation (default 5 s; 0: no standby, no rollback after ready). */
  standbyMs?: number;
  /** A listener whose accept queue does not drain for this long is stalled (default 2 s; 0: not watched). */
  stallTimeoutMs?: number;
  idleTimeoutMs?: number;
  maxClients?: number;
  maxQueuedMessages?: number;
  /**
   * Check each ready against /proc: a generation whose process (and its
   * descendants) holds no copy of a listener it adopted is refused with
   * ERR_FDBROKER_NOT_HOLDING and fails (default true). Where /proc cannot
   * tell, the ready is accepted and status says "unverified".
   */
  verifyReady?: boolean;
}

/** Options only fdbroker itself passes: the embedded broker, takeover, and listeners handed over. */
export interface InternalBrokerOptions extends BrokerOptions {
  /**
   * Listeners that already exist (e.g. adopted from a predecessor). The
   * broker owns these fds from the call on, on every path: it closes them if
   * start() fails, and each must be the socket its info announces. `spec`:
   * the spec this socket was created from (one that came back from systemd's
   * fd store for a listener spec of its name), so a reload treats it as created here.
   */
  listenerFds?: Array<{ info: ListenerInfo; fd: number; spec?: ListenerSpec }>;
  /**
   * Embedded in an app ("the app as its own broker"): the app itself is a
   * generation of this broker, numbered `self.number` if given. When a newer
   * generation is ready, the broker emits 'retireSelf' instead of sending a
   * message. Embedded brokers grant no standby (the predecessor leaves with
   * its broker) and let one successor join at a time.
   */
  self?: { number?: number; label?: string };
  /** The live broker at controlPath handed this process its listeners: rename over its path. */
  takeover?: boolean;
  /** The predecessor's generation table (takeover): imported detached, each reattached when its process rejoins. */
  generations?: TableSnapshot;
  /** Takeover: the specs (flags, --config) that describe received listeners (listenerFds), as if this broker had created them. */
  receivedSpecs?: ListenerSpec[];
}
