// The fdbroker command line: a thin layer over the library. It is the only
// part of fdbroker that prints.
import { Broker } from './broker';
import { BrokerConnection } from './client';
import { FdbrokerError } from './errors';
import { parseListenerSpec, type ListenerSpec } from './spec';
import type { ListenerInfo, StatusMessage } from './protocol';
import { VERSION } from './version';
import { DEFAULT_WAIT_TIMEOUT_MS, WAIT_POLL_MS } from './constants';
import { EXEC_START_FAILED, Exec, ProgramStartError } from './exec';
import * as os from 'node:os';
import { inTree } from './proc-tree';

const USAGE = `fdbroker ${VERSION}: hand listening sockets from process to process, without downtime

Usage:
  fdbroker serve <control-socket> --listen NAME=SPEC [--listen NAME=SPEC ...] [options]
  fdbroker status <control-socket> [--json]
  fdbroker wait <control-socket> [--pid PID] [--until handover|ready] [--timeout MS] [--json]
  fdbroker exec <control-socket> [exec options] -- CMD [ARGS...]
  fdbroker --help | --version

SPEC:
  tcp://HOST:PORT[?backlog=N&nodelay=1]
                                  IPv4 address, or [IPv6]; PORT 0 picks a free port;
                                  nodelay=1: TCP_NODELAY, inherited by accepted connections
  unix:/path/to.sock[?mode=0660&backlog=N]
  udp://HOST:PORT

serve options:
  --backlog N        listen(2) backlog of created listeners (default 511)
  --mode MODE        mode of the control socket, octal (default 0600)
  --handshake-timeout MS
                     drop a client that has not said hello within MS ms (default 5000)
  --ready-timeout MS a generation not ready within MS ms is reported and never
                     retires anyone (default 60000)
  --retire-timeout MS
                     report a generation still connected MS ms after it was told
                     to retire (default 30000); the broker signals nobody
  --group GID        group of the control socket (with --mode 0660)
  --allow-uid UID[,UID]   also let these uids adopt and read status (the
                     broker's own uid and root always may)
  --allow-gid GID[,GID]   the same for peers whose primary gid is GID
  --allow-status-uid UID, --allow-status-gid GID
                     let these read status only
  --max-clients N    most clients at once (default 1024)
  --max-clients-per-uid N
                     most clients per uid other than the broker's and root's (default 64)
  --adopt-from PATH  take the listeners from the broker (or app) serving PATH,
                     e.g. to replace a broker that was killed
  --insecure-dir     accept a control socket directory writable by others
  --no-inherit       ignore sockets passed by systemd (LISTEN_FDS)
  --quiet            print only the ready line and errors

wait: blocks until the generation of PID (default: the newest) is ready and,
with --until handover (the default), every older generation has left. The
generation of PID is the newest one whose process is PID or a descendant of
PID (so PID may be a wrapper: npx, sh -c, npm start, fdbroker exec).
--json prints one JSON line: {"result","pid","generation","older","ms"}.
  exit 0  the condition holds
  exit 1  timeout (default 30000 ms) before that generation was ready, also
          when the broker answers too slowly
  exit 3  no broker at the path, or the connection to it failed
  exit 4  that generation left, was retired, or missed its ready timeout
          without becoming ready (roll back)
  exit 5  --until handover: that generation is ready, but older ones still
          drain at the timeout (deployed; do not roll back)

exec: joins as a generation and runs CMD with the listeners at fd 3, 4, ...
(LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID, as systemd socket activation).
  --names a,b        adopt only these listeners, in this order (default all)
  --ready notify|immediate
                     notify (default): ready when CMD sends READY=1 to
                     $NOTIFY_SOCKET (sd_notify); immediate: once CMD is started
  --retire-signal SIG
                     sent to CMD when a newer generation is ready (default SIGTERM)
  --stop-timeout MS  SIGKILL CMD if it has not exited MS ms after that (default 30000)
  --ready-timeout MS stop CMD if it sends no READY=1 within MS ms (default: no limit)
  --label TEXT       shown in status (default: CMD's base name)
  SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2 are passed on to CMD.
  exit status: CMD's, or 128+N if signal N killed it; 127 if CMD cannot be
  started; 1 if the broker cannot be reached (nothing is started then)

Exit status otherwise: 0 success, 1 failure, 2 usage error.
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

function idList(p: Parsed, name: string): number[] {
  const out: number[] = [];
  for (const v of p.flags.get(name) ?? []) {
    for (const part of v.split(',')) {
      if (!/^\d+$/.test(part)) throw new UsageError(`--${name} takes numeric ids (comma-separated), not "${part}"`);
      out.push(Number(part));
    }
  }
  return out;
}

function intFlag(p: Parsed, name: string, min: number, max: number): number | undefined {
  const v = p.flags.get(name)?.at(-1);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}`);
  return n;
}

