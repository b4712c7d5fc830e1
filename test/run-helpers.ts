// `fdbroker run` in tests: start it, read its ports, find its processes; and
// a load client that records when each request started and how long it took,
// so a crash gap can be measured as the longest wait of a request made after the kill.
import * as http from 'node:http';
import * as path from 'node:path';
import { CLI, FIXTURES, run, sleep, type Proc } from './helpers';

export const RUN_APP = path.join(FIXTURES, 'run-app.js');

export interface RunProc extends Proc {
  sock: string;
  port: number;
}

/** `fdbroker run <dir>/run.sock --listen http=tcp://127.0.0.1:0 <flags> -- <cmd>`, once its ready line is out. */
export async function startRun(dir: string, flags: string[], cmd: string[], env: NodeJS.ProcessEnv = {}): Promise<RunProc> {
  const sock = path.join(dir, 'run.sock');
  const p = run(process.execPath, [CLI, 'run', sock, '--listen', 'http=tcp://127.0.0.1:0', ...flags, '--', ...cmd], { env });
  const m = await p.waitFor(/fdbroker: ready on .*http=tcp:\/\/127\.0\.0\.1:(\d+)/);
  return { ...p, sock, port: Number(m[1]) };
}

/** The pid of the process that printed the n-th (1-based) "ready <pid> gen" line. */
export async function readyPid(p: Proc, n = 1, timeoutMs = 15_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const all = [...p.stdout().matchAll(/^ready (\d+) gen/gm)].map((x) => Number(x[1]));
    if (all.length >= n) return all[n - 1]!;
    if (Date.now() > deadline) throw new Error(`no ready line #${n} in:\n${p.stdout()}\nstderr:\n${p.stderr()}`);
    await sleep(10);
  }
}

export interface Timed { start: number; ms: number; ok: boolean; kind?: string }

/**
 * `concurrency` loops of GETs on new connections (or keep-alive), never
 * retried; every request's start time and duration is kept.
 */
export function timedLoad(port: number, opts: { concurrency?: number; keepAlive?: boolean; timeoutMs?: number } = {}) {
  const results: Timed[] = [];
  const agent = new http.Agent({ keepAlive: opts.keepAlive ?? false, maxSockets: opts.concurrency ?? 4 });
  let stopping = false;
  const one = () => new Promise<void>((resolve) => {
    const start = Date.now();
    const done = (ok: boolean, kind?: string) => { results.push({ start, ms: Date.now() - start, ok, kind }); resolve(); };
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: opts.keepAlive ? agent : false, timeout: opts.timeoutMs ?? 10_000 }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode === 200, res.statusCode === 200 ? undefined : `status-${res.statusCode}`));
      res.on('error', (e: NodeJS.ErrnoException) => done(false, e.code ?? e.message));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
    req.on('error', (e: NodeJS.ErrnoException) => done(false, e.code ?? e.message));
  });
  const loops = Array.from({ length: opts.concurrency ?? 4 }, async () => { while (!stopping) await one(); });
  return {
    results,
    stop: async () => { stopping = true; await Promise.all(loops); agent.destroy(); return results; },
  };
}

/** Failures by kind. */
export function failuresByKind(rs: Timed[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rs) if (!r.ok) out[r.kind ?? '?'] = (out[r.kind ?? '?'] ?? 0) + 1;
  return out;
}

/** Kinds a request gets when the process that accepted its connection is SIGKILLed (the only excused failures). */
export const KILLED_PROCESS_KINDS = new Set(['ECONNRESET', 'socket hang up', 'EPIPE']);
