// Holders of a listener: every process that has a copy of a listening socket
// open, found by the socket's inode in /proc/<pid>/fd (`socket:[INO]`). What
// status shows per listener, so that a version adopted outside any generation
// is not invisible; a holder maps to a generation through its ppid chain.
//
// Only node:fs: no native code, so another uid can run this file alone. As
// root every process is readable; as another user only that user's own
// (ptrace rules): the others are counted as unreadable, never guessed at.
import { promises as fsp } from 'node:fs';
import * as fs from 'node:fs';

/** How long a scan answers later requests for the same listeners: status calls cannot make the broker scan /proc in a loop. */
export const HOLDERS_CACHE_TTL_MS = 1_000;
/** Processes whose fd tables are read at the same time (each read is a threadpool job). */
export const HOLDERS_SCAN_CONCURRENCY = 8;
/**
 * 'slices' mode: fd links read synchronously between two turns of the event
 * loop, at most this many (a few ms), so the loop is never held longer.
 */
export const HOLDERS_SLICE_LINKS = 256;
/**
 * A scan stops reading fd tables after this long and reports the processes it
 * did not read (`skipped`): a user holding hundreds of thousands of fds cannot
 * make one status or scrape cost seconds of the broker's time.
 */
export const HOLDERS_SCAN_BUDGET_MS = 500;
/**
 * A scan is reused for at least this many times its own duration, so scanning
 * takes at most about 1/(1+factor) of the broker's time however slow /proc is.
 */
export const HOLDERS_SCAN_DUTY_FACTOR = 10;

/** How long HolderCache reuses a scan that took `durationMs`: the TTL, or longer after a slow scan. */
export function reuseWindowMs(ttlMs: number, durationMs: number): number {
  return Math.max(ttlMs, durationMs * HOLDERS_SCAN_DUTY_FACTOR);
}

/** Longest ppid chain followed: pid 1 is reached long before in practice. */
export const MAX_ANCESTRY_DEPTH = 64;

const PROC = '/proc';
const SOCKET_LINK = /^socket:\[(\d+)\]$/;

export interface HolderFd {
  /** The fd number in the holder's table. */
  fd: number;
  /** The socket inode it refers to (one of those asked for). */
  inode: number;
}

export interface Holder {
  pid: number;
  ppid: number;
  /** Real uid (the first `Uid:` field of /proc/<pid>/status). */
  uid: number;
  /** /proc/<pid>/comm: the command name, at most 15 bytes. */
  comm: string;
  /** Every fd of this process that refers to one of the inodes asked for. */
  fds: HolderFd[];
  /**
   * The ppid chain, nearest first: [ppid, its parent, ...], ending at pid 1
   * (or where a parent could not be read). Lets a caller map a holder to a
   * generation whose pid is an ancestor (`fdbroker exec`, cluster workers).
   */
  ancestors: number[];
}

export interface HoldersScan {
  /** Each process that holds at least one of the inodes, by pid (excluded pids left out). */
  holders: Holder[];
  /** inode -> its holders. Every inode asked for has an entry, possibly empty. */
  byInode: Map<number, Holder[]>;
  /** Processes whose fd table was read. */
  scanned: number;
  /** Processes whose fd table could not be read (EACCES/EPERM: another uid, when not root). */
  unreadable: number;
  /** Processes that exited while being scanned. */
  vanished: number;
  /** Processes not read because the scan's time budget ran out (budgetMs): their holdings are unknown. */
  skipped: number;
  /** When the scan started (Date.now()). */
  startedAt: number;
  durationMs: number;
}

/**
 * How fd tables are read. 'threadpool': fs.promises, `concurrency` processes
 * at a time (each readlink a libuv threadpool job). 'slices': synchronous
 * reads in slices of HOLDERS_SLICE_LINKS links with a setImmediate between
 * slices: no threadpool use, a third of the CPU time and half the wall time
 * (bench/holders.js), the loop held at most one slice at a time.
 */
export type ScanMode = 'threadpool' | 'slices';

export interface ScanOptions {
  /** Default 'slices'. */
  mode?: ScanMode;
  /** 'slices' mode: links read per turn of the event loop; default HOLDERS_SLICE_LINKS. */
  sliceLinks?: number;
  /** 'threadpool' mode: processes read at once; default HOLDERS_SCAN_CONCURRENCY. */
  concurrency?: number;
  /**
   * Pids never reported as holders; default [process.pid], the caller itself
   * (pass [] in self-broker mode to list the serving broker process too).
   */
  exclude?: Iterable<number>;
  /** Wall time after which no more fd tables are read; default HOLDERS_SCAN_BUDGET_MS. */
  budgetMs?: number;
}

/** The socket inode of `fd` (what /proc/<pid>/fd links name): fs.fstatSync(fd).ino. */
export function socketInode(fd: number): number {
  return fs.fstatSync(fd).ino;
}

interface ProcStatus { ppid: number; uid: number }

