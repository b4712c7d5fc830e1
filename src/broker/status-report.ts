// What `fdbroker status` shows, built from what the broker holds: its
// listeners (with their accept queues read now, and, given a /proc scan,
// every process holding each), its clients, its generations and its
// handover statistics. Pure but for reading the accept queues.
import { acceptQueues } from '../transport/accept-queue';
import type { GenerationInfo } from '../core/generation-info';
import type { HoldersScan } from '../holders/holders';
import type { ClientInfo, HolderInfo, ListenerInfo, StatusMessage } from '../protocol/messages';
import type { MetricsSnapshot } from '../protocol/metrics-snapshot';
import { PROTOCOL_VERSION } from '../protocol/limits';
import { VERSION } from '../protocol/version';
import type { ListenerRecord, ListenerSet } from './listener-set';

export interface StatusInput {
  id: number;
  controlPath: string;
  startedAt: Date;
  listeners: ListenerSet;
  /** Since when each listener's accept queue has not drained (the stall watch), if it has not. */
  stalledSince: (name: string) => number | undefined;
  /** Each listener's pause now (if paused) and its paused ms in all. */
  pause?: (name: string, nowMs: number) => { info: { since: number; until: number } | undefined; ms: number };
  clients: ClientInfo[];
  generations: GenerationInfo[];
  metrics: MetricsSnapshot;
  /** A /proc scan of the listeners' holders, if one was made in time. */
  scan?: HoldersScan;
  /** Whether the broker is closing (its sockets are not read any more). */
  closed: boolean;
}

export function buildStatus(i: StatusInput): StatusMessage {
  readQueues(i.listeners, i.closed);
  const byPid = i.scan ? generationsByPid(i.generations) : undefined;
  const holders = (ino: number | undefined, scan: HoldersScan) => holdersOf(ino, scan, byPid ?? generationsByPid(i.generations));
  return {
    type: 'status',
    id: i.id,
    broker: { pid: process.pid, software: `fdbroker/${VERSION}`, protocol: PROTOCOL_VERSION, controlPath: i.controlPath, startedAt: i.startedAt.toISOString() },
    listeners: [
      ...i.listeners.all().map((l) => ({
        ...listenerStatus(l, i.stalledSince(l.info.name)), ...pauseStatus(l.info.name, i.pause),
        ...(i.scan ? { holders: holders(i.listeners.inodeOf(l), i.scan) } : {}),
      })),
      ...i.listeners.removed.list(i.scan, holders),
    ],
    clients: i.clients.map((c) => ({ ...c, adopted: [...c.adopted] })),
    generations: i.generations,
    metrics: i.metrics,
    ...(i.scan ? { holdersScan: { scanned: i.scan.scanned, unreadable: i.scan.unreadable, skipped: i.scan.skipped, ms: Math.round(i.scan.durationMs) } } : {}),
  };
}

/** The socket inodes of every listener, live and removed: what a holders scan looks for. */
export function inodesToScan(listeners: ListenerSet): number[] {
  const out: number[] = [];
  for (const l of listeners.all()) {
    const ino = listeners.inodeOf(l);
    if (ino !== undefined) out.push(ino);
  }
  return [...out, ...listeners.removed.inodes()];
}

/** Every stream listener's accept queue and backlog in force, read from the sockets now (the last sample is kept where that fails). */
function readQueues(listeners: ListenerSet, closed: boolean): void {
  const ls = closed ? [] : listeners.streams();
  if (ls.length === 0) return;
  try {
    acceptQueues(ls.map((l) => l.fd)).forEach((q, i) => { if (!(q instanceof Error)) ls[i]!.queue = q; });
  } catch { /* an addon without the call (the stall watch warns once): the last samples */ }
}

function listenerStatus(l: ListenerRecord, since: number | undefined): ListenerInfo {
  return {
    ...l.info,
    ...(l.broken ? { broken: true } : {}),
    ...(l.queue ? { queued: l.queue.queued, backlogInForce: l.queue.backlog } : {}),
    ...(since !== undefined ? { stalledSince: new Date(since).toISOString() } : {}),
  };
}

function pauseStatus(name: string, pause: StatusInput['pause']): Pick<ListenerInfo, 'paused' | 'pausedMs'> {
  if (!pause) return {};
  const p = pause(name, Date.now());
  return {
    ...(p.info ? { paused: { since: new Date(p.info.since).toISOString(), until: new Date(p.info.until).toISOString() } } : {}),
    ...(p.ms > 0 ? { pausedMs: p.ms } : {}),
  };
}

/** `byPid`: the lowest-numbered generation of each pid (built once per status: 1,000 listeners x 1,000 generations). */
function holdersOf(ino: number | undefined, scan: HoldersScan, byPid: Map<number, GenerationInfo>): HolderInfo[] {
  const list = ino === undefined ? [] : scan.byInode.get(ino) ?? [];
  return list.map((p) => {
    const g = byPid.get(p.pid) ?? lowestOf(p.ancestors, byPid);
    return { pid: p.pid, comm: p.comm, ...(g ? { generation: g.number } : {}) };
  });
}

/** The lowest-numbered generation of each pid, from a list sorted by number. */
function generationsByPid(gens: GenerationInfo[]): Map<number, GenerationInfo> {
  const out = new Map<number, GenerationInfo>();
  for (const g of gens) if (!out.has(g.pid)) out.set(g.pid, g);
  return out;
}

/** The lowest-numbered generation whose pid is one of `pids` (a holder's ancestors). */
function lowestOf(pids: number[], byPid: Map<number, GenerationInfo>): GenerationInfo | undefined {
  let best: GenerationInfo | undefined;
  for (const pid of pids) {
    const g = byPid.get(pid);
    if (g && (!best || g.number < best.number)) best = g;
  }
  return best;
}
