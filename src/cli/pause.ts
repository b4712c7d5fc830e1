// `fdbroker pause <control-socket> [NAME...] [--for DURATION]` and
// `fdbroker resume <control-socket> [NAME...]`: every generation stops (or
// starts again) accepting on the listeners named, all when none are; new
// connections wait in the accept queue meanwhile. A pause ends on its own at
// its deadline (src/core/pause-table.ts: default and cap). Prints what is
// paused now; exit 0, or 1 with the broker's code when refused (nothing changed).
import { BrokerConnection } from '../client/connection';
import { MAX_PAUSE_MS } from '../core/pause-table';
import { parseCommand, UsageError } from './args';
import type { Io } from './io';

const OPTIONS = { for: { type: 'string' }, json: { type: 'boolean' } } as const;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** "500ms", "5s", "2m" or a number of ms, up to MAX_PAUSE_MS. */
export function durationMs(v: string): number {
  const m = /^(\d+)(ms|s|m)?$/.exec(v);
  const ms = m ? Number(m[1]) * UNIT_MS[m[2] ?? 'ms']! : NaN;
  if (!Number.isSafeInteger(ms) || ms < 1 || ms > MAX_PAUSE_MS) {
    throw new UsageError(`--for takes a duration from 1ms to ${MAX_PAUSE_MS / 60_000}m (e.g. 500ms, 5s, 2m), not "${v}"`);
  }
  return ms;
}

export async function pauseCommand(command: 'pause' | 'resume', args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommand(command, args, OPTIONS);
  if (positionals.length === 0) throw new UsageError(`${command} needs a control socket path`);
  const [path, ...names] = positionals as [string, ...string[]];
  if (command === 'resume' && values.for !== undefined) throw new UsageError('resume takes no --for');
  const forMs = values.for === undefined ? undefined : durationMs(values.for);
  const conn = await BrokerConnection.connect(path);
  try {
    const paused = command === 'pause'
      ? await conn.pause(names.length > 0 ? names : undefined, forMs)
      : await conn.unpause(names.length > 0 ? names : undefined);
    if (values.json) io.out(JSON.stringify({ paused }));
    else if (paused.length === 0) io.out(`fdbroker: nothing is paused on ${path}: every listener accepts`);
    else io.out(paused.map((p) => `fdbroker: ${p.name} paused since ${p.since}, resumes at ${p.until}`).join('\n'));
    return 0;
  } finally {
    conn.close();
  }
}

