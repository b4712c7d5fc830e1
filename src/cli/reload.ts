// `fdbroker reload <control-socket>`: asks the broker to re-read its --config
// file and apply it; prints what changed. Exit 0 when applied, 1 (with the
// broker's code and reason) when refused, in which case nothing changed.
import { BrokerConnection } from '../client/connection';
import { controlPathOf, parseCommand } from './args';
import { describeReload } from './config';
import type { Io } from './io';

const OPTIONS = { json: { type: 'boolean' } } as const;

export async function reload(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommand('reload', args, OPTIONS);
  const path = controlPathOf('reload', positionals);
  const conn = await BrokerConnection.connect(path);
  try {
    const r = await conn.reload();
    io.out(values.json ? JSON.stringify(r) : `fdbroker: reloaded ${path}: ${describeReload(r)}`);
    return 0;
  } finally {
    conn.close();
  }
}
