// Recovering a listener that a stopped broker left in its generations' hands.
// A broker that stops (Ctrl-C, a crash without the fd store) leaves its
// listening sockets open in every process it handed a copy to: the app serves
// on, and a new broker's bind() of the same address fails with EADDRINUSE.
// Instead of that dead end, the new broker takes a copy of the very socket
// (the same open file description, the same accept queue) from a process that
// holds it, with pidfd_getfd(2): nothing is closed, nothing is refused, and
// the generations rejoin the new broker as they would after a takeover.
//
// Only a socket that a broker on the same control path created is taken: each
// broker records its listeners' socket inodes in PATH.sockets (recordSockets),
// a file left in place when it stops, and a socket's inode is unique while it
// lives. The socket's creator must be this broker's user as well (the kernel
// records it per socket in /proc/net/*): a root broker never adopts a port
// another user bound while it was down, and no broker takes over the port of
// some other program of its own user. The kernel itself allows the copy only
// as it allows ptrace (same uid and a dumpable process, or CAP_SYS_PTRACE).
// Runs once, synchronously, at start, before the control socket exists.
import * as fs from 'node:fs';
import { native } from '../native/binding';
import { systemError } from '../protocol/errors';
import { canonicalAddress } from '../transport/address';
import type { ListenerSpec } from './spec';

/** Processes whose fd tables are read at most while looking for a holder (bounds the start on a crowded machine). */
export const RECOVER_MAX_PROCESSES = 100_000;

const PROC = '/proc';
/** /proc/net/tcp `st` of a listening socket (TCP_LISTEN). */
const TCP_LISTEN = '0A';
/** /proc/net/unix flag of a listening socket (__SO_ACCEPTCON). */
const UNIX_ACCEPTCON = 0x10000;

export interface RecoveredFrom {
  pid: number;
  comm: string;
  /** The fd number in that process's table. */
  fd: number;
}

export type Recovery =
  | { kind: 'recovered'; fd: number; from: RecoveredFrom }
  /** Nothing listens there (the EADDRINUSE came from something else). */
  | { kind: 'none' }
  /** Something listens there that cannot or must not be taken; `reason` says why and what to do. */
  | { kind: 'refused'; reason: string };

interface Listening { inode: number; uid: number | undefined }

/**
 * Takes a copy of the listening socket at `spec`'s address from a process
 * that holds it, when this broker's user created that socket. The returned
 * fd is owned by the caller; it is the socket whose inode /proc names, checked
 * with fstat after the copy.
 */
export function recoverListener(spec: ListenerSpec, recorded: ReadonlySet<number>): Recovery {
  const found = spec.kind === 'tcp' ? listeningTcp(spec.host!, spec.port!)
    : spec.kind === 'unix' ? listeningUnix(spec.path!) : undefined;
  // Not a socket a broker on this path created: somebody else's, left alone.
  if (!found || !recorded.has(found.inode)) return { kind: 'none' };
  const euid = process.geteuid?.() ?? 0;
  if (found.uid !== undefined && found.uid !== euid) {
    return { kind: 'refused', reason: `the socket listening there was created by uid ${found.uid}, not by this broker's user (uid ${euid}), so it is not a stopped broker's: stop that process, or choose another address` };
  }
  const holders = holdersOf(found.inode);
  if (holders.length === 0) {
    return { kind: 'refused', reason: 'a process this user cannot see holds it (another uid, or hidepid): start the broker as root, or stop that process' };
  }
  const n = native();
  let lastError = '';
  for (const h of holders) {
    const pidfd = n.pidfdOpen(h.pid);
    if (pidfd < 0) {
      lastError = systemError(pidfd, 'pidfd_open').code ?? String(pidfd);
      continue;
    }
    let fd: number;
    try {
      fd = n.pidfdGetfd(pidfd, h.fd);
    } finally {
      n.close(pidfd);
    }
    if (fd < 0) {
      lastError = `pid ${h.pid} (${h.comm}): ${systemError(fd, 'pidfd_getfd').code ?? fd}`;
      continue;
    }
    // The very socket /proc named, and one listening at spec's own address: the
    // fd itself is checked, not the text of /proc (a unix path may hold anything).
    let same: boolean;
    try {
      same = fs.fstatSync(fd).ino === found.inode && listensAt(fd, spec);
    } catch {
      same = false;
    }
    if (!same) {
      n.close(fd);
      continue;
    }
    return { kind: 'recovered', fd, from: h };
  }
  const who = holders.map((h) => `pid ${h.pid} (${h.comm})`).join(', ');
  return {
    kind: 'refused',
    reason: `${who} still ${holders.length === 1 ? 'holds' : 'hold'} the listening socket of a stopped broker, and this broker may not take a copy (${lastError || 'it was gone'}): `
      + `start the broker as that process's user or as root (CAP_SYS_PTRACE; where kernel.yama.ptrace_scope is 1 or more, only CAP_SYS_PTRACE; pidfd_getfd needs Linux 5.6), or stop ${holders.length === 1 ? 'it' : 'them'}`,
  };
}

