#!/usr/bin/env node
'use strict';
// Handoff cost vs the physical floor.
//
// For N = 1, 16, 253, 1024 listeners: how long adoptListeners() takes, from
// the call (socket + connect) until it resolves with N checked, usable fds,
// against a broker in another process (`bin/fdbroker.js serve` with N tcp
// listeners on 127.0.0.1:0). The fds are closed after each run (untimed).
//
// The floor: bench/floor.c, compiled here with `cc -O2`, passes the same N
// listening sockets between two processes over AF_UNIX SOCK_SEQPACKET with
// bare sendmsg/recvmsg, ≤253 fds per message ("bare": sent on accept), and,
// for reference, with the same two request/response round trips fdbroker's
// protocol makes ("rtt2").
//
// Also reported: where fdbroker's time goes (connect+hello, adopt request and
// receive, fd checks) and in-process costs of the pure steps (JSON, checks).
//
//   node bench/handoff.js [--quick] [--sizes 1,16,253,1024]
// Prints one JSON object on stdout; progress goes to stderr.
const { execFileSync, execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('./lib');

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const sizesArg = argv.indexOf('--sizes');
const SIZES = sizesArg >= 0 ? argv[sizesArg + 1].split(',').map(Number) : [1, 16, 253, 1024];

// Runs per N (full / quick). Chosen so the full run takes a few minutes on 2 cores.
const RUNS = QUICK
  ? { 1: 300, 16: 300, 253: 100, 1024: 40 }
  : { 1: 5000, 16: 4000, 253: 1500, 1024: 500 };
const runsFor = (n) => RUNS[n] ?? (n <= 16 ? RUNS[16] : n <= 253 ? RUNS[253] : RUNS[1024]);
const warmupFor = (n) => Math.max(20, Math.round(runsFor(n) / 10));

const log = (...a) => process.stderr.write(`[handoff] ${a.join(' ')}\n`);

function hr() { return process.hrtime.bigint(); }

async function compileFloor(dir) {
  const src = path.join(__dirname, 'floor.c');
  const out = path.join(dir, 'floor');
  for (const cc of [process.env.CC, 'cc', 'gcc', 'clang'].filter(Boolean)) {
    try {
      execFileSync(cc, ['-O2', '-o', out, src], { stdio: ['ignore', 'ignore', 'pipe'] });
      return { ok: true, binary: out, compiler: cc };
    } catch (err) {
      if (err.code === 'ENOENT') continue;
      return { ok: false, error: `${cc} failed: ${String(err.stderr || err.message).trim()}` };
    }
  }
  return { ok: false, error: 'no C compiler found (tried $CC, cc, gcc, clang): the floor was not measured' };
}

function runFloor(binary, n, iters, warmup, mode) {
  return new Promise((resolve, reject) => {
    execFile(binary, [String(n), String(iters), String(warmup), String(mode)], { maxBuffer: 64 * 2 ** 20 }, (err, stdout, stderr) => {
      if (err) { reject(new Error(`floor ${n} failed: ${stderr || err.message}`)); return; }
      resolve(JSON.parse(stdout));
    });
  });
}

/** adoptListeners() timings against a broker in another process. */
/** CPU time (utime + stime) of process `pid` so far, in µs (clock ticks of 10 ms: use over many calls). */
function cpuUs(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

async function measureAdopt(fdb, controlPath, names, runs, warmup, useNames, firstUse = false, brokerPid = undefined) {
  const samples = [];
  let cpu0;
  for (let i = 0; i < warmup + runs; i++) {
    if (i === warmup) cpu0 = { broker: brokerPid ? cpuUs(brokerPid) : 0, client: process.cpuUsage() };
    const t0 = hr();
    const ls = await fdb.adoptListeners(controlPath, useNames ? { names } : {});
    // firstUse: also read every listener's fd, which runs the check deferred to first use (check: 'use').
    if (firstUse) for (const k in ls) if (ls[k].fd < 0) throw new Error(`listener ${k} has no fd`);
    const t1 = hr();
    let count = 0;
    for (const k in ls) { ls[k].close(); count++; }
    if (count !== names.length) throw new Error(`adopted ${count} listeners, expected ${names.length}`);
    if (i >= warmup) samples.push(t1 - t0);
  }
  const out = lib.summarizeNs(samples);
  if (brokerPid) {
    // CPU per call, both sides (the client's includes closing the fds): steadier than latency on a shared machine.
    const c = process.cpuUsage(cpu0.client);
    out.cpu_per_call_us = { broker: Math.round((cpuUs(brokerPid) - cpu0.broker) / runs), client: Math.round((c.user + c.system) / runs) };
  }
  return out;
}

/** The same work split into its phases, on the two-round-trip path (BrokerConnection.connect(), then adopt(); checks done at once): adoptListeners() pipelines the two and defers the checks. */
async function measurePhases(controlPath, names, runs, warmup) {
  const { BrokerConnection } = require(path.join(lib.ROOT, 'dist', 'client', 'connection.js'));
  const { toListeners } = require(path.join(lib.ROOT, 'dist', 'client', 'adopt.js'));
  const phases = { connect_hello: [], adopt_receive: [], close_conn: [], check_wrap: [], total: [] };
  for (let i = 0; i < warmup + runs; i++) {
    const t0 = hr();
    const conn = await BrokerConnection.connect(controlPath, { timeout: 10_000 });
    const t1 = hr();
    const received = await conn.adopt(names, 10_000);
    const t2 = hr();
    conn.close();
    const t3 = hr();
    const ls = toListeners(received, names);
    const t4 = hr();
    for (const k in ls) ls[k].close();
    if (i >= warmup) {
      phases.connect_hello.push(t1 - t0);
      phases.adopt_receive.push(t2 - t1);
      phases.close_conn.push(t3 - t2);
      phases.check_wrap.push(t4 - t3);
      phases.total.push(t4 - t0);
    }
  }
  const out = {};
  for (const [k, v] of Object.entries(phases)) {
    const s = lib.summarizeNs(v);
    out[k] = { p50_us: s.p50_us, p99_us: s.p99_us };
  }
  return out;
}

/**
 * Node's own handle passing, for reference at N = 1: a child asks its parent
 * (over the fork() IPC channel) and receives a listening net.Server with
 * `child.send(msg, server)`. Timed in the child from its request until the
 * 'message' event hands it the server (a round trip, like adoptListeners()).
 */
function measureNodeIpc(runs, warmup) {
  const net = require('node:net');
  const { fork } = require('node:child_process');
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const child = fork(__filename, ['--ipc-child', String(runs), String(warmup)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      child.on('message', (m) => {
        if (m === 'req') child.send('handle', server);
        else if (m && m.samples_ns) {
          server.close();
          resolve(lib.summarizeNs(m.samples_ns.map(BigInt)));
        }
      });
      child.on('error', reject);
      child.on('exit', (code) => { if (code !== 0) reject(new Error(`ipc child exited with ${code}`)); });
    });
  });
}

