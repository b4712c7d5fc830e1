#!/usr/bin/env node
'use strict';
// Runs every benchmark one after the other and prints one combined JSON object:
// { machine, handoff, scale, memory?, scale_many?, restarts? }. `--quick` is passed through (CI smoke);
// memory.js and scale-many.js (1,000 connected clients; 1,000 listeners and
// generations) run in full runs only, to keep the smoke cheap.
// bench/restarts.js is run too when it exists: the fair restart comparison
// and every scenario (crash-gap, busy-accept, rollback-after-ready,
// broker-restart, cluster-primary) in one run; PM2 is installed for it into
// /tmp/fdbroker-bench-pm2 on first use (network; skipped, and listed in
// restarts.skipped, if that fails).
// machine.loadavg is taken at the start, machine.loadavg_end at the end: the
// machine may be shared, and the numbers depend on what else ran.
//
//   npm run bench            # full: about 27 minutes on 2 cores (restarts.js about
//                            # 25: restart 13, crash-gap 2.5, busy-accept 1.5,
//                            # rollback-after-ready 2, broker-restart 4, cluster-primary 2;
//                            # the rest about 1.5), plus a PM2 install on first use
//   npm run bench -- --quick # smoke: about 75 s (test/bench/bench-smoke.test.ts: 72 s)
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('./lib');

const pass = process.argv.slice(2).filter((a) => a === '--quick');

function run(file) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(__dirname, file), ...pass], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('exit', (code, sig) => {
      if (code !== 0) { resolve({ error: `${file} exited with ${code ?? sig}`, stdout: out.slice(-2000) }); return; }
      try {
        resolve(JSON.parse(out));
      } catch {
        resolve({ error: `${file} did not print JSON`, stdout: out.slice(-2000) });
      }
    });
  });
}

async function main() {
  const started = Date.now();
  const result = { mode: pass.includes('--quick') ? 'quick' : 'full', machine: lib.machine() };
  result.handoff = await run('handoff.js');
  result.scale = await run('scale.js');
  if (result.mode === 'full') {
    result.memory = await run('memory.js');
    result.scale_many = await run('scale-many.js');
  }
  if (fs.existsSync(path.join(__dirname, 'restarts.js'))) result.restarts = await run('restarts.js');
  result.machine.loadavg_end = lib.machine().loadavg;
  result.duration_s = Math.round((Date.now() - started) / 100) / 10;
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  const failed = ['handoff', 'scale', 'memory', 'scale_many', 'restarts'].filter((k) => result[k]?.error);
  if (failed.length > 0) process.exitCode = 1;
}

main();
