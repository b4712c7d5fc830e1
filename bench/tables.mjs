// Prints the README's restart tables (Markdown) from the JSON that
// `npm run bench` printed, so the README's numbers come from one run: the fair
// comparison, then every other scenario in the run (crash-gap, busy-accept,
// cluster-primary, rollback-after-ready, broker-restart), each with its
// failure kinds. Also reads the output of bench/restarts.js alone.
//   node bench/tables.mjs docs/bench/results.json [--scenarios=a,b]
import * as fs from 'node:fs';

const input = process.argv[2];
const only = process.argv.slice(3).find((a) => a.startsWith('--scenarios='))?.slice('--scenarios='.length).split(',');
if (!input) {
  console.error('usage: node bench/tables.mjs <bench.json> [--scenarios=restart,crash-gap,...]');
  process.exit(2);
}
const doc = JSON.parse(fs.readFileSync(input, 'utf8'));
const bench = doc.restarts ?? doc;
const KINDS = ['refused', 'reset', 'timeout', 'non2xx', 'other'];
const NAMES = {
  fdbroker: '**fdbroker blue/green**',
  'fdbroker-cluster': '**fdbroker, cluster primary as a generation**',
  'cluster-rolling': 'rolling worker restart in one `cluster` primary',
  reuseport: '`SO_REUSEPORT` overlap',
  'pm2-reload': 'PM2 `reload` (cluster mode)',
  naive: 'naive restart (stop, then start)',
  'cluster-replace': 'replace the `cluster` primary (stop, then start)',
  'pm2-kill': 'restart the PM2 daemon (`pm2 kill`, `pm2 start`)',
  'pm2-update': '`pm2 update` (PM2 replaces its daemon)',
};
const CRASH_NAMES = {
  fdbroker: '**fdbroker** (the broker keeps the socket)',
  naive: 'plain app (or one `SO_REUSEPORT` process)',
  'cluster-replace': '`cluster` primary + 2 workers',
  'pm2-reload': 'PM2 cluster mode, its own autorestart',
};
const ROLLBACK_NAMES = {
  fdbroker: '**fdbroker** (standby resumes the old generation)',
  naive: 'naive (stop, then start; start the old version again)',
  reuseport: '`SO_REUSEPORT` overlap (start the old version again)',
};
const BROKER_RESTART_NAMES = {
  'fdbroker-takeover': '**fdbroker `serve --takeover`** (the app serves on)',
  'fdbroker-adopt-from': '**fdbroker: broker SIGKILLed, new one `--adopt-from` the app** (the app serves on)',
  naive: 'naive app restart (the app owns the socket)',
  reuseport: '`SO_REUSEPORT` overlap (each app owns its socket)',
  'cluster-replace': 'replace the `cluster` primary (it owns the socket)',
  'pm2-update': '`pm2 update` (PM2\'s daemon owns the socket)',
};
const SCENARIO_METHOD_NAMES = { 'crash-gap': CRASH_NAMES, 'rollback-after-ready': ROLLBACK_NAMES, 'broker-restart': BROKER_RESTART_NAMES };
const ACTIONS = { crash: 'crashes', badDeploy: 'bad deploys', restartOwner: 'restarts of the socket\'s owner', restart: 'restarts' };
// broker-restart: how long each restart of the owner took, from its start until
// the old owner was gone and the new one served (fdbroker: the new broker ready,
// the old one gone, the app rejoined; the peers: including the old app's drain).
const took = (r) => {
  const d = (r?.restartMarks ?? []).filter((m) => !m.error).map((m) => m.endMs - m.startMs).sort((a, b) => a - b);
  return d.length ? `${n(d[Math.floor((d.length - 1) / 2)])} / ${n(d[d.length - 1])}` : '–';
};
const EXTRA = { 'broker-restart': { head: 'each restart took (ms), median / max', cell: took } };
const CLIENT = { keepalive: 'keep-alive', close: 'new connection' };
const n = (x) => (x === null || x === undefined ? '–' : Number(x).toLocaleString('en-US'));
const f2 = (x) => (x === null || x === undefined ? '–' : x.toFixed(2));
const ms = (x) => (x === null || x === undefined ? '–' : x >= 100 ? String(Math.round(x)) : String(Math.round(x * 10) / 10));
const kinds = (cells) => {
  const sum = Object.fromEntries(KINDS.map((k) => [k, 0]));
  for (const c of cells) for (const k of KINDS) sum[k] += c[k] ?? 0;
  const parts = KINDS.filter((k) => sum[k] > 0).map((k) => `${k} ${n(sum[k])}`);
  return parts.length ? parts.join(', ') : 'none';
};
const bold = (m, s) => (m.startsWith('fdbroker') ? `**${s}**` : s);
const out = [];

