// Swapping an app under load: start version after version of one program on
// the same broker, each retiring the one before, and time how long each old
// one takes to leave after its successor is ready.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { CLI, ROOT, get, loadLoop, run, sleep, type LoadStats, type Proc } from './helpers';

export const EXAMPLES = path.join(ROOT, 'examples');
/** An old version must be gone this soon after its successor is ready (the apps' drain deadline is 10 s). */
export const OLD_GONE_MAX_MS = 5_000;
/** Brokers of the swap tests: a 1 s standby window (the default 5 s would only delay every old version's exit). */
export const SWAP_BROKER_FLAGS = ['--quiet', '--standby', '1000'];

export interface SwapResult {
  /** The version serving at the end. */
  last: Proc;
  /** Every version started, in order. */
  all: Proc[];
  /** Per swap: ms from the new version's ready line to the old one's exit. */
  goneMs: number[];
  /** Per swap: the old version's "drained ..." line. */
  drained: string[];
}

export function startVersion(sock: string, cmd: string[], env: NodeJS.ProcessEnv = {}): Proc {
  return run(cmd[0]!, cmd.slice(1), { env: { FDBROKER_SOCK: sock, ...env } });
}

/** Starts `cmd`, then `swaps` successors one after the other; `between` runs after each swap. */
export async function swapLoop(sock: string, cmd: string[], swaps: number, opts: { env?: NodeJS.ProcessEnv; between?: (i: number) => Promise<unknown>; onReady?: (p: Proc) => Promise<unknown> } = {}): Promise<SwapResult> {
  let cur = startVersion(sock, cmd, opts.env);
  await cur.waitFor(/^ready \d+/m, 15_000);
  await opts.onReady?.(cur);
  const all = [cur];
  const goneMs: number[] = [];
  const drained: string[] = [];
  for (let i = 0; i < swaps; i++) {
    const next = startVersion(sock, cmd, opts.env);
    all.push(next);
    await next.waitFor(/^ready \d+/m, 15_000);
    const t0 = Date.now();
    const ex = await cur.exited;
    goneMs.push(Date.now() - t0);
    if (ex.code !== 0) throw new Error(`version ${cur.pid} exited ${ex.code ?? ex.signal}; stderr:\n${cur.stderr()}`);
    drained.push(cur.stdout().match(/^drained .*$/m)?.[0] ?? '(no drained line)');
    cur = next;
    await opts.between?.(i);
  }
  return { last: cur, all, goneMs, drained };
}

/** A self-signed certificate for 127.0.0.1 in `dir`, made with openssl. */
export function makeCert(dir: string): { key: string; cert: string } {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  } catch (err) {
    throw new Error(`openssl is needed to make a test certificate (apt-get install openssl): ${(err as Error).message}`);
  }
  return { key, cert };
}

/** Resolves once the broker on `sock` has the generation of `p` (an `fdbroker exec`, by its pid) ready: `fdbroker wait --until ready`. */
export async function execReady(sock: string, p: Proc): Promise<void> {
  const w = run(process.execPath, [CLI, 'wait', sock, '--pid', String(p.pid), '--until', 'ready', '--timeout', '15000', '--quiet']);
  const { code } = await w.exited;
  if (code !== 0) throw new Error(`fdbroker wait --pid ${p.pid}: exit ${code}: ${w.stderr()}\nprogram stderr:\n${p.stderr()}`);
}

/** execDeployUnderLoad: load before and after the deploy, each. */
export const DEPLOY_LOAD_MS = 1000;
/** execDeployUnderLoad: clients per kind of load (keep-alive, and a new connection per request). */
export const DEPLOY_CONCURRENCY = 4;

export interface DeployResult {
  first: Proc;
  second: Proc;
  /** The first generation's exit (its exec's status). */
  firstExit: { code: number | null; signal: NodeJS.Signals | null };
  /** ms from the second generation's ready to the first one's exit. */
  goneMs: number;
  keepAlive: LoadStats;
  newConnections: LoadStats;
  /** A GET before the deploy and one after the first generation is gone. */
  before: { status: number; body: string };
  after: { status: number; body: string };
}

/**
 * A deploy of an `fdbroker exec` program over itself: `start(1)`, ready, then
 * keep-alive and new-connection load on 127.0.0.1:port (never retried), then
 * `start(2)`, ready, the first one's exit, more load.
 */
export async function execDeployUnderLoad(sock: string, port: number, start: (gen: number) => Proc): Promise<DeployResult> {
  const first = start(1);
  await execReady(sock, first);
  const before = await get(port);
  const keepAlive = loadLoop(port, { concurrency: DEPLOY_CONCURRENCY, keepAlive: true });
  const fresh = loadLoop(port, { concurrency: DEPLOY_CONCURRENCY });
  await sleep(DEPLOY_LOAD_MS);
  const second = start(2);
  await execReady(sock, second);
  const t0 = Date.now();
  const firstExit = await first.exited;
  const goneMs = Date.now() - t0;
  await sleep(DEPLOY_LOAD_MS);
  const ka = await keepAlive.stop();
  const nc = await fresh.stop();
  const after = await get(port);
  return { first, second, firstExit, goneMs, keepAlive: ka, newConnections: nc, before, after };
}
