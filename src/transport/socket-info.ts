// What a socket fd is: its kind, family, address and whether it listens.
// Used for systemd-inherited fds, for fds handed over by a predecessor, and
// by clients to check every fd they adopt. Also: does anything answer on a
// Unix socket path.
import { native } from '../native/binding';
import { check, systemError } from '../protocol/errors';
import type { ListenerInfo } from '../protocol/messages';

export interface SocketDescription {
  kind: 'tcp' | 'unix' | 'udp' | 'other';
  family: 'IPv4' | 'IPv6' | 'unix' | 'other';
  listening: boolean;
  address?: string;
  port?: number;
  path?: string;
}

/**
 * Whether anything answers on the Unix socket `path`: connect()s a probe of
 * `type` and closes it. Returns 0 (something listens) or the -errno of
 * connect(): -ECONNREFUSED means a stale socket file nobody listens on.
 */
export function probeUnix(path: string, type: number): number {
  const n = native();
  const probe = check(n.socket(n.constants.AF_UNIX, type), 'socket');
  const r = n.connect(probe, { family: 'unix', path });
  n.close(probe);
  return r;
}

/** The kind of a socket from its domain and type: the one classification both describe functions use. */
function classify(domain: number, type: number): { kind: SocketDescription['kind']; family: SocketDescription['family'] } {
  const c = native().constants;
  const family = domain === c.AF_INET ? 'IPv4' : domain === c.AF_INET6 ? 'IPv6' : domain === c.AF_UNIX ? 'unix' : 'other';
  let kind: SocketDescription['kind'] = 'other';
  if (family === 'unix' && type === c.SOCK_STREAM) kind = 'unix';
  else if ((family === 'IPv4' || family === 'IPv6') && type === c.SOCK_STREAM) kind = 'tcp';
  else if ((family === 'IPv4' || family === 'IPv6') && type === c.SOCK_DGRAM) kind = 'udp';
  return { kind, family };
}

function optInt(fd: number, level: number, name: number, syscall = 'getsockopt'): number {
  const r = native().getsockoptInt(fd, level, name);
  if (typeof r === 'number') throw systemError(r, syscall);
  return r.value;
}

/** What kind of socket `fd` is. Throws ENOTSOCK/EBADF as system errors. */
export function describeSocket(fd: number): SocketDescription {
  const n = native();
  const c = n.constants;
  // Three syscalls, not four: getsockname()'s address family is the socket's
  // domain (SO_DOMAIN), so that getsockopt is not needed. Adopting 1,024
  // listeners runs this 1,024 times.
  const type = optInt(fd, c.SOL_SOCKET, c.SO_TYPE);
  const listening = optInt(fd, c.SOL_SOCKET, c.SO_ACCEPTCONN) === 1;
  const name = check(n.sockname(fd), 'getsockname');
  const domain = name.family === 'inet' ? c.AF_INET : name.family === 'inet6' ? c.AF_INET6 : name.family === 'unix' ? c.AF_UNIX : -1;
  const { kind, family } = classify(domain, type);
  const out: SocketDescription = { kind, family, listening };
  if (name.family === 'inet' || name.family === 'inet6') {
    out.address = name.address;
    out.port = name.port;
  } else if (name.family === 'unix') {
    out.path = name.path;
  }
  return out;
}

/**
 * describeSocket() for many fds in one native call (three syscalls per fd,
 * no strings): what adoptListeners() checks. A failed fd gives a system error.
 */
export function describeSockets(fds: number[]): Array<SocketDescription | Error> {
  const raw = native().inspect(fds);
  const out: Array<SocketDescription | Error> = [];
  for (let i = 0; i < fds.length; i++) {
    const [err, type, domain, listening, port] = raw.subarray(i * 5, i * 5 + 5) as unknown as number[];
    if (err! < 0) {
      out.push(systemError(err!, 'getsockopt'));
      continue;
    }
    const { kind, family } = classify(domain!, type!);
    out.push({ kind, family, listening: listening === 1, ...(family === 'IPv4' || family === 'IPv6' ? { port } : {}) });
  }
  return out;
}

/** Whether `fd` is a socket of the kind `info` announces, ready to serve (tcp/unix listening). */
export function matchesInfo(d: SocketDescription, info: ListenerInfo): string | undefined {
  if (d.kind !== info.kind) return `is a ${d.kind} socket, announced as ${info.kind}`;
  if (info.kind !== 'udp' && !d.listening) return 'is not listening';
  if (d.family !== info.family) return `is ${d.family}, announced as ${info.family}`;
  if (info.port !== undefined && d.port !== info.port) return `is bound to port ${d.port}, announced as ${info.port}`;
  return undefined;
}

