// Renders the restart benchmark as an SVG chart with Vega-Lite:
//   node bench/chart.mjs <restarts.json | bench output with a "restarts" key> docs/restarts.svg
// One panel per app and client mode; per method, successful requests per
// second (500 ms buckets) and failed requests per second; restarts of
// fdbroker are marked. Reads only the JSON that `npm run bench` printed.
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

const rows = [];
const marks = [];
for (const r of bench.results) {
  const panel = `${r.app} app, ${r.client === 'keepalive' ? 'keep-alive clients' : 'new connection per request'}`;
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
  for (const m of r.restartMarks ?? []) marks.push({ panel, method: r.method, t: m.startMs / 1000 });
}

const spec = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  title: {
    text: `Restarts under load: served (blue) and failed (red) requests per second, ${bench.config?.restarts ?? '?'} restarts in ${(bench.config?.restartWindowMs ?? 0) / 1000} s, ${bench.config?.concurrency ?? '?'} connections`,
    subtitle: `one row per method, one column per app and client mode; dashed: when each restart began. ${bench.platform ?? ''}, ${bench.cpus ?? '?'} cores, Node ${bench.node ?? ''}`,
  },
  data: { values: [...rows, ...marks.map((m) => ({ ...m, kind: 'restart' }))] },
  facet: {
    row: { field: 'method', type: 'nominal', title: null, sort: ['fdbroker', 'cluster-rolling', 'reuseport', 'pm2-reload', 'naive', 'cluster-replace', 'pm2-kill'] },
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
  resolve: { scale: { y: 'shared' } },
  config: { font: 'sans-serif', header: { labelFontSize: 11 } },
};

const compiled = vl.compile(spec).spec;
const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
const svg = await view.toSVG();
fs.writeFileSync(output, svg);
console.error(`wrote ${output} (${rows.length} points, ${bench.results.length} runs)`);
