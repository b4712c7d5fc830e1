// The fact a generation's ready is judged on (src/core/handover-core.ts):
// whether its process, or a descendant, holds a copy of each listener it
// adopted, read from /proc (src/holders/tree-holds.ts) by socket inode.
import type { HoldFact } from '../core/handover-core';
import { treeHolds, type TreeHoldsOptions } from '../holders/tree-holds';

/**
 * `adopted`: each adopted listener the broker still has, with its socket's
 * inode (one the broker cannot fstat is left out: nothing to compare).
 * Never rejects.
 */
export async function holdFact(pid: number, adopted: Array<{ name: string; inode: number }>, options?: TreeHoldsOptions): Promise<HoldFact> {
  const r = await treeHolds(pid, adopted.map((a) => a.inode), options);
  if (r.result === 'unverified') return r;
  const gone = new Set(r.missing ?? []);
  const missing = adopted.filter((a) => gone.has(a.inode)).map((a) => a.name);
  if (r.result === 'missing') return { result: 'missing', missing };
  return missing.length > 0 ? { result: 'held', missing } : { result: 'held' };
}
