// Holders of a listener that are not generations: processes with a copy of a
// listening socket that no deploy retires (an adoptListeners() app, a program
// given the fd by hand). A deploy's verdict and `status` name them, so that
// "every older generation has left" is never read as "the old code is gone".
import type { StatusMessage } from '../protocol/messages';
import { printable } from './printable';

export interface OutsideHolder {
  pid: number;
  comm: string | undefined;
  /** The listeners it holds a copy of, in status order. */
  listeners: string[];
}

/** Every process that holds a listener and is neither a generation nor descends from one; empty when status has no holders (`holders: false`). */
export function outsideHolders(s: StatusMessage): OutsideHolder[] {
  const byPid = new Map<number, OutsideHolder>();
  for (const l of s.listeners) {
    for (const h of l.holders ?? []) {
      if (h.generation !== undefined) continue;
      const entry = byPid.get(h.pid) ?? { pid: h.pid, comm: h.comm, listeners: [] };
      entry.listeners.push(l.name);
      byPid.set(h.pid, entry);
    }
  }
  return [...byPid.values()];
}

/** "pid 4243 (node) holds http; pid 4250 (python3) holds http, admin". */
export function describeOutsideHolders(holders: readonly OutsideHolder[]): string {
  return holders.map((h) => `pid ${h.pid} (${printable(h.comm ?? '?')}) holds ${h.listeners.join(', ')}`).join('; ');
}

/** The one line a deploy prints when such holders serve on beside the new version. */
export function outsideHoldersWarning(holders: readonly OutsideHolder[]): string {
  return `but ${describeOutsideHolders(holders)} and ${holders.length === 1 ? 'is not a generation' : 'are not generations'}: `
    + `${holders.length === 1 ? 'it serves' : 'they serve'} on beside the new version, and no deploy retires ${holders.length === 1 ? 'it' : 'them'}; stop ${holders.length === 1 ? 'it' : 'them'} yourself`;
}