function ipcChild(runs, warmup) {
  const samples = [];
  let t0 = 0n;
  let i = 0;
  process.on('message', (m, handle) => {
    const t1 = hr();
    if (!handle || !handle.listening) throw new Error('no listening server arrived');
    handle.close();
    if (i++ >= warmup) samples.push(String(t1 - t0));
    if (i < warmup + runs) ask();
    else process.send({ samples_ns: samples }, () => process.exit(0));
  });
  const ask = () => { t0 = hr(); process.send('req'); };
  ask();
}

/** In-process cost of the pure per-listener work, no I/O: µs per call (median of batches). */
function measureMicro(n, names, fds) {
  const protocol = require(path.join(lib.ROOT, 'dist', 'protocol', 'messages.js'));
  const sockets = require(path.join(lib.ROOT, 'dist', 'transport', 'socket-info.js'));
  const infos = names.map((name, i) => ({ name, kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: 30000 + (i % 30000), backlog: 511 }));
  const time = (fn, reps) => {
    const s = [];
    for (let b = 0; b < 7; b++) {
      const t0 = hr();
      for (let r = 0; r < reps; r++) fn();
      s.push(Number(hr() - t0) / reps);
    }
    s.sort((a, b) => a - b);
    return Math.round(s[3]) / 1000;
  };
  const reps = Math.max(5, Math.round(2000 / n));
  // Broker side: select -> chunk -> encode every part.
  const brokerEncode = () => {
    const groups = protocol.chunkListeners(infos, 253, 65536);
    for (let p = 0; p < groups.length; p++) {
      protocol.encode({ type: 'listeners', id: 1, part: p, last: p === groups.length - 1, listeners: groups[p].map((i) => infos[i]) });
    }
  };
  const groups = protocol.chunkListeners(infos, 253, 65536);
  const payloads = groups.map((g, p) => ({ buf: protocol.encode({ type: 'listeners', id: 1, part: p, last: p === groups.length - 1, listeners: g.map((i) => infos[i]) }), count: g.length }));
  // Client side: decode + validate every part.
  const clientDecode = () => { for (const p of payloads) protocol.decodeBrokerMessage(p.buf, p.count); };
  // Client side: describeSocket (3 getsockopt + getsockname) + matchesInfo per fd, on real listening fds.
  const realInfos = fds.map((fd, i) => ({ ...infos[i], port: sockets.describeSocket(fd).port }));
  const check = () => { for (let i = 0; i < fds.length; i++) sockets.matchesInfo(sockets.describeSocket(fds[i]), realInfos[i]); };
  return {
    broker_chunk_encode_us: time(brokerEncode, reps),
    client_decode_validate_us: time(clientDecode, reps),
    client_describe_check_us: time(check, reps),
    message_bytes: payloads.reduce((a, p) => a + p.buf.length, 0),
    messages: payloads.length,
  };
}

