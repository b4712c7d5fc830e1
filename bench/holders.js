#!/usr/bin/env node
'use strict';
// How long finding the holders of a listener takes (src/holders/holders.ts:
// every /proc/<pid>/fd link read), with this machine's processes plus N extra
// ones (`sleep`, each with F open fds, one in ten holding the listener), at
// both modes ('slices': sync reads in bounded slices; 'threadpool': fs.promises
// at several concurrencies). Per scan: wall time, CPU time of this process
// (threadpool included) and the event loop's worst delay, since a scan is
// what a status request may trigger (once per TTL).
// Prints JSON. Every process it starts ends by itself (sleep) or at exit.
//
//   node bench/holders.js           # N = 0, 250, 1000
//   node bench/holders.js --quick   # N = 0, 100
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const lib = require('./lib');

const QUICK = process.argv.includes('--quick');
const EXTRA = QUICK ? [0, 100] : [0, 250, 1000];
/** Open fds of each extra process (its stdio slots, all /dev/null but one). */
const FDS_PER_PROCESS = 20;
/** One extra process in this many holds the listener. */
const HOLDER_EVERY = 10;
const VARIANTS = [{ mode: 'slices' }, ...[1, 4, 8, 16].map((concurrency) => ({ mode: 'threadpool', concurrency }))];
const RUNS = QUICK ? 3 : 7;
/** The extra processes exit by themselves after this long. */
const SLEEP_S = 300;
const SPAWN_BATCH = 50;

async function spawnExtras(count, listenerFd, devnull, started) {
  let holders = 0;
  for (let i = 0; i < count; i += SPAWN_BATCH) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + SPAWN_BATCH); j++) {
      const holds = j % HOLDER_EVERY === 0;
      if (holds) holders++;
      const stdio = Array.from({ length: FDS_PER_PROCESS }, (_, k) => (k === 3 && holds ? listenerFd : devnull));
      const child = spawn('sleep', [String(SLEEP_S)], { stdio });
      started.push(child);
      batch.push(new Promise((resolve, reject) => { child.once('spawn', resolve); child.once('error', reject); }));
    }
    await Promise.all(batch);
  }
  return holders;
}

async function main() {
  const built = path.join(lib.ROOT, 'dist', 'holders', 'holders.js');
  if (!fs.existsSync(built)) throw new Error(`${built} is missing: run \`npm run build\` first`);
  const { scanHolders } = require(built);
  const native = require('node-gyp-build')(lib.ROOT);
  const c = native.constants;
  const l = native.socket(c.AF_INET, c.SOCK_STREAM);
  native.bind(l, { family: 'inet', address: '127.0.0.1', port: 0 });
  native.listen(l, 16);
  const ino = fs.fstatSync(l).ino;
  const devnull = fs.openSync('/dev/null', 'r');
  const started = [];
  const stopAll = () => { for (const ch of started) { try { process.kill(ch.pid, 'SIGKILL'); } catch { /* gone */ } } };
  process.on('exit', stopAll);

  const result = { machine: lib.machine(), fds_per_extra_process: FDS_PER_PROCESS, runs: RUNS, as_uid: process.getuid(), cases: [] };
  let spawned = 0;
  let holders = 0;
  for (const extra of EXTRA) {
    holders += await spawnExtras(extra - spawned, l, devnull, started);
    spawned = extra;
    const processes = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).length;
    const links = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).reduce((sum, pid) => {
      try { return sum + fs.readdirSync(`/proc/${pid}/fd`).length; } catch { return sum; }
    }, 0);
    for (const variant of VARIANTS) {
      const times = [];
      const cpu = [];
      const loopDelays = [];
      let last;
      for (let r = 0; r < RUNS; r++) {
        const h = monitorEventLoopDelay({ resolution: 1 });
        h.enable();
        const c0 = process.cpuUsage();
        last = await scanHolders([ino], variant);
        const dc = process.cpuUsage(c0);
        h.disable();
        times.push(last.durationMs);
        cpu.push((dc.user + dc.system) / 1000);
        loopDelays.push(h.max / 1e6);
      }
      if (last.holders.length !== holders) throw new Error(`found ${last.holders.length} holders, expected ${holders}`);
      result.cases.push({
        extra_processes: extra, processes, fd_links: links, ...variant,
        found: last.holders.length, scanned: last.scanned, unreadable: last.unreadable,
        scan: lib.summarizeMs(times), cpu: lib.summarizeMs(cpu), event_loop_max_delay: lib.summarizeMs(loopDelays),
      });
    }
  }
  stopAll();
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

main().catch((err) => { console.error(err); process.exitCode = 1; });
