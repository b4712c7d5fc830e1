// The fdbroker command line: a thin layer over the library. It is the only
// part of fdbroker that prints.
import { Broker } from './broker';
import { BrokerConnection } from './client';
import { FdbrokerError } from './errors';
import { parseListenerSpec, type ListenerSpec } from './spec';
import type { ListenerInfo, StatusMessage } from './protocol';
import { VERSION } from './version';

const USAGE = `fdbroker ${VERSION}: hand listening sockets from process to process, without downtime

Usage:
  fdbroker serve <control-socket> --listen NAME=SPEC [--listen NAME=SPEC ...] [options]
  fdbroker status <control-socket> [--json]
  fdbroker --help | --version

SPEC:
  tcp://HOST:PORT[?backlog=N]     IPv4 address, or [IPv6]; PORT 0 picks a free port
  unix:/path/to.sock[?mode=0660&backlog=N]
  udp://HOST:PORT

serve options:
  --backlog N        listen(2) backlog of created listeners (default 511)
  --mode MODE        mode of the control socket, octal (default 0600)
  --handshake-timeout MS
                     drop a client that has not said hello within MS ms (default 5000)
  --no-inherit       ignore sockets passed by systemd (LISTEN_FDS)
  --quiet            print only the ready line and errors

Exit status: 0 success, 1 failure, 2 usage error.
`;

class UsageError extends Error {}

interface Parsed { positional: string[]; flags: Map<string, string[]> }

function parseArgs(args: string[], withValue: readonly string[], bare: readonly string[]): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string[]>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (withValue.includes(key)) {
        const v = eq > 0 ? a.slice(eq + 1) : args[++i];
        if (v === undefined) throw new UsageError(`--${key} needs a value`);
        flags.set(key, [...(flags.get(key) ?? []), v]);
      } else if (bare.includes(key) && eq < 0) {
        flags.set(key, ['']);
      } else {
        throw new UsageError(`unknown option ${a}`);
      }
    } else {
      positional.push(a);
    }
  }
  return { positional, flags };
}

export function describeListener(l: ListenerInfo): string {
  if (l.kind === 'unix') return `unix:${l.path}`;
  const host = l.family === 'IPv6' ? `[${l.address}]` : l.address;
  return `${l.kind}://${host}:${l.port}`;
}

export interface Io { out: (s: string) => void; err: (s: string) => void }
const stdio: Io = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

function serve(args: string[], io: Io): Promise<number> {
  const p = parseArgs(args, ['listen', 'backlog', 'mode', 'handshake-timeout'], ['no-inherit', 'quiet']);
  if (p.positional.length !== 1) throw new UsageError('serve needs exactly one control socket path');
  const controlPath = p.positional[0]!;
  const specs: ListenerSpec[] = (p.flags.get('listen') ?? []).map((s) => parseListenerSpec(s));
  let backlog: number | undefined;
  const b = p.flags.get('backlog')?.at(-1);
  if (b !== undefined) {
    backlog = Number(b);
    if (!Number.isInteger(backlog) || backlog < 1 || backlog > 65535) throw new UsageError('--backlog must be 1-65535');
  }
  let mode: number | undefined;
  const m = p.flags.get('mode')?.at(-1);
  if (m !== undefined) {
    if (!/^0?[0-7]{3}$/.test(m)) throw new UsageError('--mode must be octal, like 0600');
    mode = parseInt(m, 8);
  }
  let handshakeTimeoutMs: number | undefined;
  const h = p.flags.get('handshake-timeout')?.at(-1);
  if (h !== undefined) {
    handshakeTimeoutMs = Number(h);
    if (!/^\d+$/.test(h) || !Number.isSafeInteger(handshakeTimeoutMs) || handshakeTimeoutMs < 1 || handshakeTimeoutMs > 2_147_483_647) {
      throw new UsageError('--handshake-timeout must be a whole number of milliseconds, 1-2147483647');
    }
  }
  const quiet = p.flags.has('quiet');
  const broker = Broker.start({
    controlPath, listeners: specs, backlog, mode, handshakeTimeoutMs, inherit: !p.flags.has('no-inherit'),
  });
  if (broker.listenerInfos().length === 0) {
    broker.close();
    throw new UsageError('no listeners: give at least one --listen NAME=SPEC (or start under systemd socket activation)');
  }
  const list = broker.listenerInfos().map((l) => `${l.name}=${describeListener(l)}`).join(' ');
  io.out(`fdbroker: ready on ${controlPath} (pid ${process.pid}): ${list}`);
  if (!quiet) {
    broker.on('adopt', (e) => io.out(`fdbroker: pid ${e.client.pid} (uid ${e.client.uid}) adopted ${e.names.join(', ')}`));
  }
  broker.on('clientError', (c, err) => {
    if (!quiet) io.err(`fdbroker: client pid ${c.pid} (uid ${c.uid}): ${(err as FdbrokerError).code ?? ''} ${err.message}`);
  });
  broker.on('warning', (err) => io.err(`fdbroker: warning: ${err.message}`));
  return new Promise((resolve) => {
    const stop = (sig: NodeJS.Signals) => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      broker.close();
      if (!quiet) io.out(`fdbroker: ${sig}: stopped, removed ${controlPath}`);
      resolve(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

function formatStatus(s: StatusMessage): string {
  const lines = [
    `broker pid ${s.broker.pid} on ${s.broker.controlPath} (${s.broker.software}, protocol ${s.broker.protocol}, since ${s.broker.startedAt})`,
    `listeners (${s.listeners.length}):`,
    ...s.listeners.map((l) => `  ${l.name.padEnd(16)} ${describeListener(l)}${l.backlog ? `  backlog ${l.backlog}` : ''}`),
    `clients (${s.clients.length}):`,
    ...s.clients.map((c) => `  pid ${c.pid} uid ${c.uid} gid ${c.gid} since ${c.connectedAt} adopted: ${c.adopted.join(', ') || '-'}`),
  ];
  return lines.join('\n');
}

async function status(args: string[], io: Io): Promise<number> {
  const p = parseArgs(args, [], ['json']);
  if (p.positional.length !== 1) throw new UsageError('status needs exactly one control socket path');
  const conn = await BrokerConnection.connect(p.positional[0]!);
  try {
    const s = await conn.status();
    io.out(p.flags.has('json') ? JSON.stringify(s, null, 2) : formatStatus(s));
    return 0;
  } finally {
    conn.close();
  }
}

/** Runs the CLI; resolves to the exit status. */
export async function main(argv: string[], io: Io = stdio): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'serve': return await serve(rest, io);
      case 'status': return await status(rest, io);
      case '--version': case '-v': io.out(VERSION); return 0;
      case '--help': case '-h': case 'help': io.out(USAGE); return 0;
      case undefined: io.err(USAGE); return 2;
      default: throw new UsageError(`unknown command "${cmd}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`fdbroker: ${err.message}\nRun \`fdbroker --help\` for usage.`);
      return 2;
    }
    const e = err as Error & { code?: string };
    io.err(`fdbroker: ${e.code ? `${e.code}: ` : ''}${e.message}`);
    return 1;
  }
}
