// Whether a process tree holds given sockets: the fact behind a generation's
// ready (src/core/handover-core.ts refuses a ready whose process holds none
// or only some of the listeners it adopted). The generation's own process is
// read first (a library app holds its listeners itself); only if something
// is missing are its descendants looked for (`fdbroker exec` closes its own
// copies once its program has them; cluster workers), by reading the parent
// pid of every process in /proc.
//
// Never guesses: a table that cannot be read (another uid, hidepid, a pid of
// another PID namespace that reads as 0, the deadline) makes the answer
// 'unverified', never 'missing'. Only node:fs, no native code.
import * as fs from 'node:fs';

/** Longest a check may take before it answers 'unverified' (a ready waits for it). */
export const HOLD_CHECK_TIMEOUT_MS = 1_000;
/** Most descendants whose fd tables are read (a fork bomb below a generation cannot stall a ready). */
export const HOLD_CHECK_MAX_DESCENDANTS = 4_096;
/**
 * /proc files read synchronously between two turns of the event loop: sync
 * reads are ~10 times faster than one threadpool job each (as holders.ts's
 * 'slices' mode), and the loop is held for one slice at most.
 */
export const HOLD_CHECK_SLICE = 64;

const PROC = '/proc';
const SOCKET_LINK = /^socket:\[(\d+)\]$/;

export type TreeHolds =
  /** At least one of the sockets is held; `missing`: those no process of the tree holds (absent: none). */
  | { result: 'held'; missing?: number[] }
  /** None of the sockets is held by any process of the tree (or the process is gone). */
  | { result: 'missing'; missing: number[] }
  | { result: 'unverified'; why: string };

export interface TreeHoldsOptions {
  /** Default HOLD_CHECK_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Where proc is mounted (tests); default /proc. */
  proc?: string;
  /** Whether `pid` runs (a /proc entry that cannot be seen, hidepid); default: process.kill(pid, 0). */
  alive?: (pid: number) => boolean;
}

type Table = { kind: 'read'; inodes: Set<number> } | { kind: 'unreadable'; code: string } | { kind: 'gone' };

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The wanted inodes `pid` holds; its links read HOLD_CHECK_SLICE at a time between turns of the event loop. */
async function fdInodes(proc: string, pid: number, wanted: Set<number>): Promise<Table> {
  let names: string[];
  try {
    names = fs.readdirSync(`${proc}/${pid}/fd`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    return code === 'ENOENT' || code === 'ESRCH' ? { kind: 'gone' } : { kind: 'unreadable', code };
  }
  const inodes = new Set<number>();
  for (let i = 0; i < names.length; i++) {
    if (i > 0 && i % HOLD_CHECK_SLICE === 0) await nextTurn();
    let target: string;
    try {
      target = fs.readlinkSync(`${proc}/${pid}/fd/${names[i]}`);
    } catch {
      continue; // closed since readdir
    }
    const m = SOCKET_LINK.exec(target);
    if (m && wanted.has(Number(m[1]))) inodes.add(Number(m[1]));
  }
  return { kind: 'read', inodes };
}

/** The parent pid of `pid` from /proc/<pid>/stat, or undefined. */
function parentOf(proc: string, pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`${proc}/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
  const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

function defaultAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function check(root: number, inodes: number[], o: Required<TreeHoldsOptions>, deadline: number): Promise<TreeHolds> {
  const wanted = new Set(inodes);
  const missing = new Set(inodes);
  if (missing.size === 0) return { result: 'held' };
  if (!(root > 0)) return { result: 'unverified', why: 'the peer\'s pid is not visible here (another PID namespace)' };
  const own = await fdInodes(o.proc, root, wanted);
  if (own.kind === 'unreadable') return { result: 'unverified', why: `${o.proc}/${root}/fd cannot be read (${own.code})` };
  if (own.kind === 'gone') {
    return o.alive(root) ? { result: 'unverified', why: `pid ${root} runs but ${o.proc}/${root} cannot be seen (hidepid?)` }
      : { result: 'missing', missing: [...missing] };
  }
  for (const i of own.inodes) missing.delete(i);
  if (missing.size === 0) return { result: 'held' };

  // Descendants: every process's parent, then a walk down from root.
  const children = new Map<number, number[]>();
  let slice = 0;
  for (const e of fs.readdirSync(o.proc)) {
    if (!/^\d+$/.test(e)) continue;
    if (++slice % HOLD_CHECK_SLICE === 0) {
      await nextTurn();
      if (Date.now() > deadline) return { result: 'unverified', why: 'the process tree could not be read in time' };
    }
    const pid = Number(e);
    const pp = parentOf(o.proc, pid);
    if (pp === undefined) continue;
    let list = children.get(pp);
    if (!list) children.set(pp, list = []);
    list.push(pid);
  }
  const queue = [...(children.get(root) ?? [])];
  const seen = new Set<number>([root]);
  let unreadable: string | undefined;
  let read = 0;
  while (queue.length > 0 && missing.size > 0) {
    const pid = queue.shift()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    if (++read > HOLD_CHECK_MAX_DESCENDANTS || Date.now() > deadline) return { result: 'unverified', why: 'the process tree could not be read in time' };
    if (read % HOLD_CHECK_SLICE === 0) await nextTurn();
    const t = await fdInodes(o.proc, pid, wanted);
    if (t.kind === 'unreadable') unreadable ??= `${o.proc}/${pid}/fd cannot be read (${t.code})`;
    if (t.kind === 'read') for (const i of t.inodes) missing.delete(i);
    queue.push(...(children.get(pid) ?? []));
  }
  if (missing.size === 0) return { result: 'held' };
  if (missing.size < wanted.size) return { result: 'held', missing: [...missing] };
  if (unreadable) return { result: 'unverified', why: unreadable };
  return { result: 'missing', missing: [...missing] };
}

/**
 * Whether `root` or one of its descendants holds a copy of the sockets in
 * `inodes` (fstat inodes, as /proc/<pid>/fd links name them). Never throws:
 * anything that stops it from telling is 'unverified'; answers by the
 * deadline (options.timeoutMs).
 */
export async function treeHolds(root: number, inodes: number[], options: TreeHoldsOptions = {}): Promise<TreeHolds> {
  const o: Required<TreeHoldsOptions> = {
    timeoutMs: options.timeoutMs ?? HOLD_CHECK_TIMEOUT_MS, proc: options.proc ?? PROC, alive: options.alive ?? defaultAlive,
  };
  const deadline = Date.now() + o.timeoutMs;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<TreeHolds>((resolve) => {
    timer = setTimeout(() => resolve({ result: 'unverified', why: `no answer from /proc within ${o.timeoutMs} ms` }), o.timeoutMs);
    timer.unref();
  });
  try {
    return await Promise.race([
      check(root, inodes, o, deadline).catch((err: Error): TreeHolds => ({ result: 'unverified', why: `/proc cannot be read (${(err as NodeJS.ErrnoException).code ?? err.message})` })),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
