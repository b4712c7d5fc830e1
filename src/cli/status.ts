// `fdbroker status`: what a broker holds, who is connected, which generations
// are starting, ready or retiring; as text or --json.
import type { GenerationInfo } from '../core/generation-info';
import type { MetricsSnapshot } from '../metrics/handover-stats';
import type { ListenerInfo, StatusMessage } from '../protocol/messages';
import { BrokerConnection } from '../client/connection';
import { controlPathOf, parseCommand } from './args';
import type { Io } from './io';
import { describeOutsideHolders, outsideHolders } from './outside-holders';
import { printable } from './printable';

const OPTIONS = { json: { type: 'boolean' } } as const;

/** tcp://127.0.0.1:8080, tcp://[::1]:8080, unix:/run/app.sock: as a spec is written. */
export function describeListener(l: ListenerInfo): string {
  if (l.kind === 'unix') return `unix:${l.path}`;
  const host = l.family === 'IPv6' ? `[${l.address}]` : l.address;
  return `${l.kind}://${host}:${l.port}`;
}

/** The state and since when it holds: each time stamp once, under its own name. */
function generationState(g: GenerationInfo): string {
  switch (g.state) {
    case 'starting': return g.spare ? `warm spare since ${g.joinedAt} (holds the listeners, not accepting)` : `starting since ${g.joinedAt}`;
    case 'ready': return `ready since ${g.readyAt}`;
    case 'standby': return `standing by since ${g.retiringSince} until ${g.standbyUntil} (can resume)`;
    case 'retiring': return `retiring since ${g.retiringSince}${g.readyAt ? ` (ready since ${g.readyAt})` : ' (never ready)'}`;
    case 'failed':
      if (g.failedReason === 'not-holding') {
        return `FAILED (not-holding: said ready holding no copy of ${(g.holdCheck?.missing ?? []).join(', ') || '?'}; refused) since ${g.retiringSince}`;
      }
      return `FAILED (${printable(g.failedReason ?? 'unknown')}) since ${g.retiringSince}: rolled back`;
  }
}

/** What a retiring generation last reported it holds: "holding 12 conns (2 h2, 3 upgraded, 1 hooked) at <time>". */
export function describeHolding(h: NonNullable<GenerationInfo['holding']>): string {
  const kinds = [[h.sessions, 'h2'], [h.upgraded, 'upgraded'], [h.hooked, 'hooked']] as const;
  const detail = kinds.filter(([n]) => n > 0).map(([n, k]) => `${n} ${k}`).join(', ');
  return `holding ${h.connections} conn${h.connections === 1 ? '' : 's'}${detail ? ` (${detail})` : ''} at ${h.at}`;
}

/** The backlog in force, read from the socket; the one the broker set beside it when a holder changed it (a second listen()). */
function backlogText(l: ListenerInfo): string {
  if (l.backlogInForce === undefined || l.backlogInForce === l.backlog) return l.backlog ? `  backlog ${l.backlog}` : '';
  return `  backlog ${l.backlogInForce} in force${l.backlog ? ` (the broker set ${l.backlog})` : ''}`;
}

/** One line of the handover counters (docs/guides/operations.md, "Metrics"). */
function metricsText(m: MetricsSnapshot): string {
  const sum = (r: Record<string, number | undefined>) => Object.values(r).reduce<number>((a, b) => a + (b ?? 0), 0);
  const refusals = Object.entries(m.refusals).map(([code, n]) => `${code} ${n}`).join(', ');
  const rollbacks = Object.entries(m.rollbacks).filter(([, n]) => n > 0).map(([r, n]) => `${r} ${n}`).join(', ');
  const mean = (h: MetricsSnapshot['handoverReadySeconds']) => (h.count > 0 ? ` (mean ${(h.sum / h.count).toFixed(2)} s)` : '');
  return `metrics: handovers ${m.handovers}, ready ${m.handoverReadySeconds.count}${mean(m.handoverReadySeconds)}`
    + `, retired ${m.handoverRetireSeconds.count}${mean(m.handoverRetireSeconds)}`
    + `, rollbacks ${sum(m.rollbacks)}${rollbacks ? ` (${rollbacks})` : ''}, drains forced ${m.drainsForced}, adopts ${m.adopts}`
    + `, refusals ${sum(m.refusals)}${refusals ? ` (${refusals})` : ''}`;
}

