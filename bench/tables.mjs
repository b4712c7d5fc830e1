// Prints the README's restart tables (Markdown) from the JSON that
// `npm run bench` printed, so the README's numbers come from one run:
//   node bench/tables.mjs docs/bench/results.json
import * as fs from 'node:fs';

const input = process.argv[2];
if (!input) {
  console.error('usage: node bench/tables.mjs <bench.json>');
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

const main = bench.scenarios?.restart ?? { summary: bench.summary, config: bench.config };
const order = ['hello/keepalive', 'hello/close', 'busy/keepalive', 'busy/close'];
const methods = [...new Set(main.summary.map((s) => s.method))];
out.push(`Fair comparison: ${main.config.restarts} restarts in ${main.config.restartWindowMs / 1000} s per cell, ${main.config.concurrency} connections. Cells: ${order.join(' / ')}.`, '');
out.push('| method | failed requests | failure kinds (all cells) | throughput during restarts vs steady | p99 during restarts (ms) | longest stretch with nothing served (ms) |');
out.push('| --- | --- | --- | --- | --- | --- |');
for (const m of methods) {
  const cells = order.map((k) => main.summary.find((s) => s.method === m && `${s.app}/${s.client}` === k)).filter(Boolean);
  const col = (fn) => cells.map((c) => (c.error ? 'error' : fn(c))).join(' / ');
  out.push(`| ${NAMES[m] ?? m} | ${bold(m, col((c) => n(c.failed)))} | ${kinds(cells)} | ${col((c) => f2(c.throughputFraction))} | ${col((c) => ms(c.p99))} | ${col((c) => n(c.longestNoOkMs))} |`);
}

for (const [name, sc] of Object.entries(bench.scenarios ?? {})) {
  if (name === 'restart') continue;
  const names = name === 'crash-gap' ? { ...NAMES, ...CRASH_NAMES } : NAMES;
  out.push('', `Scenario \`${name}\`: ${sc.describe}. ${sc.config.restarts} ${sc.action === 'crash' ? 'crashes' : 'restarts'} in ${sc.config.restartWindowMs / 1000} s, ${sc.config.concurrency} connections.`, '');
  out.push(`| method | clients | failed requests | failure kinds | ok/s steady → during | p99 during (steady) ms | max latency during (ms) | longest stretch with nothing served (ms) |`);
  out.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const c of sc.summary) {
    if (c.error) { out.push(`| ${names[c.method] ?? c.method} | ${CLIENT[c.client] ?? c.client} | error: ${c.error} | | | | | |`); continue; }
    out.push(`| ${names[c.method] ?? c.method} | ${CLIENT[c.client] ?? c.client} | ${bold(c.method, n(c.failed))} | ${kinds([c])} | ${n(c.steadyOkPerSec)} → ${n(c.restartOkPerSec)} | ${ms(c.p99)} (${ms(c.steadyP99)}) | ${n(Math.round(c.max ?? 0))} | ${n(c.longestNoOkMs)} |`);
  }
}
process.stdout.write(`${out.join('\n')}\n`);