const wanted = (name) => !only || only.includes(name);
const main = bench.scenarios?.restart ?? (bench.summary ? { summary: bench.summary, config: bench.config } : undefined);
const order = ['hello/keepalive', 'hello/close', 'busy/keepalive', 'busy/close'];
const methods = main && wanted('restart') ? [...new Set(main.summary.map((s) => s.method))] : [];
if (methods.length) out.push(`Fair comparison: ${main.config.restarts} restarts in ${main.config.restartWindowMs / 1000} s per cell, ${main.config.concurrency} connections. Cells: ${order.join(' / ')}.`, '');
if (methods.length) out.push('| method | failed requests | failure kinds (all cells) | throughput during restarts vs steady | p99 during restarts (ms) | longest stretch with nothing served (ms) |');
if (methods.length) out.push('| --- | --- | --- | --- | --- | --- |');
for (const m of methods) {
  const cells = order.map((k) => main.summary.find((s) => s.method === m && `${s.app}/${s.client}` === k)).filter(Boolean);
  const col = (fn) => cells.map((c) => (c.error ? 'error' : fn(c))).join(' / ');
  out.push(`| ${NAMES[m] ?? m} | ${bold(m, col((c) => n(c.failed)))} | ${kinds(cells)} | ${col((c) => f2(c.throughputFraction))} | ${col((c) => ms(c.p99))} | ${col((c) => n(c.longestNoOkMs))} |`);
}

for (const [name, sc] of Object.entries(bench.scenarios ?? {})) {
  if (name === 'restart' || !wanted(name)) continue;
  const names = { ...NAMES, ...SCENARIO_METHOD_NAMES[name] };
  if (out.length) out.push('');
  out.push(`Scenario \`${name}\`: ${sc.describe}. ${sc.config.restarts} ${ACTIONS[sc.action] ?? sc.action} in ${sc.config.restartWindowMs / 1000} s, ${sc.config.concurrency} connections.`, '');
  const extra = EXTRA[name];
  const more = extra ? ' |' : '';
  out.push(`| method | clients | failed requests | failure kinds | ok/s steady → during | p99 during (steady) ms | max latency during (ms) | longest stretch with nothing served (ms) |${extra ? ` ${extra.head} |` : ''}`);
  out.push(`| --- | --- | --- | --- | --- | --- | --- | --- |${extra ? ' --- |' : ''}`);
  const resultOf = (c) => sc.results?.find((r) => r.method === c.method && r.app === c.app && r.client === c.client);
  const skipped = (bench.skipped ?? []).filter((x) => x.scenario === name);
  for (const c of sc.summary) {
    if (c.error) { out.push(`| ${names[c.method] ?? c.method} | ${CLIENT[c.client] ?? c.client} | error: ${c.error} | | | | | |${more}`); continue; }
    const short = c.restarts !== undefined && c.restarts < sc.config.restarts ? ` (${c.restarts} of ${sc.config.restarts} done)` : '';
    out.push(`| ${names[c.method] ?? c.method} | ${CLIENT[c.client] ?? c.client} | ${bold(c.method, n(c.failed))}${short} | ${kinds([c])} | ${n(c.steadyOkPerSec)} → ${n(c.restartOkPerSec)} | ${ms(c.p99)} (${ms(c.steadyP99)}) | ${n(Math.round(c.max ?? 0))} | ${n(c.longestNoOkMs)} |${extra ? ` ${extra.cell(resultOf(c))} |` : ''}`);
  }
  for (const x of skipped) out.push(`| ${names[x.method] ?? x.method} | | skipped: ${x.reason} | | | | | |${more}`);
}
process.stdout.write(`${out.join('\n')}\n`);