/** A line naming the holders that are no generation: a deploy does not retire them. */
function outsideHoldersNote(s: StatusMessage): string[] {
  const holders = outsideHolders(s);
  if (holders.length === 0) return [];
  return [`not generations: ${describeOutsideHolders(holders)}: they serve on through every deploy; stop them yourself when a new version serves`];
}

/** The text of `fdbroker status`; labels and holders' names (chosen by others) are escaped (printable.ts). */
export function formatStatus(s: StatusMessage): string {
  const lines = [
    `broker pid ${s.broker.pid} on ${s.broker.controlPath} (${s.broker.software}, protocol ${s.broker.protocol}, since ${s.broker.startedAt})`,
    `listeners (${s.listeners.length}):`,
    ...s.listeners.map((l) => `  ${l.name.padEnd(16)} ${describeListener(l)}${backlogText(l)}`
      + `${l.queued !== undefined ? `  queued ${l.queued}` : ''}${l.broken ? '  BROKEN' : ''}`
      + `${l.removed ? '  REMOVED by a reload: not handed out, held until its holders retire' : ''}`
      + `${l.paused ? `  PAUSED since ${l.paused.since} until ${l.paused.until} (fdbroker resume ends it)` : ''}`
      + `${l.pausedMs ? `  paused ${(l.pausedMs / 1000).toFixed(1)} s in all` : ''}`
      + `${l.stalledSince && !l.paused ? `  STALLED since ${l.stalledSince}: nobody accepts` : ''}`
      + `${l.holders ? `  held by ${l.holders.map((h) => `${h.pid}${h.generation !== undefined ? `(#${h.generation})` : `(${printable(h.comm ?? '?')}, not a generation)`}`).join(' ') || 'nobody else'}` : ''}`),
    `clients (${s.clients.length}):`,
    ...s.clients.map((c) => `  pid ${c.pid} uid ${c.uid} gid ${c.gid} since ${c.connectedAt} adopted: ${c.adopted.join(', ') || '-'}`),
    `generations (${s.generations.length}):`,
    ...s.generations.map((g) => `  #${g.number} pid ${g.pid}${g.slot ? ` instance ${g.slot}` : ''} ${generationState(g)}${g.readyOverdue ? ' NOT READY IN TIME' : ''}`
      + `${g.holdCheck?.result === 'unverified' ? ` (listeners held: unverified, ${printable(g.holdCheck.why ?? '')})` : ''}`
      + `${g.holdCheck?.result === 'held' && g.holdCheck.missing?.length ? ` (holds no copy of ${g.holdCheck.missing.join(', ')})` : ''}`
      + `${g.retireOverdue ? ' RETIRE OVERDUE' : ''}${g.holding ? ` ${describeHolding(g.holding)}` : ''} listeners: ${g.adopted.join(', ') || '-'}${g.label ? ` (${printable(g.label)})` : ''}`),
    ...outsideHoldersNote(s),
    ...(s.holdersScan && s.holdersScan.skipped > 0
      ? [`holders: partial: ${s.holdersScan.skipped} processes not read within the scan's ${s.holdersScan.ms} ms budget (their copies are not listed)`] : []),
    ...(s.metrics ? [metricsText(s.metrics)] : []),
  ];
  return lines.join('\n');
}

export async function status(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommand('status', args, OPTIONS);
  const conn = await BrokerConnection.connect(controlPathOf('status', positionals));
  try {
    const s = await conn.status();
    io.out(values.json ? JSON.stringify(s, null, 2) : formatStatus(s));
    return 0;
  } finally {
    conn.close();
  }
}
