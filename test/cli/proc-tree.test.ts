// Pure logic of `fdbroker wait --pid` over a process tree, with a fake parent table;
// parentPid() itself against this very process.
import { describe, expect, it } from 'vitest';
import { inTree, parentPid } from '../../src/cli/proc-tree';
import { waitTarget } from '../../src/cli/wait';
import type { StatusMessage } from '../../src/protocol/messages';

const parents: Record<number, number> = { 10: 1, 11: 10, 12: 11, 20: 1, 21: 20 };
const parentOf = (pid: number) => parents[pid];

describe('process tree', () => {
  it('inTree follows parent pids to the ancestor, and stops at init', () => {
    expect(inTree(12, 10, parentOf)).toBe(true);
    expect(inTree(10, 10, parentOf)).toBe(true);
    expect(inTree(21, 10, parentOf)).toBe(false);
    expect(inTree(99, 10, parentOf)).toBe(false); // gone
    expect(inTree(12, 1, parentOf)).toBe(true);
  });

  it('inTree survives a parent cycle (pid reuse)', () => {
    expect(inTree(5, 9, (p) => (p === 5 ? 6 : 5))).toBe(false);
  });

  it('parentPid reads /proc: this process\'s parent, undefined for a pid that does not exist', () => {
    expect(parentPid(process.pid)).toBe(process.ppid);
    expect(parentPid(2 ** 22 + 7)).toBeUndefined();
  });

  it('waitTarget picks the newest generation in the tree of the pid', () => {
    const gen = (number: number, pid: number) => ({ number, pid, state: 'ready' }) as unknown as StatusMessage['generations'][number];
    const s = { generations: [gen(1, 21), gen(2, 12), gen(3, 11)] } as unknown as StatusMessage;
    const tree = (pid: number, root: number) => inTree(pid, root, parentOf);
    expect(waitTarget(s, 10, tree)?.number).toBe(3);
    expect(waitTarget(s, 12, tree)?.number).toBe(2);
    expect(waitTarget(s, 20, tree)?.number).toBe(1);
    expect(waitTarget(s, 30, tree)).toBeUndefined();
    expect(waitTarget(s, undefined, tree)?.number).toBe(3);
  });
});