/** Listeners taken from another broker (e.g. a running app that serves its own), for recovery. */
async function adoptFrom(path: string): Promise<Array<{ info: ListenerInfo; fd: number }>> {
  const conn = await BrokerConnection.connect(path);
  try {
    return await conn.adopt(undefined);
  } finally {
    conn.close();
  }
}

async function serve(args: string[], io: Io): Promise<number> {
  const p = parseArgs(args,
    ['listen', 'backlog', 'mode', 'group', 'handshake-timeout', 'ready-timeout', 'retire-timeout', 'allow-uid', 'allow-gid',
      'allow-status-uid', 'allow-status-gid', 'max-clients', 'max-clients-per-uid', 'adopt-from'],
    ['no-inherit', 'quiet', 'insecure-dir']);
  if (p.positional.length !== 1) throw new UsageError('serve needs exactly one control socket path');
  const controlPath = p.positional[0]!;
  const specs: ListenerSpec[] = (p.flags.get('listen') ?? []).map((s) => parseListenerSpec(s));
  const backlog = intFlag(p, 'backlog', 1, 65535);
  let mode: number | undefined;
  const m = p.flags.get('mode')?.at(-1);
  if (m !== undefined) {
    if (!/^0?[0-7]{3}$/.test(m)) throw new UsageError('--mode must be octal, like 0600');
    mode = parseInt(m, 8);
  }
  const group = intFlag(p, 'group', 0, 2 ** 32 - 2);
  const quiet = p.flags.has('quiet');
  // Handlers first: a supervisor may signal as soon as it reads the ready
  // line, and SIGHUP (a closed terminal) must not kill the sockets' owner.
  let stopped: NodeJS.Signals | undefined;
  let onStop: (sig: NodeJS.Signals) => void = (sig) => { stopped = sig; };
  const stopHandler = (sig: NodeJS.Signals) => onStop(sig);
  const hup = () => io.err('fdbroker: SIGHUP ignored (stop with SIGTERM or SIGINT)');
  process.on('SIGTERM', stopHandler);
  process.on('SIGINT', stopHandler);
  process.on('SIGHUP', hup);
  const unhook = () => {
    process.off('SIGTERM', stopHandler);
    process.off('SIGINT', stopHandler);
    process.off('SIGHUP', hup);
  };
  let broker: Broker;
  try {
    const from = p.flags.get('adopt-from')?.at(-1);
    const handshakeTimeoutMs = msFlag(p, 'handshake-timeout');
    const readyTimeoutMs = msFlag(p, 'ready-timeout');
    const retireTimeoutMs = msFlag(p, 'retire-timeout');
    const maxClients = intFlag(p, 'max-clients', 1, 1_000_000);
    const maxClientsPerUid = intFlag(p, 'max-clients-per-uid', 1, 1_000_000);
    const access = {
      allowUids: idList(p, 'allow-uid'), allowGids: idList(p, 'allow-gid'),
      statusUids: idList(p, 'allow-status-uid'), statusGids: idList(p, 'allow-status-gid'),
    };
    // Flags are parsed first: from here on Broker.start owns the adopted fds.
    const listenerFds = from ? await adoptFrom(from) : [];
    broker = Broker.start({
      controlPath, listeners: specs, listenerFds, backlog, mode, group,
      handshakeTimeoutMs, readyTimeoutMs, retireTimeoutMs, maxClients, maxClientsPerUid, access,
      insecureDir: p.flags.has('insecure-dir'),
      inherit: !p.flags.has('no-inherit'),
    });
    if (broker.listenerInfos().length === 0) {
      broker.close();
      throw new UsageError('no listeners: give at least one --listen NAME=SPEC, --adopt-from PATH, or start under systemd socket activation');
    }
  } catch (err) {
    unhook();
    throw err;
  }
  const list = broker.listenerInfos().map((l) => `${l.name}=${describeListener(l)}`).join(' ');
  if (!quiet) {
    broker.on('audit', (e) => io.out(`fdbroker: audit op=${e.op} pid=${e.pid} uid=${e.uid} gid=${e.gid}`
      + ` names=${e.names ? e.names.join(',') || '-' : '*'} generation=${e.generation ?? '-'} result=${e.result}`));
    broker.on('ready', (g, retire) => io.out(`fdbroker: generation ${g.number} (pid ${g.pid}) ready${retire.length ? `; retiring ${retire.join(', ')}` : ''}`));
    broker.on('leave', (g) => io.out(`fdbroker: generation ${g.number} (pid ${g.pid}) left (${g.state})`));
  }
  broker.on('overdue', (g, what) => io.err(what === 'ready'
    ? `fdbroker: generation ${g.number} (pid ${g.pid}) not ready in time; it will not retire anyone`
    : `fdbroker: generation ${g.number} (pid ${g.pid}) told to retire at ${g.retiringSince} and still connected`));
  broker.on('listenerBroken', (l) => io.err(`fdbroker: listener "${l.name}" (${describeListener(l)}) no longer listens: a holder shut it down; restart the broker to recreate it`));
  broker.on('clientError', (c, err) => {
    const code = (err as FdbrokerError).code ?? '';
    // Refusals are always logged; other client errors unless --quiet.
    if (!quiet || code === 'ERR_FDBROKER_ACCESS_DENIED') io.err(`fdbroker: client pid ${c.pid} (uid ${c.uid}): ${code} ${err.message}`);
  });
  broker.on('warning', (err) => io.err(`fdbroker: warning: ${err.message}`));
  return new Promise((resolve) => {
    onStop = (sig) => {
      unhook();
      broker.close();
      if (!quiet) io.out(`fdbroker: ${sig}: stopped, removed ${controlPath}`);
      resolve(0);
    };
    if (stopped) {
      onStop(stopped);
      return;
    }
    io.out(`fdbroker: ready on ${controlPath} (pid ${process.pid}): ${list}`);
  });
}

