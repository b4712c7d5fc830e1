#!/usr/bin/env node
'use strict';
// What a connect/close flood from a uid with no grant costs the broker and
// its granted clients (issue 22: refusals must cost almost nothing). A broker
// (`fdbroker serve`, control socket 0666 so uid 65534 can connect,
// `--allow-uid 65533`) is flooded by FLOODERS Python processes running as uid
// 65534 (setpriv; needs root), each connecting and closing as fast as it can,
// for FLOOD_S seconds. Meanwhile two granted clients open a connection and ask
// `status`, one after another, each round trip (connect, hello, status,
// reply) timed, before and during the flood: the broker's owner (this
// process, root, which connects to PATH.owner, the owner's own socket) and a
// granted other uid (65533, a child process, on the shared PATH the flood
// fills). Also measured: the broker's log output (stdout + stderr bytes, not
// --quiet, so audit lines count too) per second, its CPU time and peak RSS,
// and the flooders' connect rate. Prints JSON.
//
//   node bench/refusal-flood.js [--seconds 15] [--flooders 2]
// Targets: status p99 under flood < 100 ms; log growth a few kB/s.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('./lib');

const FLOOD_S = Number(lib.option(process.argv, 'seconds', '15'));
const FLOODERS = Number(lib.option(process.argv, 'flooders', '2'));
const BASELINE_S = 3;
const NOBODY = 65534;
/** The granted uid that is not the broker's owner. */
const GRANTEE = 65533;
/** A round trip that takes longer than this counts as failed (the client's own timeout). */
const STATUS_TIMEOUT_MS = 5000;

const FLOODER = String.raw`
import socket, sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
n = fails = 0
while time.monotonic() < end:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(0.2)
    try:
        s.connect(path)
        n += 1
    except OSError:
        fails += 1
    s.close()
print(n, fails, flush=True)
`;

function cpuTicks(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks (100 Hz)
}

// Each round trip is also split: connect (socket connect, hello, welcome) and the status request itself.
async function roundTrips(sock, ms) {
  const { BrokerConnection } = lib.requireDist();
  const samples = [];
  const connects = [];
  const requests = [];
  let failed = 0;
  const end = Date.now() + ms;
  const since = (t) => Number(process.hrtime.bigint() - t) / 1e6;
  while (Date.now() < end) {
    const t0 = process.hrtime.bigint();
    try {
      const conn = await BrokerConnection.connect(sock, { timeout: STATUS_TIMEOUT_MS });
      connects.push(since(t0));
      const t1 = process.hrtime.bigint();
      try { await conn.status(); } finally { conn.close(); }
      requests.push(since(t1));
      samples.push(since(t0));
    } catch {
      failed++;
    }
    await lib.sleep(10);
  }
  return { ...lib.summarizeMs(samples), failed, connect: lib.summarizeMs(connects), request: lib.summarizeMs(requests) };
}

/** The grantee's side: `--client SOCK --ms N` prints its round trips as JSON. */
async function client() {
  const sock = lib.option(process.argv, 'client', '');
  console.log(JSON.stringify(await roundTrips(sock, Number(lib.option(process.argv, 'ms', '1000')))));
}

/** Runs client() as uid GRANTEE for `ms`; resolves with its summary. */
function granteeRoundTrips(sock, ms) {
  const c = spawn('setpriv', [`--reuid=${GRANTEE}`, `--regid=${GRANTEE}`, '--clear-groups', process.execPath, __filename, '--client', sock, '--ms', String(ms)],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  c.stdout.on('data', (d) => { out += d; });
  return new Promise((resolve, reject) => c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`grantee client exited ${code}`)))));
}

async function main() {
  if (process.getuid() !== 0) throw new Error('run as root: the flooders run as uid 65534 through setpriv');
  const dir = lib.tmpDir('flood');
  fs.chmodSync(dir, 0o711);
  const sock = path.join(dir, 'ctl.sock');
  const script = path.join(dir, 'flood.py');
  fs.writeFileSync(script, FLOODER, { mode: 0o644 });
  const broker = spawn(process.execPath, [lib.CLI, 'serve', sock, '--no-inherit', '--mode', '0666', '--allow-uid', String(GRANTEE), '--listen', 'http=tcp://127.0.0.1:0'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let logBytes = 0;
  let logText = '';
  const onLog = (d) => { logBytes += d.length; if (logText.length < 4096) logText += d; };
  broker.stdout.on('data', onLog);
  broker.stderr.on('data', onLog);
  while (!logText.includes('ready on')) {
    if (broker.exitCode !== null) throw new Error(`broker exited: ${logText}`);
    await lib.sleep(20);
  }

  const ownerSocket = fs.existsSync(`${sock}.owner`);
  const [baseline, granteeBaseline] = await Promise.all([roundTrips(sock, BASELINE_S * 1000), granteeRoundTrips(sock, BASELINE_S * 1000)]);
  const logBefore = logBytes;
  const cpuBefore = cpuTicks(broker.pid);
  const t0 = Date.now();
  const flooders = Array.from({ length: FLOODERS }, () => spawn('setpriv',
    [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '/usr/bin/python3', script, sock, String(FLOOD_S)],
    { stdio: ['ignore', 'pipe', 'inherit'], cwd: dir }));
  const floodOut = flooders.map((f) => new Promise((resolve) => {
    let out = '';
    f.stdout.on('data', (d) => { out += d; });
    f.on('exit', () => resolve(out.trim().split(/\s+/).map(Number)));
  }));
  let peakRss = 0;
  const rssTimer = setInterval(() => { peakRss = Math.max(peakRss, lib.procSample(broker.pid)?.rss_kb ?? 0); }, 250);
  await lib.sleep(500); // let the flood get going
  const [during, granteeDuring] = await Promise.all([roundTrips(sock, FLOOD_S * 1000 - 1000), granteeRoundTrips(sock, FLOOD_S * 1000 - 1000)]);
  const counts = await Promise.all(floodOut);
  const floodMs = Date.now() - t0;
  clearInterval(rssTimer);
  const cpuMs = (cpuTicks(broker.pid) - cpuBefore) * 10;
  const logDuring = logBytes - logBefore;
  await lib.stopChild(broker);
  const connects = counts.reduce((a, c) => a + (c[0] || 0), 0);
  const connectFails = counts.reduce((a, c) => a + (c[1] || 0), 0);
  console.log(JSON.stringify({
    bench: 'refusal-flood',
    machine: lib.machine(),
    flooders: FLOODERS,
    flood_s: Math.round(floodMs / 100) / 10,
    flood_connects: connects,
    flood_connects_per_s: Math.round(connects / (floodMs / 1000)),
    flood_connect_failures: connectFails,
    owner_socket: ownerSocket,
    status_baseline: baseline,
    status_under_flood: during,
    grantee_status_baseline: granteeBaseline,
    grantee_status_under_flood: granteeDuring,
    broker_log_bytes_per_s: Math.round(logDuring / (floodMs / 1000)),
    broker_log_bytes: logDuring,
    broker_cpu_pct: Math.round((cpuMs / floodMs) * 100),
    broker_peak_rss_mb: Math.round(peakRss / 1024),
    log_sample: logText.split('\n').slice(0, 6),
  }, null, 2));
  fs.rmSync(dir, { recursive: true, force: true });
}

(process.argv.includes('--client') ? client() : main()).catch((err) => { console.error(err); process.exit(1); });
