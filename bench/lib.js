'use strict';
// Shared helpers for the benchmarks: starting a broker process, statistics,
// /proc sampling, and a description of the machine the numbers came from.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

// FDBROKER_BENCH_ROOT: measure another checkout's dist/ and bin/ with these benchmarks (before/after in one run).
const ROOT = process.env.FDBROKER_BENCH_ROOT ? path.resolve(process.env.FDBROKER_BENCH_ROOT) : path.join(__dirname, '..');
const CLI = path.join(ROOT, 'bin', 'fdbroker.js');

function tmpDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `fdbroker-bench-${prefix}-`));
}

/**
 * Spawns `fdbroker serve <sock> --quiet --no-inherit --listen l0=tcp://127.0.0.1:0 ...`
 * with `n` tcp listeners and resolves once it prints "ready on".
 */
function startBroker(controlPath, n, { timeoutMs = 30_000, extraArgs = [], root = ROOT, env = process.env } = {}) {
  const args = [path.join(root, 'bin', 'fdbroker.js'), 'serve', controlPath, '--quiet', '--no-inherit', ...extraArgs];
  for (let i = 0; i < n; i++) args.push('--listen', `l${i}=tcp://127.0.0.1:0`);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`broker not ready in ${timeoutMs} ms: ${err}`)); }, timeoutMs);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('ready on')) {
        clearTimeout(timer);
        child.stdout.removeAllListeners('data');
        child.stdout.resume();
        resolve({
          child,
          pid: child.pid,
          names: Array.from({ length: n }, (_, i) => `l${i}`),
          stop: () => stopChild(child),
          stderr: () => err,
        });
      }
    });
    child.on('exit', (code, sig) => { clearTimeout(timer); reject(new Error(`broker exited (${code ?? sig}) before ready: ${err}`)); });
  });
}

function stopChild(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => { clearTimeout(t); resolve(); });
    child.kill('SIGTERM');
  });
}

/** Nearest-rank percentile of a sorted array. */
function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** {n, p50, p90, p99, min, max, mean} of samples in ns, reported in µs (3 decimals). */
function summarizeNs(samplesNs) {
  const s = samplesNs.map(Number).sort((a, b) => a - b);
  const us = (v) => (v === null ? null : Math.round(v) / 1000);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return { runs: s.length, p50_us: us(pct(s, 50)), p90_us: us(pct(s, 90)), p99_us: us(pct(s, 99)), min_us: us(s[0] ?? null), max_us: us(s.at(-1) ?? null), mean_us: us(mean) };
}

function summarizeMs(samplesMs) {
  const s = [...samplesMs].sort((a, b) => a - b);
  const r = (v) => (v === null ? null : Math.round(v * 1000) / 1000);
  return { count: s.length, p50_ms: r(pct(s, 50)), p90_ms: r(pct(s, 90)), p99_ms: r(pct(s, 99)), max_ms: r(s.at(-1) ?? null) };
}

/** VmRSS (kB) and open-fd count of a pid, from /proc. null if gone. */
function procSample(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
    return { rss_kb: rss, hwm_kb: hwm, fds };
  } catch {
    return null;
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    cpu_model: cpus[0]?.model ?? 'unknown',
    cpus: cpus.length,
    mem_total_mb: Math.round(os.totalmem() / 2 ** 20),
    kernel: os.release(),
    node: process.version,
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    ulimit_nofile: nofile(),
  };
}

/** This process's RLIMIT_NOFILE, from /proc/self/limits. */
function nofile(pid = 'self') {
  try {
    const line = fs.readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const [soft, hard] = line.trim().split(/\s+/).slice(3, 5);
    return { soft: soft === 'unlimited' ? Infinity : Number(soft), hard: hard === 'unlimited' ? Infinity : Number(hard) };
  } catch {
    return null;
  }
}

/** Whether `fdbroker serve` knows the flag `--name` (options differ between versions). */
function cliHasFlag(name) {
  try {
    const help = require('node:child_process').spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
    return `${help.stdout}${help.stderr}`.includes(`--${name}`);
  } catch {
    return false;
  }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

/** `--name VALUE` from the command line, or `dflt`. */
function option(argv, name, dflt) {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
}

/** VmRSS (kB) of a bare idle `node`, `settleMs` after it started: what a broker's RSS is compared with. */
async function bareNodeRss(settleMs) {
  const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)'], { stdio: 'ignore' });
  await sleep(settleMs);
  const s = procSample(c.pid);
  c.kill('SIGKILL');
  return s?.rss_kb ?? null;
}

function requireDist() {
  const p = path.join(ROOT, 'dist', 'index.js');
  if (!fs.existsSync(p)) {
    throw new Error('dist/ is missing: run `npm run build` (or `npx tsc -p tsconfig.build.json`) first');
  }
  return require(p);
}

module.exports = { ROOT, CLI, tmpDir, startBroker, stopChild, pct, summarizeNs, summarizeMs, procSample, machine, nofile, sleep, option, bareNodeRss, requireDist, cliHasFlag };
