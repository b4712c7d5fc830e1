// Renders the restart benchmark as an SVG chart with Vega-Lite:
//   node bench/chart.mjs <restarts.json | bench output with a "restarts" key> docs/restarts.svg
// Top: the fair comparison (scenario "restart"), one panel per app and client
// mode. Below: each other scenario of the run (crash gap, busy accept, cluster
// primary, rollback after ready, broker restart) in its own block, one panel
// per client mode. Per method, successful requests per
// second (500 ms buckets) and failed requests per second; dashed: when each
// restart (or crash) began. Reads only the JSON that `npm run bench` printed.
import * as fs from 'node:fs';
import * as vega from 'vega';
import * as vl from 'vega-lite';

const [input, output = 'docs/restarts.svg'] = process.argv.slice(2);
if (!input) {
  console.error('usage: node bench/chart.mjs <bench.json> [out.svg]');
  process.exit(2);
}
const doc = JSON.parse(fs.readFileSync(input, 'utf8'));
const bench = doc.restarts ?? doc;
const BUCKETS_PER_POINT = 5;
const CLIENT = { keepalive: 'keep-alive clients', close: 'new connection per request' };
const METHOD_ORDER = ['fdbroker', 'fdbroker-takeover', 'fdbroker-adopt-from', 'fdbroker-cluster', 'cluster-rolling', 'reuseport', 'pm2-reload', 'naive', 'cluster-replace', 'pm2-kill', 'pm2-update'];
const ACTIONS = { crash: 'crashes', badDeploy: 'bad deploys', restartOwner: 'restarts of the socket owner', restart: 'restarts' };

function series(results, panelOf) {
  const rows = [];
  for (const r of results) {
    if (!r.series) continue;
    const panel = panelOf(r);
    const { bucketMs, ok, failed } = r.series;
    for (let i = 0; i < ok.length; i += BUCKETS_PER_POINT) {
      let o = 0;
      let f = 0;
      for (let k = i; k < Math.min(i + BUCKETS_PER_POINT, ok.length); k++) {
        o += ok[k] ?? 0;
        f += failed?.[k] ?? 0;
      }
      const seconds = (BUCKETS_PER_POINT * bucketMs) / 1000;
      rows.push({ panel, method: r.method, t: (i * bucketMs) / 1000, kind: 'served/s', value: o / seconds });
      rows.push({ panel, method: r.method, t: (i * bucketMs) / 1000, kind: 'failed/s', value: f / seconds });
    }
    for (const m of r.restartMarks ?? []) rows.push({ panel, method: r.method, t: m.startMs / 1000, kind: 'restart' });
  }
  return rows;
}

function facet(title, rows) {
  return {
    title,
    data: { values: rows },
    facet: {
      row: { field: 'method', type: 'nominal', title: null, sort: METHOD_ORDER },
      column: { field: 'panel', type: 'nominal', title: null },
    },
    spec: {
      width: 190,
      height: 70,
      layer: [
        {
          transform: [{ filter: "datum.kind === 'restart'" }],
          mark: { type: 'rule', color: '#999', strokeDash: [2, 2], strokeWidth: 0.7 },
          encoding: { x: { field: 't', type: 'quantitative' } },
        },
        {
          transform: [{ filter: "datum.kind !== 'restart'" }],
          mark: { type: 'line', strokeWidth: 1.1 },
          encoding: {
            x: { field: 't', type: 'quantitative', title: 'seconds' },
            y: { field: 'value', type: 'quantitative', title: 'requests / s' },
            color: { field: 'kind', type: 'nominal', scale: { domain: ['served/s', 'failed/s'], range: ['#1f77b4', '#d62728'] }, title: null },
          },
        },
      ],
    },
    resolve: { scale: { y: 'independent' } },
  };
}

const main = bench.scenarios?.restart?.results ?? bench.results ?? [];
const cfg = bench.scenarios?.restart?.config ?? bench.config ?? {};
const parts = [];
if (main.length) {
  parts.push(facet(
    { text: `The fair comparison (same app, same drain): ${cfg.restarts ?? '?'} restarts in ${(cfg.restartWindowMs ?? 0) / 1000} s, ${cfg.concurrency ?? '?'} connections`, anchor: 'start' },
    series(main, (r) => `${r.app} app, ${CLIENT[r.client] ?? r.client}`),
  ));
}
const others = Object.entries(bench.scenarios ?? {}).filter(([name]) => name !== 'restart');
for (const [name, sc] of others) {
  const rows = series(sc.results, (r) => `${r.app}, ${CLIENT[r.client] ?? r.client}`);
  if (rows.length) parts.push(facet({ text: `Scenario ${name}: ${sc.config.restarts} ${ACTIONS[sc.action] ?? sc.action} in ${sc.config.restartWindowMs / 1000} s, ${sc.config.concurrency} connections`, anchor: 'start' }, rows));
}
const spec = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  title: {
    text: 'Restarts under load: served (blue) and failed (red) requests per second',
    subtitle: `one row per method; dashed: when each restart or crash began; y scales per panel. ${bench.platform ?? ''}, ${bench.cpus ?? '?'} cores, Node ${bench.node ?? ''}, load average ${(bench.loadavgStart ?? []).map((x) => x.toFixed(2)).join(' ')} at the start`,
  },
  vconcat: parts,
  config: { font: 'sans-serif', header: { labelFontSize: 11 } },
};

const compiled = vl.compile(spec).spec;
const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
const svg = await view.toSVG();
fs.writeFileSync(output, svg);
console.error(`wrote ${output} (${main.length} comparison runs, ${others.reduce((a, [, sc]) => a + sc.results.length, 0)} scenario runs)`);
