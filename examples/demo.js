// npm run demo: a self-contained blue/green restart on 127.0.0.1.
// A broker holds the port; app v1 serves under load; v2 adopts the same
// socket; v1 drains and exits. Prints requests served (by version) and failed.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const CONCURRENCY = 16;
const PHASE_MS = 1500;

function start(args, env) {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = [];
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => { for (const l of d.split('\n')) if (l) { lines.push(l); console.log(`  | ${l}`); } });
  child.waitFor = (re) => new Promise((resolve, reject) => {
    const t = setInterval(() => {
      const hit = lines.find((l) => re.test(l));
      if (hit) { clearInterval(t); resolve(hit); }
    }, 10);
    child.once('exit', (code) => { clearInterval(t); reject(new Error(`${args.join(' ')} exited with ${code}`)); });
  });
  return child;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdbroker-demo-'));
  const sock = path.join(dir, 'app.sock');
  const children = [];
  const cleanup = () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); fs.rmSync(dir, { recursive: true, force: true }); };
  process.on('exit', cleanup);

  console.log('1. broker: owns 127.0.0.1:<port> for as long as it lives');
  const broker = start(['bin/fdbroker.js', 'serve', sock, '--listen', 'http=tcp://127.0.0.1:0', '--quiet']);
  children.push(broker);
  const port = Number((await broker.waitFor(/ready/)).match(/:(\d+)\s*$/)[1]);

  console.log('2. app v1 adopts the listener and serves');
  const v1 = start(['examples/app.js'], { FDBROKER_SOCK: sock, APP_VERSION: 'v1' });
  children.push(v1);
  await v1.waitFor(/serving/);

  console.log(`3. load: ${CONCURRENCY} clients, a new connection per request`);
  const stats = { ok: 0, failed: 0, errors: {}, byVersion: {} };
  let running = true;
  const one = () => new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, agent: false, timeout: 10000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        if (res.statusCode === 200) {
          stats.ok++;
          const v = body.split(' ')[2];
          stats.byVersion[v] = (stats.byVersion[v] || 0) + 1;
        } else { stats.failed++; stats.errors[`HTTP ${res.statusCode}`] = (stats.errors[`HTTP ${res.statusCode}`] || 0) + 1; }
        resolve();
      });
    }).on('error', (e) => { stats.failed++; stats.errors[e.code || e.message] = (stats.errors[e.code || e.message] || 0) + 1; resolve(); })
      .on('timeout', function () { this.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })); });
  });
  const loops = Array.from({ length: CONCURRENCY }, async () => { while (running) await one(); });
  await sleep(PHASE_MS);

  console.log('4. app v2 adopts the same socket while v1 still serves');
  const v2 = start(['examples/app.js'], { FDBROKER_SOCK: sock, APP_VERSION: 'v2' });
  children.push(v2);
  await v2.waitFor(/serving/);

  console.log('5. v1 is told to stop (SIGTERM): it stops accepting, finishes, exits');
  v1.kill('SIGTERM');
  await new Promise((r) => v1.once('exit', r));
  await sleep(PHASE_MS);
  running = false;
  await Promise.all(loops);

  console.log('\nresult');
  console.log(`  requests served: ${stats.ok}  (${Object.entries(stats.byVersion).map(([v, n]) => `${v}: ${n}`).join(', ')})`);
  console.log(`  requests failed: ${stats.failed}${stats.failed ? `  ${JSON.stringify(stats.errors)}` : ''}`);
  v2.kill('SIGTERM');
  broker.kill('SIGTERM');
  await Promise.all([v2, broker].map((c) => new Promise((r) => (c.exitCode !== null ? r() : c.once('exit', r)))));
  process.exitCode = stats.failed === 0 && stats.byVersion['v1'] > 0 && stats.byVersion['v2'] > 0 ? 0 : 1;
}

main().catch((err) => { console.error(err); process.exitCode = 1; });
