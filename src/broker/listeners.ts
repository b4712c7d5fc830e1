// Creating the broker's listening sockets from specs. A listener, once
// created, is never accepted on, shut down or reconfigured by fdbroker.
import * as fs from 'node:fs';
import { native } from '../native/binding';
import { ECONNREFUSED } from '../native/errno';
import { check, FdbrokerError, systemError } from '../protocol/errors';
import { probeUnix } from '../transport/socket-info';
import { IPPROTO_TCP, TCP_NODELAY } from '../native/tcp';
import { checkSocketDirectory } from './control-path';
import { bindSocketFile } from './socket-file';
import type { ListenerInfo } from '../protocol/messages';
import type { ListenerSpec } from './spec';
import { DEFAULT_LISTEN_BACKLOG } from './defaults';
import { recoverListener, type RecoveredFrom } from './recover';

export interface OwnedListener {
  /** Owned by the broker's registry for the broker's whole life. */
  fd: number;
  info: ListenerInfo;
  /** Set when the address was in use by a stopped broker's socket and this copy was taken from that holder (recover.ts). */
  recoveredFrom?: RecoveredFrom;
}

export interface CreateListenerOptions {
  /** Accept a unix listener's directory that others could write (--insecure-dir). */
  insecureDir?: boolean;
  /**
   * The socket inodes a stopped broker on the same control path recorded
   * (recover.ts): when the address is in use by one of them, still held by
   * its generations, take a copy of that socket from a holder instead of
   * failing. Default: none (fail with EADDRINUSE).
   */
  recover?: ReadonlySet<number>;
  /** tcp: SO_REUSEPORT before bind, for an instance slot group (slot-sockets.ts; `run --instances` only). */
  reusePort?: boolean;
}

/**
 * Creates, binds and (for tcp/unix) listens a socket as `spec` says. A unix
 * listener's directory is checked as the control socket's is
 * (ERR_FDBROKER_INSECURE_PATH), and its file is created by bindSocketFile.
 */
export function createListener(spec: ListenerSpec, defaultBacklog = DEFAULT_LISTEN_BACKLOG, options: CreateListenerOptions = {}): OwnedListener {
  const n = native();
  const c = n.constants;
  const backlog = spec.backlog ?? defaultBacklog;
  if (spec.kind === 'unix') {
    const p = spec.path!;
    if (!options.insecureDir) checkSocketDirectory(p, `listener "${spec.name}"`);
    const fd = check(n.socket(c.AF_UNIX, c.SOCK_STREAM), 'socket');
    const info: ListenerInfo = { name: spec.name, kind: 'unix', family: 'unix', path: p, backlog };
    try {
      bindSocketFile(fd, p, { mode: spec.mode, backlog, replace: false, replaceStale: unlinkIfStale });
      return { fd, info };
    } catch (err) {
      n.close(fd);
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || !options.recover) throw err;
      const taken = recovered(spec, backlog, err as Error, options.recover);
      return { fd: taken.fd, info, recoveredFrom: taken.from };
    }
  }
  const v6 = spec.host!.includes(':');
  let fd = check(n.socket(v6 ? c.AF_INET6 : c.AF_INET, spec.kind === 'tcp' ? c.SOCK_STREAM : c.SOCK_DGRAM), 'socket');
  try {
    // tcp: SO_REUSEADDR as Node and every server sets it, so a restarted
    // broker can bind while old connections sit in TIME_WAIT; Linux still
    // refuses any other bind of a port with a listening socket on it. udp:
    // never. Two udp sockets that both set it share the port whatever their
    // uid, and datagrams go to the newest, so any local user could read ours.
    // Neither sets SO_REUSEPORT (that would let the same uid share the port),
    // except for run --instances' slot groups (options.reusePort).
    if (spec.kind === 'tcp') check(n.setsockoptInt(fd, c.SOL_SOCKET, c.SO_REUSEADDR, 1), 'setsockopt');
    if (spec.kind === 'tcp' && options.reusePort) check(n.setsockoptInt(fd, c.SOL_SOCKET, c.SO_REUSEPORT, 1), 'setsockopt');
    const where = `${v6 ? `[${spec.host}]` : spec.host}:${spec.port}`;
    // With SO_REUSEPORT a bind would succeed and join a stopped broker's group
    // (its instances serving on): look for its socket first, and take it back.
    const early = spec.kind === 'tcp' && options.reusePort && options.recover ? recoverListener(spec, options.recover) : undefined;
    if (early?.kind === 'refused') {
      throw Object.assign(new Error(`listener "${spec.name}" cannot bind ${spec.kind}://${where} (EADDRINUSE): ${early.reason}`), { code: 'EADDRINUSE', syscall: 'bind', address: where });
    }
    const r = early?.kind === 'recovered' ? 0 : n.bind(fd, { family: v6 ? 'inet6' : 'inet', address: spec.host!, port: spec.port! });
    let recoveredFrom: RecoveredFrom | undefined;
    if (early?.kind === 'recovered') {
      n.close(fd);
      fd = early.fd;
      recoveredFrom = early.from;
    }
    if (r < 0) {
      const cause = systemError(r, 'bind', where);
      const recovery = cause.code === 'EADDRINUSE' && options.recover && spec.kind === 'tcp' ? recoverListener(spec, options.recover) : undefined;
      if (recovery?.kind === 'recovered') {
        // The copy replaces the fresh socket that could not bind.
        n.close(fd);
        fd = recovery.fd;
        recoveredFrom = recovery.from;
      } else {
      const hint = recovery?.kind === 'refused' ? `: ${recovery.reason}`
        : cause.code === 'EADDRINUSE' ? ': another process (or another broker) already listens there; stop it, or choose another port'
          : cause.code === 'EACCES' ? ': ports below 1024 need root or CAP_NET_BIND_SERVICE'
            : cause.code === 'EADDRNOTAVAIL' ? ': no interface of this machine has that address' : '';
      throw Object.assign(new Error(`listener "${spec.name}" cannot bind ${spec.kind}://${where} (${cause.code})${hint}`, { cause }),
        { code: cause.code, errno: cause.errno, syscall: 'bind', address: where });
      }
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
      ...(recoveredFrom ? { recoveredFrom } : {}),
    };
  } catch (err) {
    n.close(fd);
    throw err;
  }
}

/**
 * A copy of the stopped broker's unix socket at spec.path, listening with
 * `backlog`; throws `err` (the bind's EADDRINUSE) with the reason when none
 * can be taken.
 */
function recovered(spec: ListenerSpec, backlog: number, err: Error, recorded: ReadonlySet<number>): { fd: number; from: RecoveredFrom } {
  const recovery = recoverListener(spec, recorded);
  if (recovery.kind !== 'recovered') {
    if (recovery.kind === 'refused') err.message += `: ${recovery.reason}`;
    throw err;
  }
  const r = native().listen(recovery.fd, backlog);
  if (r < 0) {
    native().close(recovery.fd);
    throw systemError(r, 'listen', spec.path);
  }
  return recovery;
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
  if (probeUnix(p, c.SOCK_STREAM) !== ECONNREFUSED) return false;
  fs.unlinkSync(p);
  return true;
}