async function main() {
  const fdb = lib.requireDist();
  const started = Date.now();
  const machineBefore = lib.machine();
  const dir = lib.tmpDir('handoff');
  const floor = await compileFloor(dir);
  if (!floor.ok) log(`FLOOR NOT MEASURED: ${floor.error}`);
  const results = [];
  try {
    for (const n of SIZES) {
      const runs = runsFor(n);
      const warmup = warmupFor(n);
      const controlPath = path.join(dir, `b${n}.sock`);
      log(`N=${n}: starting broker`);
      const broker = await lib.startBroker(controlPath, n);
      let row;
      try {
        const brokerIdle = lib.procSample(broker.pid);
        log(`N=${n}: fdbroker adoptListeners x${runs} (names given)`);
        const withNames = await measureAdopt(fdb, controlPath, broker.names, runs, warmup, true, false, broker.pid);
        log(`N=${n}: fdbroker adoptListeners x${Math.ceil(runs / 4)} (all, no names)`);
        const allNoNames = await measureAdopt(fdb, controlPath, broker.names, Math.ceil(runs / 4), warmup, false);
        log(`N=${n}: phases`);
        const phases = await measurePhases(controlPath, broker.names, Math.ceil(runs / 4), warmup);
        // Real listening fds for the in-process micro-benchmark of the checks.
        const ls = await fdb.adoptListeners(controlPath, { names: broker.names });
        const fds = broker.names.map((k) => ls[k].fd);
        const micro = measureMicro(n, broker.names, fds);
        for (const k in ls) ls[k].close();
        const brokerAfter = lib.procSample(broker.pid);
        let nodeIpc;
        if (n === 1) {
          log(`N=1: node child.send(msg, server) x${runs}`);
          nodeIpc = await measureNodeIpc(runs, warmup);
        }
        log(`N=${n}: fdbroker adoptListeners + first use of every fd x${Math.ceil(runs / 4)}`);
        const withUse = await measureAdopt(fdb, controlPath, broker.names, Math.ceil(runs / 4), warmup, true, true);
        row = { node_ipc: nodeIpc, fdbroker_with_first_use: withUse, n, fdbroker: withNames, fdbroker_all_no_names: allNoNames, phases, micro, broker_proc: { idle: brokerIdle, after: brokerAfter } };
      } finally {
        await broker.stop();
      }
      if (floor.ok) {
        log(`N=${n}: floor x${runs} (bare, rtt2)`);
        const bare = await runFloor(floor.binary, n, runs, warmup, 0);
        const rtt2 = await runFloor(floor.binary, n, Math.ceil(runs / 4), warmup, 1);
        row.floor = lib.summarizeNs(bare.samples_ns);
        row.floor_rtt2 = lib.summarizeNs(rtt2.samples_ns);
        row.ratio_p50 = Math.round((row.fdbroker.p50_us / row.floor.p50_us) * 100) / 100;
        row.ratio_p99 = Math.round((row.fdbroker.p99_us / row.floor.p99_us) * 100) / 100;
        row.ratio_p50_vs_rtt2 = Math.round((row.fdbroker.p50_us / row.floor_rtt2.p50_us) * 100) / 100;
      }
      results.push(row);
      log(`N=${n}: fdbroker p50 ${row.fdbroker.p50_us} µs p99 ${row.fdbroker.p99_us} µs; floor p50 ${row.floor?.p50_us} µs; ratio ${row.ratio_p50}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }

  const byN = Object.fromEntries(results.map((r) => [r.n, r]));
  const target = (ok, detail) => ({ met: ok, ...detail });
  const targets = {};
  for (const n of [253, 1024]) {
    if (!byN[n]) continue;
    targets[`ratio_p50_le_3x_at_${n}`] = floor.ok
      ? target(byN[n].ratio_p50 <= 3, { ratio_p50: byN[n].ratio_p50 })
      : { met: null, reason: floor.error };
  }
  if (byN[1]) targets.p50_under_1ms_at_1 = target(byN[1].fdbroker.p50_us < 1000, { p50_us: byN[1].fdbroker.p50_us });
  if (byN[1]?.node_ipc) {
    targets.faster_than_node_ipc_at_1 = target(byN[1].fdbroker.p50_us < byN[1].node_ipc.p50_us,
      { fdbroker_p50_us: byN[1].fdbroker.p50_us, node_ipc_p50_us: byN[1].node_ipc.p50_us });
  }

  const out = {
    bench: 'handoff',
    mode: QUICK ? 'quick' : 'full',
    what: 'adoptListeners() from call to resolved, N tcp listeners, broker in another process; floor = bare SCM_RIGHTS over SOCK_SEQPACKET in C',
    machine: { ...machineBefore, loadavg_before: machineBefore.loadavg, loadavg_after: lib.machine().loadavg },
    floor_compiler: floor.ok ? floor.compiler : null,
    floor_error: floor.ok ? undefined : floor.error,
    summary: results.map((r) => ({
      n: r.n,
      fdbroker_p50_us: r.fdbroker.p50_us,
      fdbroker_p99_us: r.fdbroker.p99_us,
      cpu_per_adopt_us: r.fdbroker.cpu_per_call_us,
      fdbroker_with_first_use_p50_us: r.fdbroker_with_first_use.p50_us,
      ratio_with_first_use_p50: r.floor ? Math.round((r.fdbroker_with_first_use.p50_us / r.floor.p50_us) * 100) / 100 : null,
      node_ipc_p50_us: r.node_ipc?.p50_us ?? null,
      floor_p50_us: r.floor?.p50_us ?? null,
      floor_p99_us: r.floor?.p99_us ?? null,
      ratio_p50: r.ratio_p50 ?? null,
      floor_rtt2_p50_us: r.floor_rtt2?.p50_us ?? null,
      ratio_p50_vs_rtt2: r.ratio_p50_vs_rtt2 ?? null,
    })),
    targets,
    results,
    duration_s: Math.round((Date.now() - started) / 100) / 10,
  };
  delete out.machine.loadavg;
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

if (argv[0] === '--ipc-child') ipcChild(Number(argv[1]), Number(argv[2]));
else main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