/** A whole number of milliseconds from --NAME, or undefined. */
function msFlag(p: Parsed, name: string): number | undefined {
  const v = p.flags.get(name)?.at(-1);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1 || n > 2_147_483_647) {
    throw new UsageError(`--${name} must be a whole number of milliseconds, 1-2147483647`);
  }
  return n;
}

function formatStatus(s: StatusMessage): string {
  const lines = [
    `broker pid ${s.broker.pid} on ${s.broker.controlPath} (${s.broker.software}, protocol ${s.broker.protocol}, since ${s.broker.startedAt})`,
    `listeners (${s.listeners.length}):`,
    ...s.listeners.map((l) => `  ${l.name.padEnd(16)} ${describeListener(l)}${l.backlog ? `  backlog ${l.backlog}` : ''}`),
    `clients (${s.clients.length}):`,
    ...s.clients.map((c) => `  pid ${c.pid} uid ${c.uid} gid ${c.gid} since ${c.connectedAt} adopted: ${c.adopted.join(', ') || '-'}`),
    `generations (${s.generations.length}):`,
    ...s.generations.map((g) => `  #${g.number} pid ${g.pid} ${g.state}${g.readyAt ? ` since ${g.readyAt}` : ''}`
      + `${g.retiringSince ? ` retiring since ${g.retiringSince}` : ''}${g.readyOverdue ? ' NOT READY IN TIME' : ''}`
      + `${g.retireOverdue ? ' RETIRE OVERDUE' : ''} listeners: ${g.adopted.join(', ') || '-'}${g.label ? ` (${g.label})` : ''}`),
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

export const WAIT_EXIT = { ok: 0, timeout: 1, usage: 2, broker: 3, gone: 4, draining: 5 } as const;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The generation `wait` watches: the newest of PID's process tree (or the newest of all). */
export function waitTarget(s: StatusMessage, pid: number | undefined, isInTree: (pid: number, root: number) => boolean = inTree): StatusMessage['generations'][number] | undefined {
  const newestFirst = [...s.generations].sort((a, b) => b.number - a.number);
  return pid === undefined ? newestFirst[0] : newestFirst.find((g) => g.pid === pid || isInTree(g.pid, pid));
}

/** One evaluation of a wait condition: 'ok', 'wait' or 'gone'. */
export function waitCondition(s: StatusMessage, until: 'ready' | 'handover', pid: number | undefined, pidIsAlive: (pid: number) => boolean,
  isInTree: (pid: number, root: number) => boolean = inTree): 'ok' | 'wait' | 'gone' {
  const gens = s.generations;
  const target = waitTarget(s, pid, isInTree);
  if (!target) return pid !== undefined && !pidIsAlive(pid) ? 'gone' : 'wait';
  if (target.state === 'retiring' && until === 'handover') return 'gone';
  if (target.state !== 'ready' && target.state !== 'retiring') return target.readyOverdue ? 'gone' : 'wait';
  if (until === 'ready') return 'ok';
  return gens.some((g) => g.number < target.number) ? 'wait' : 'ok';
}

async function wait(args: string[], io: Io): Promise<number> {
  const p = parseArgs(args, ['pid', 'until', 'timeout'], ['quiet', 'json']);
  if (p.positional.length !== 1) throw new UsageError('wait needs exactly one control socket path');
  const until = p.flags.get('until')?.at(-1) ?? 'handover';
  if (until !== 'ready' && until !== 'handover') throw new UsageError('--until is "ready" or "handover"');
  const pidText = p.flags.get('pid')?.at(-1);
  if (pidText !== undefined && !/^\d+$/.test(pidText)) throw new UsageError('--pid must be a process id');
  const pid = pidText === undefined ? undefined : Number(pidText);
  const timeout = msFlag(p, 'timeout') ?? DEFAULT_WAIT_TIMEOUT_MS;
  const started = Date.now();
  const deadline = started + timeout;
  const who = pid !== undefined ? `generation of pid ${pid}` : 'newest generation';
  // --json: one line on stdout with the verdict, whatever it is.
  let last: StatusMessage | undefined;
  const verdict = (result: keyof typeof WAIT_EXIT): number => {
    if (p.flags.has('json')) {
      const t = last ? waitTarget(last, pid) : undefined;
      io.out(JSON.stringify({
        result, ...(pid !== undefined ? { startedPid: pid } : {}),
        ...(t ? { pid: t.pid, generation: t.number, state: t.state } : {}),
        older: last && t ? last.generations.filter((g) => g.number < t.number).map((g) => ({ pid: g.pid, generation: g.number, state: g.state })) : [],
        ms: Date.now() - started,
      }));
    }
    return WAIT_EXIT[result];
  };
  let conn: BrokerConnection;
  try {
    conn = await BrokerConnection.connect(p.positional[0]!, { timeout });
  } catch (err) {
    io.err(`fdbroker: ${(err as FdbrokerError).code ?? ''}: ${(err as Error).message}`);
    // Out of time while the broker is still answering is a timeout, not a lost broker.
    return verdict((err as FdbrokerError).code === 'ERR_FDBROKER_TIMEOUT' ? 'timeout' : 'broker');
  }
  try {
    for (;;) {
      let s: StatusMessage;
      try {
        s = await conn.status(Math.max(1, deadline - Date.now()));
      } catch (err) {
        io.err(`fdbroker: ${(err as FdbrokerError).code ?? ''}: ${(err as Error).message}`);
        return verdict((err as FdbrokerError).code === 'ERR_FDBROKER_TIMEOUT' && Date.now() >= deadline ? 'timeout' : 'broker');
      }
      last = s;
      const r = waitCondition(s, until, pid, pidAlive);
      if (r === 'ok') {
        if (!p.flags.has('quiet') && !p.flags.has('json')) io.out(`fdbroker: ${who} is ${until === 'ready' ? 'ready' : 'ready and every older generation has left'}`);
        return verdict('ok');
      }
      if (r === 'gone') {
        io.err(`fdbroker: ${who} left, was retired or missed its ready timeout without becoming ready`);
        return verdict('gone');
      }
      if (Date.now() >= deadline) {
        // Ready but not alone: deployed, the old version still drains.
        if (waitCondition(s, 'ready', pid, pidAlive) === 'ok') {
          io.err(`fdbroker: ${who} is ready; older generations still draining after ${timeout} ms`);
          return verdict('draining');
        }
        io.err(`fdbroker: timed out after ${timeout} ms waiting for the ${who} to be ${until === 'ready' ? 'ready' : 'ready and alone'}`);
        return verdict('timeout');
      }
      await new Promise((res) => setTimeout(res, WAIT_POLL_MS));
    }
  } finally {
    conn.close();
  }
}

function signalName(v: string): NodeJS.Signals {
  const name = (/^SIG/i.test(v) ? v : `SIG${v}`).toUpperCase();
  if (/^\d+$/.test(v)) {
    const found = Object.entries(os.constants.signals).find(([, num]) => num === Number(v));
    if (found) return found[0] as NodeJS.Signals;
  } else if (name in os.constants.signals) {
    return name as NodeJS.Signals;
  }
  throw new UsageError(`--retire-signal: unknown signal ${v}`);
}

async function exec(args: string[], io: Io): Promise<number> {
  const dd = args.indexOf('--');
  if (dd < 0 || dd === args.length - 1) throw new UsageError('exec needs the program after --: fdbroker exec <control-socket> -- CMD [ARGS...]');
  const p = parseArgs(args.slice(0, dd), ['names', 'ready', 'retire-signal', 'stop-timeout', 'ready-timeout', 'label'], []);
  if (p.positional.length !== 1) throw new UsageError('exec needs exactly one control socket path before --');
  const [command, ...rest] = args.slice(dd + 1) as [string, ...string[]];
  const ready = p.flags.get('ready')?.at(-1) ?? 'notify';
  if (ready !== 'notify' && ready !== 'immediate') throw new UsageError('--ready is "notify" or "immediate"');
  const namesText = p.flags.get('names')?.at(-1);
  const retireSignal = signalName(p.flags.get('retire-signal')?.at(-1) ?? 'SIGTERM');
  const say = (s: string) => io.err(`fdbroker exec: ${s}`);
  const ex = new Exec({
    controlPath: p.positional[0]!, command, args: rest, ready, retireSignal,
    names: namesText === undefined ? undefined : namesText.split(',').filter((x) => x !== ''),
    stopTimeoutMs: msFlag(p, 'stop-timeout'), readyTimeoutMs: msFlag(p, 'ready-timeout'),
    label: p.flags.get('label')?.at(-1),
  });
  ex.on('readyRefused', (err) => say(`${(err as FdbrokerError).code ?? 'error'}: ${err.message} (the program runs on; older generations keep serving)`));
  ex.on('readyTimeout', (ms) => say(`no READY=1 within ${ms} ms: stopping the program`));
  ex.on('kill', (ms) => say(`the program did not exit within ${ms} ms: SIGKILL`));
  ex.on('brokerLost', (err) => say(`lost the broker (${(err as FdbrokerError).code ?? ''} ${err.message}); the program runs on`));
  ex.on('notifyError', (err) => say(`notify socket failed: ${err.message}; readiness can no longer be reported`));
  try {
    return (await ex.run()).status;
  } catch (err) {
    if (!(err instanceof ProgramStartError)) throw err;
    say(`${err.code}: ${err.message}`);
    return EXEC_START_FAILED;
  }
}

/** Runs the CLI; resolves to the exit status. */
export async function main(argv: string[], io: Io = stdio): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'serve': return await serve(rest, io);
      case 'status': return await status(rest, io);
      case 'wait': return await wait(rest, io);
      case 'exec': return await exec(rest, io);
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
