// What a generation is, as the broker reports it (status, handoff, events).
// A leaf module: the wire types (protocol/) and the handover core import it,
// it imports nothing.

export type GenerationState = 'starting' | 'ready' | 'standby' | 'retiring' | 'failed';

export const GENERATION_STATES: readonly GenerationState[] = ['starting', 'ready', 'standby', 'retiring', 'failed'];

export interface GenerationInfo {
  number: number;
  clientId: number;
  pid: number;
  uid: number;
  label?: string;
  state: GenerationState;
  adopted: string[];
  joinedAt: string;
  readyAt?: string;
  retiringSince?: string;
  /** Standby: the moment its window ends (it can resume until then). */
  standbyUntil?: string;
  /** The window this generation asked for when it joined, in ms (0: none). */
  standbyMs: number;
  /** Failed: why (e.g. 'left', 'stalled'). */
  failedReason?: string;
  /** Joined again after its broker was replaced. */
  rejoined?: boolean;
  /**
   * Its rank, which orders generations across broker restarts: [epoch, seq].
   * A fresh join gets the broker's epoch and its own number; a rejoiner keeps
   * the rank it claims (below every fresh join of this broker). The newest
   * generation is the one of highest rank, not of highest number.
   */
  rank?: [number, number];
  /** Its instance slot (`run --instances`; absent: 0): at most one generation is ready per slot, and its ready retires only older ones of the same slot. */
  slot?: number;
  /** A warm spare (joined with `spare`): starting, holding its listeners without accepting until promoted; exempt from the ready timeout until it is ready. */
  spare?: boolean;
  /** Not ready within the ready timeout: its ready() will be refused. */
  readyOverdue: boolean;
  /** Told to retire and still connected after the retire timeout. */
  retireOverdue: boolean;
  /**
   * What the broker found when this generation said ready: whether its process
   * (or a descendant: `fdbroker exec`'s program, cluster workers) held a copy
   * of the listeners it adopted. 'held': at least one (`missing`: those it
   * holds none of, closed as unused). 'unverified': /proc could not tell
   * (another uid without the right to read it, hidepid, another PID namespace,
   * or the check ran out of time); the ready was accepted. 'missing': it held
   * none: refused, the generation failed (failedReason 'not-holding').
   */
  holdCheck?: { result: 'held' | 'missing' | 'unverified'; missing?: string[]; why?: string };
  /** Retiring: what it last reported it still holds (connections, HTTP/2 sessions, upgraded sockets, open hooked responses). */
  holding?: { connections: number; sessions: number; upgraded: number; hooked: number; at: string };
}