/** Whether `fd` is a listening stream socket bound to exactly spec's address (tcp: host and port; unix: path). */
function listensAt(fd: number, spec: ListenerSpec): boolean {
  const n = native();
  const c = n.constants;
  const [err, type, family, accepting] = n.inspect([fd]);
  if (err !== 0 || type !== c.SOCK_STREAM || accepting !== 1) return false;
  const name = n.sockname(fd);
  if (typeof name === 'number') return false;
  if (spec.kind === 'unix') return family === c.AF_UNIX && name.family === 'unix' && name.path === spec.path;
  if (spec.kind !== 'tcp' || (name.family !== 'inet' && name.family !== 'inet6')) return false;
  return name.port === spec.port && canonicalAddress(name.address) === canonicalAddress(spec.host!);
}

/** The record of a broker's listening sockets, beside its control socket. */
export function socketsFile(controlPath: string): string {
  return `${controlPath}.sockets`;
}

/**
 * Writes the socket inodes of `listeners` to PATH.sockets (0600, replaced
 * atomically; never through a symlink). Best effort: a broker that cannot
 * write it only loses the recovery of a later start (returns the error).
 */
export function recordSockets(controlPath: string, inodes: readonly number[]): Error | undefined {
  const file = socketsFile(controlPath);
  const tmp = `${file}.${process.pid}.tmp`;
  let created = false;
  try {
    const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    created = true;
    try {
      fs.writeSync(fd, `${JSON.stringify({ pid: process.pid, inodes })}\n`);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    return undefined;
  } catch (err) {
    // Only what this call created: never a file someone else put at that name.
    if (created) try { fs.unlinkSync(tmp); } catch { /* renamed or gone */ }
    return err as Error;
  }
}

/** The inodes a broker on `controlPath` recorded; empty unless the file is a regular file of this user's. */
export function recordedSockets(controlPath: string): Set<number> {
  let fd: number;
  try {
    fd = fs.openSync(socketsFile(controlPath), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch {
    return new Set();
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.uid !== (process.geteuid?.() ?? 0) || st.size > 1 << 20) return new Set();
    const parsed = JSON.parse(fs.readFileSync(fd, 'utf8')) as { inodes?: unknown };
    return new Set(Array.isArray(parsed.inodes) ? parsed.inodes.filter((i): i is number => Number.isSafeInteger(i)) : []);
  } catch {
    return new Set();
  } finally {
    fs.closeSync(fd);
  }
}

/** The listening TCP socket bound to exactly host:port in this network namespace, from /proc/net/tcp{,6}. */
function listeningTcp(host: string, port: number): Listening | undefined {
  const v6 = host.includes(':');
  const want = canonicalAddress(host);
  let text: string;
  try {
    text = fs.readFileSync(`${PROC}/net/${v6 ? 'tcp6' : 'tcp'}`, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== TCP_LISTEN) continue;
    const [addrHex, portHex] = f[1]!.split(':');
    if (Number.parseInt(portHex!, 16) !== port) continue;
    if (canonicalAddress(v6 ? ipv6FromProc(addrHex!) : ipv4FromProc(addrHex!)) !== want) continue;
    return { inode: Number(f[9]), uid: Number(f[7]) };
  }
  return undefined;
}

/** The listening unix socket bound at `path`, from /proc/net/unix; its creator is the socket file's owner. */
function listeningUnix(path: string): Listening | undefined {
  let st: fs.Stats;
  let text: string;
  try {
    st = fs.lstatSync(path);
    if (!st.isSocket()) return undefined;
    text = fs.readFileSync(`${PROC}/net/unix`, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode Path: the path is the rest of the line (it may hold spaces).
    const m = /^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s(.*)$/.exec(line);
    if (!m || m[8] !== path) continue;
    const f = m.slice(1);
    if ((Number.parseInt(f[3]!, 16) & UNIX_ACCEPTCON) === 0) continue;
    return { inode: Number(f[6]), uid: st.uid };
  }
  return undefined;
}

/** Every readable process (not this one) with an fd on `inode`, lowest pid first, one fd each. */
function holdersOf(inode: number): RecoveredFrom[] {
  const link = `socket:[${inode}]`;
  const out: RecoveredFrom[] = [];
  let pids: number[];
  try {
    pids = fs.readdirSync(PROC).filter((d) => /^\d+$/.test(d)).map(Number).sort((a, b) => a - b);
  } catch {
    return out;
  }
  for (const pid of pids.slice(0, RECOVER_MAX_PROCESSES)) {
    if (pid === process.pid) continue;
    let names: string[];
    try {
      names = fs.readdirSync(`${PROC}/${pid}/fd`);
    } catch {
      continue;
    }
    for (const name of names) {
      let target: string;
      try {
        target = fs.readlinkSync(`${PROC}/${pid}/fd/${name}`);
      } catch {
        continue;
      }
      if (target !== link) continue;
      let comm = '?';
      try {
        comm = fs.readFileSync(`${PROC}/${pid}/comm`, 'utf8').trim();
      } catch { /* gone */ }
      out.push({ pid, comm, fd: Number(name) });
      break;
    }
  }
  return out;
}

/** 0100007F -> 127.0.0.1 (each 32-bit word is in host byte order: little-endian here). */
function ipv4FromProc(hex: string): string {
  const b = Buffer.from(hex, 'hex');
  return `${b[3]}.${b[2]}.${b[1]}.${b[0]}`;
}

/** 32 hex digits, four 32-bit words each in host byte order, to eight groups. */
function ipv6FromProc(hex: string): string {
  const b = Buffer.from(hex, 'hex');
  for (let i = 0; i < 16; i += 4) b.subarray(i, i + 4).reverse();
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

