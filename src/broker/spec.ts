// Listener specs as typed on the command line: NAME=SPEC where SPEC is
//   tcp://HOST:PORT[?backlog=N&nodelay=0]   HOST an IPv4 address or [IPv6]; PORT 0 picks one
//   unix:/path/to.sock[?mode=0660&backlog=N]
//   udp://HOST:PORT
// Pure parsing; creating the sockets is sockets.ts's job.
import * as path from 'node:path';
import * as net from 'node:net';
import { FdbrokerError } from '../protocol/errors';
import { MAX_SOCKET_PATH_BYTES } from '../native/errno';
import { isValidName, type ListenerKind } from '../protocol/messages';

export interface ListenerSpec {
  name: string;
  kind: ListenerKind;
  /** tcp/udp */
  host?: string;
  port?: number;
  /** unix: absolute path */
  path?: string;
  /** unix: mode of the socket file */
  mode?: number;
  /** tcp/unix: listen(2) backlog; undefined means the broker's default */
  backlog?: number;
  /**
   * tcp: TCP_NODELAY on the listener, which accepted connections inherit.
   * parseListenerSpec() sets it for every tcp spec unless `?nodelay=0`
   * (Nagle's delay on small writes costs a server that writes headers and
   * body apart ~40 ms per keep-alive response).
   */
  nodelay?: boolean;
}

function invalid(text: string, why: string): FdbrokerError {
  return new FdbrokerError('ERR_FDBROKER_INVALID_SPEC',
    `invalid listener "${text}": ${why}. Expected NAME=tcp://HOST:PORT, NAME=unix:/path or NAME=udp://HOST:PORT`);
}

function parseQuery(text: string, query: string, allowed: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  if (!query) return out;
  for (const part of query.split('&')) {
    const [k, v] = part.split('=', 2);
    if (!k || v === undefined || !allowed.includes(k)) {
      throw invalid(text, `unknown option "${part}" (allowed: ${allowed.join(', ') || 'none'})`);
    }
    out.set(k, v);
  }
  return out;
}

function parseBacklog(text: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw invalid(text, 'backlog must be an integer from 1 to 65535');
  return n;
}

/** Parses "NAME=SPEC". Relative unix paths are resolved against `cwd`. */
export function parseListenerSpec(text: string, cwd: string = process.cwd()): ListenerSpec {
  const eq = text.indexOf('=');
  if (eq <= 0) throw invalid(text, 'missing NAME=');
  const name = text.slice(0, eq);
  const rest = text.slice(eq + 1);
  if (!isValidName(name)) throw invalid(text, 'a name is 1-128 characters of letters, digits and . _ - : @');
  const q = rest.indexOf('?');
  const body = q >= 0 ? rest.slice(0, q) : rest;
  const query = q >= 0 ? rest.slice(q + 1) : '';

  if (body.startsWith('unix:')) {
    let p = body.slice('unix:'.length);
    if (p.startsWith('//')) p = p.slice(2);
    if (!p) throw invalid(text, 'empty unix path');
    if (p.startsWith('@') || p.includes('\0')) throw invalid(text, 'abstract-namespace sockets are not supported');
    const abs = path.resolve(cwd, p);
    if (Buffer.byteLength(abs) > MAX_SOCKET_PATH_BYTES) throw invalid(text, `the path is ${Buffer.byteLength(abs)} bytes; Unix sockets allow ${MAX_SOCKET_PATH_BYTES}`);
    const opts = parseQuery(text, query, ['mode', 'backlog']);
    let mode: number | undefined;
    const m = opts.get('mode');
    if (m !== undefined) {
      if (!/^0?[0-7]{3}$/.test(m)) throw invalid(text, 'mode must be octal, like 0660');
      mode = parseInt(m, 8);
    }
    return { name, kind: 'unix', path: abs, mode, backlog: parseBacklog(text, opts.get('backlog')) };
  }

  const scheme = body.startsWith('tcp://') ? 'tcp' : body.startsWith('udp://') ? 'udp' : undefined;
  if (!scheme) {
    throw invalid(text, /^[a-z]+:/.test(body) ? `unknown scheme "${body.split(':')[0]}"` : 'missing scheme (tcp://, unix: or udp://)');
  }
  const hostPort = body.slice(6);
  let host: string;
  let portText: string;
  if (hostPort.startsWith('[')) {
    const end = hostPort.indexOf(']');
    if (end < 0 || hostPort[end + 1] !== ':') throw invalid(text, 'an IPv6 address is written [ADDR]:PORT');
    host = hostPort.slice(1, end);
    portText = hostPort.slice(end + 2);
    if (net.isIPv6(host) === false) throw invalid(text, `"${host}" is not an IPv6 address`);
  } else {
    const colon = hostPort.lastIndexOf(':');
    if (colon < 0) throw invalid(text, 'missing :PORT');
    host = hostPort.slice(0, colon);
    portText = hostPort.slice(colon + 1);
    if (host === 'localhost') host = '127.0.0.1';
    if (!net.isIPv4(host)) throw invalid(text, `"${host}" is not an IPv4 address (write IPv6 as [ADDR])`);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw invalid(text, 'PORT must be 0-65535');
  const opts = parseQuery(text, query, scheme === 'tcp' ? ['backlog', 'nodelay'] : []);
  const nd = opts.get('nodelay');
  if (nd !== undefined && nd !== '0' && nd !== '1') throw invalid(text, 'nodelay is 0 or 1');
  return {
    name, kind: scheme, host, port: Number(portText), backlog: parseBacklog(text, opts.get('backlog')),
    // tcp: on by default, off only when the spec says nodelay=0.
    ...(scheme === 'tcp' ? { nodelay: nd !== '0' } : {}),
  };
}
