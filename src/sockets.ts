// Creating the broker's listening sockets, and describing any socket fd
// (for systemd-inherited fds and for checking adopted ones). A listener, once
// created, is never accepted on, shut down or reconfigured by fdbroker.
import * as fs from 'node:fs';
import { native } from './_binding';
import { check, FdbrokerError, systemError } from './errors';
import type { ListenerInfo } from './protocol';
import type { ListenerSpec } from './spec';
import { DEFAULT_LISTEN_BACKLOG } from './constants';
import { IPPROTO_TCP, TCP_NODELAY } from './tcp-nodelay';

export interface OwnedListener {
  /** Owned by the broker's registry for the broker's whole life. */
  fd: number;
  info: ListenerInfo;
}

export interface SocketDescription {
  kind: 'tcp' | 'unix' | 'udp' | 'other';
  family: 'IPv4' | 'IPv6' | 'unix' | 'other';
  listening: boolean;
  address?: string;
  port?: number;
  path?: string;
}

/** Creates, binds and (for tcp/unix) listens a socket as `spec` says. */
export function createListener(spec: ListenerSpec, defaultBacklog = DEFAULT_LISTEN_BACKLOG): OwnedListener {
  const n = native();
  const c = n.constants;
  const backlog = spec.backlog ?? defaultBacklog;
  if (spec.kind === 'unix') {
    const p = spec.path!;
    const fd = check(n.socket(c.AF_UNIX, c.SOCK_STREAM), 'socket');
    try {
      if (spec.mode !== undefined) check(n.fchmod(fd, spec.mode), 'fchmod');
      let r = n.bind(fd, { family: 'unix', path: p });
      if (r === -98 /* EADDRINUSE */ && unlinkIfStale(p)) r = n.bind(fd, { family: 'unix', path: p });
      check(r, 'bind', p);
      if (spec.mode !== undefined) fs.chmodSync(p, spec.mode);
      check(n.listen(fd, backlog), 'listen', p);
      return { fd, info: { name: spec.name, kind: 'unix', family: 'unix', path: p, backlog } };
    } catch (err) {
      n.close(fd);
      throw err;
    }
  }
  const v6 = spec.host!.includes(':');
  const fd = check(n.socket(v6 ? c.AF_INET6 : c.AF_INET, spec.kind === 'tcp' ? c.SOCK_STREAM : c.SOCK_DGRAM), 'socket');
  try {
    // SO_REUSEADDR as Node and every server sets it: a restarted broker can
    // bind while old connections sit in TIME_WAIT.
    check(n.setsockoptInt(fd, c.SOL_SOCKET, c.SO_REUSEADDR, 1), 'setsockopt');
    const where = `${v6 ? `[${spec.host}]` : spec.host}:${spec.port}`;
    const r = n.bind(fd, { family: v6 ? 'inet6' : 'inet', address: spec.host!, port: spec.port! });
    if (r < 0) {
      const cause = systemError(r, 'bind', where);
      const hint = cause.code === 'EADDRINUSE' ? ': another process (or another broker) already listens there; stop it, or choose another port'
        : cause.code === 'EACCES' ? ': ports below 1024 need root or CAP_NET_BIND_SERVICE'
          : cause.code === 'EADDRNOTAVAIL' ? ': no interface of this machine has that address' : '';
      throw Object.assign(new Error(`listener "${spec.name}" cannot bind ${spec.kind}://${where} (${cause.code})${hint}`, { cause }),
        { code: cause.code, errno: cause.errno, syscall: 'bind', address: where });
    }
    if (spec.nodelay) check(n.setsockoptInt(fd, IPPROTO_TCP, TCP_NODELAY, 1), 'setsockopt', where);
    if (spec.kind === 'tcp') check(n.listen(fd, backlog), 'listen', where);
    const name = check(n.sockname(fd), 'getsockname');
    if (name.family !== 'inet' && name.family !== 'inet6') throw new FdbrokerError('ERR_FDBROKER_INTERNAL', 'unexpected socket family');
    return {
      fd,
      info: {
        name: spec.name,
        kind: spec.kind,
        family: v6 ? 'IPv6' : 'IPv4',
        address: name.address,
        port: name.port,
        ...(spec.kind === 'tcp' ? { backlog } : {}),
      },
    };
  } catch (err) {
    n.close(fd);
    throw err;
  }
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

/** A stale unix listener path (nobody accepts on it) is removed; a live one is not. */
function unlinkIfStale(p: string): boolean {
  const n = native();
  const c = n.constants;
  try {
    if (!fs.lstatSync(p).isSocket()) return false;
  } catch {
    return true;
  }
  if (probeUnix(p, c.SOCK_STREAM) !== -111 /* ECONNREFUSED */) return false;
  fs.unlinkSync(p);
  return true;
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
  const family = name.family === 'inet' ? 'IPv4' : name.family === 'inet6' ? 'IPv6' : name.family === 'unix' ? 'unix' : 'other';
  let kind: SocketDescription['kind'] = 'other';
  if (family === 'unix' && type === c.SOCK_STREAM) kind = 'unix';
  else if ((family === 'IPv4' || family === 'IPv6') && type === c.SOCK_STREAM) kind = 'tcp';
  else if ((family === 'IPv4' || family === 'IPv6') && type === c.SOCK_DGRAM) kind = 'udp';
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
  const n = native();
  const c = n.constants;
  const raw = n.inspect(fds);
  const out: Array<SocketDescription | Error> = [];
  for (let i = 0; i < fds.length; i++) {
    const [err, type, domain, listening, port] = raw.subarray(i * 5, i * 5 + 5) as unknown as number[];
    if (err! < 0) {
      out.push(systemError(err!, 'getsockopt'));
      continue;
    }
    const family = domain === c.AF_INET ? 'IPv4' : domain === c.AF_INET6 ? 'IPv6' : domain === c.AF_UNIX ? 'unix' : 'other';
    let kind: SocketDescription['kind'] = 'other';
    if (family === 'unix' && type === c.SOCK_STREAM) kind = 'unix';
    else if (family !== 'unix' && family !== 'other' && type === c.SOCK_STREAM) kind = 'tcp';
    else if (family !== 'unix' && family !== 'other' && type === c.SOCK_DGRAM) kind = 'udp';
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