/** PPid and real Uid from /proc/<pid>/status; undefined once the process is gone or unreadable. */
async function readStatus(pid: number): Promise<ProcStatus | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(`${PROC}/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const ppid = /^PPid:\s+(\d+)$/m.exec(text);
  const uid = /^Uid:\s+(\d+)/m.exec(text);
  if (!ppid || !uid) return undefined;
  return { ppid: Number(ppid[1]), uid: Number(uid[1]) };
}

/**
 * The ppid chain of `pid`, nearest first, up to pid 1 (pid 0, the kernel, is
 * left out), at most MAX_ANCESTRY_DEPTH long. Empty when `pid` is gone.
 */
export function ancestors(pid: number): Promise<number[]> {
  return ancestry(pid, new Map());
}

/** ancestors(), reusing the statuses already read in this scan. */
async function ancestry(pid: number, known: Map<number, ProcStatus | undefined>): Promise<number[]> {
  const chain: number[] = [];
  const seen = new Set<number>([pid]);
  let cur = pid;
  while (chain.length < MAX_ANCESTRY_DEPTH) {
    if (!known.has(cur)) known.set(cur, await readStatus(cur));
    const st = known.get(cur);
    if (!st || st.ppid <= 0 || seen.has(st.ppid)) break;
    chain.push(st.ppid);
    seen.add(st.ppid);
    cur = st.ppid;
  }
  return chain;
}

type FdTable = { kind: 'read'; fds: HolderFd[] } | { kind: 'unreadable' } | { kind: 'vanished' };

/** The fds of `pid` that name one of `wanted`: one readdir, then one readlink per fd, in turn. */
async function readFdTable(pid: number, wanted: Set<number>): Promise<FdTable> {
  let names: string[];
  try {
    names = await fsp.readdir(`${PROC}/${pid}/fd`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EACCES' || code === 'EPERM' ? { kind: 'unreadable' } : { kind: 'vanished' };
  }
  const fds: HolderFd[] = [];
  for (const name of names) {
    let target: string;
    try {
      target = await fsp.readlink(`${PROC}/${pid}/fd/${name}`);
    } catch {
      continue; // closed since readdir, or the process exited
    }
    const m = SOCKET_LINK.exec(target);
    if (m && wanted.has(Number(m[1]))) fds.push({ fd: Number(name), inode: Number(m[1]) });
  }
  return { kind: 'read', fds };
}

/** readFdTable() without the threadpool, `budget.links` decremented per link read. */
function readFdTableSync(pid: number, wanted: Set<number>, names: string[], from: number, fds: HolderFd[], budget: { links: number }): number {
  let i = from;
  for (; i < names.length && budget.links > 0; i++, budget.links--) {
    let target: string;
    try {
      target = fs.readlinkSync(`${PROC}/${pid}/fd/${names[i]}`);
    } catch {
      continue; // closed since readdir, or the process exited
    }
    const m = SOCKET_LINK.exec(target);
    if (m && wanted.has(Number(m[1]))) fds.push({ fd: Number(names[i]), inode: Number(m[1]) });
  }
  return i;
}

interface Counts { scanned: number; unreadable: number; vanished: number; skipped: number }

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The 'slices' scan of `pids`: sync reads, yielding to the loop every `sliceLinks` links. */
async function scanSlices(pids: number[], wanted: Set<number>, sliceLinks: number, found: Array<{ pid: number; fds: HolderFd[] }>, counts: Counts, deadline: number): Promise<void> {
  const budget = { links: sliceLinks };
  for (let k = 0; k < pids.length; k++) {
    const pid = pids[k]!;
    if (Date.now() >= deadline) {
      counts.skipped += pids.length - k;
      return;
    }
    if (budget.links <= 0) {
      await nextTurn();
      budget.links = sliceLinks;
    }
    let names: string[];
    try {
      names = fs.readdirSync(`${PROC}/${pid}/fd`);
      budget.links--;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') counts.unreadable++;
      else counts.vanished++;
      continue;
    }
    const fds: HolderFd[] = [];
    let at = 0;
    for (;;) {
      at = readFdTableSync(pid, wanted, names, at, fds, budget);
      if (at >= names.length) break;
      await nextTurn();
      budget.links = sliceLinks;
      // A table too large for the budget: this process and the rest count as skipped (what it holds is unknown).
      if (Date.now() >= deadline) {
        counts.skipped += pids.length - k;
        return;
      }
    }
    counts.scanned++;
    if (fds.length > 0) found.push({ pid, fds });
  }
}

/**
 * Every process (but the excluded, by default the caller) that holds one of
 * the socket `inodes`, with its pid, ppid, uid, command name and ancestry.
 * Never holds the event loop for long (see ScanMode); never throws
 * for a process that exits or cannot be read (counted instead). Throws only
 * when /proc itself cannot be listed.
 */
export async function scanHolders(inodes: Iterable<number>, options: ScanOptions = {}): Promise<HoldersScan> {
  const startedAt = Date.now();
  const t0 = process.hrtime.bigint();
  const wanted = new Set(inodes);
  const exclude = new Set(options.exclude ?? [process.pid]);
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? HOLDERS_SCAN_CONCURRENCY));
  const pids = (await fsp.readdir(PROC)).filter((e) => /^\d+$/.test(e)).map(Number).filter((p) => !exclude.has(p));

  const counts: Counts = { scanned: 0, unreadable: 0, vanished: 0, skipped: 0 };
  const deadline = startedAt + Math.max(0, options.budgetMs ?? HOLDERS_SCAN_BUDGET_MS);
  const found: Array<{ pid: number; fds: HolderFd[] }> = [];
  if (wanted.size > 0 && (options.mode ?? 'slices') === 'slices') {
    await scanSlices(pids, wanted, Math.max(1, Math.floor(options.sliceLinks ?? HOLDERS_SLICE_LINKS)), found, counts, deadline);
  } else if (wanted.size > 0) {
    let next = 0;
    const worker = async () => {
      while (next < pids.length) {
        if (Date.now() >= deadline) {
          counts.skipped += pids.length - next;
          next = pids.length;
          return;
        }
        const pid = pids[next++]!;
        const t = await readFdTable(pid, wanted);
        if (t.kind === 'unreadable') counts.unreadable++;
        else if (t.kind === 'vanished') counts.vanished++;
        else {
          counts.scanned++;
          if (t.fds.length > 0) found.push({ pid, fds: t.fds });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, pids.length) }, worker));
  }

  const known = new Map<number, ProcStatus | undefined>();
  const holders: Holder[] = [];
  for (const { pid, fds } of found.sort((a, b) => a.pid - b.pid)) {
    const st = await readStatus(pid);
    let comm: string | undefined;
    try {
      comm = (await fsp.readFile(`${PROC}/${pid}/comm`, 'utf8')).replace(/\n$/, '');
    } catch {
      comm = undefined;
    }
    if (!st || comm === undefined) {
      counts.vanished++; // exited between its fd table and its status
      continue;
    }
    known.set(pid, st);
    holders.push({ pid, ppid: st.ppid, uid: st.uid, comm, fds: fds.sort((a, b) => a.fd - b.fd), ancestors: await ancestry(pid, known) });
  }
  const byInode = new Map<number, Holder[]>([...wanted].map((ino) => [ino, []]));
  for (const h of holders) {
    for (const ino of new Set(h.fds.map((f) => f.inode))) byInode.get(ino)!.push(h);
  }
  return { holders, byInode, ...counts, startedAt, durationMs: Number(process.hrtime.bigint() - t0) / 1e6 };
}

export interface HolderCacheOptions extends ScanOptions {
  /** How long a scan is reused for the same inodes; default HOLDERS_CACHE_TTL_MS. */
  ttlMs?: number;
  /** The clock, in ms (tests); default Date.now. */
  now?: () => number;
}

/**
 * scanHolders() behind a cache: requests made while a scan runs share it, and
 * a request for the same set of inodes within ttlMs of the end of the last
 * scan gets that scan, so at most one scan per TTL whatever the request rate
 * (and never two at once for one set). A different set (a listener added or
 * removed) starts a fresh scan. A scan that fails is not kept. Callers
 * share the scan object they get: read it, do not change it.
 */
export class HolderCache {
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly scanOptions: ScanOptions;
  private entry: { key: string; scan: Promise<HoldersScan>; doneAt?: number; durationMs?: number } | undefined;
  /** How many scans this cache has started (for tests and metrics). */
  scans = 0;

  constructor(options: HolderCacheOptions = {}) {
    this.ttlMs = options.ttlMs ?? HOLDERS_CACHE_TTL_MS;
    this.now = options.now ?? Date.now;
    const { mode, sliceLinks, concurrency, exclude, budgetMs } = options;
    this.scanOptions = {
      ...(mode !== undefined ? { mode } : {}),
      ...(sliceLinks !== undefined ? { sliceLinks } : {}),
      ...(concurrency !== undefined ? { concurrency } : {}),
      ...(exclude !== undefined ? { exclude: [...exclude] } : {}),
      ...(budgetMs !== undefined ? { budgetMs } : {}),
    };
  }

  /** The holders of `inodes`, from a scan no older than ttlMs. */
  get(inodes: Iterable<number>): Promise<HoldersScan> {
    const set = [...new Set(inodes)].sort((a, b) => a - b);
    const key = set.join(',');
    const e = this.entry;
    if (e && e.key === key && (e.doneAt === undefined || this.now() - e.doneAt < reuseWindowMs(this.ttlMs, e.durationMs ?? 0))) return e.scan;
    const scan = scanHolders(set, this.scanOptions);
    const entry: { key: string; scan: Promise<HoldersScan>; doneAt?: number; durationMs?: number } = { key, scan };
    this.entry = entry;
    this.scans++;
    scan.then(
      (s) => { entry.doneAt = this.now(); entry.durationMs = s.durationMs; },
      () => { if (this.entry === entry) this.entry = undefined; },
    );
    return scan;
  }

  /** Forgets the last scan: the next get() scans again. */
  clear(): void {
    this.entry = undefined;
  }
}
