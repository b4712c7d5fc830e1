// /metrics safe by default (issue 22, item 5): loopback unless told
// otherwise, an optional bearer token (from a file only its owner can read),
// and slow or idle connections that cannot keep a scraper out for long.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker';
import { BrokerMetrics } from '../../src/metrics/prometheus';
import { serveMetrics, type MetricsServer } from '../../src/metrics/server';
import { METRICS_MAX_CONNECTIONS } from '../../src/broker/defaults';
import { readMetricsToken } from '../../src/cli/metrics';
import { cleanup, CLI, run, sleep, tmpDir } from '../helpers';

let broker: Broker | undefined;
let server: MetricsServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  broker?.close();
  broker = undefined;
  await cleanup();
});

function get(url: string, headers: Record<string, string> = {}, timeoutMs = 10_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function start(token?: string): Promise<MetricsServer> {
  const dir = tmpDir();
  broker = Broker.start({ controlPath: path.join(dir, 'b.sock'), listeners: [{ name: 'web', kind: 'tcp', host: '127.0.0.1', port: 0 }], inherit: false });
  server = await serveMetrics(new BrokerMetrics(broker), { host: '127.0.0.1', port: 0, ...(token ? { token } : {}) });
  return server;
}

describe('/metrics access', () => {
  it('with a token, a scrape without it or with another is 401; with it, 200', async () => {
    const s = await start('s3cret-token-value');
    expect(await get(s.url)).toBe(401);
    expect(await get(s.url, { authorization: 'Bearer wrong' })).toBe(401);
    expect(await get(s.url, { authorization: 'Bearer s3cret-token-value' })).toBe(200);
  });

  it('the token file must be a regular file only its owner (root or the broker\'s uid) can read', () => {
    const dir = tmpDir();
    const f = path.join(dir, 'token');
    fs.writeFileSync(f, 'abcdefghijklmnop\n', { mode: 0o600 });
    expect(readMetricsToken(f)).toBe('abcdefghijklmnop');
    fs.chmodSync(f, 0o644);
    expect(() => readMetricsToken(f)).toThrow(/readable by others.*chmod 600/);
    fs.chmodSync(f, 0o600);
    fs.writeFileSync(f, '\n');
    expect(() => readMetricsToken(f)).toThrow(/empty/);
  });

  it('`serve --metrics` on a non-loopback address is refused without --metrics-token-file or --metrics-public', async () => {
    const p = run(process.execPath, [CLI, 'serve', path.join(tmpDir(), 'b.sock'), '--listen', 'a=tcp://127.0.0.1:0', '--metrics', 'tcp://0.0.0.0:0']);
    const { code } = await p.exited;
    expect(code).toBe(2);
    expect(p.stderr()).toMatch(/--metrics .*not a loopback address.*--metrics-token-file.*--metrics-public/);
  });
});

describe('/metrics slow clients', () => {
  it(`${METRICS_MAX_CONNECTIONS} connections that send half a request do not keep a scraper out for more than a few seconds`, async () => {
    const s = await start();
    const slow: net.Socket[] = [];
    for (let i = 0; i < METRICS_MAX_CONNECTIONS; i++) {
      const c = net.connect(s.port, '127.0.0.1');
      c.on('error', () => {});
      c.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'); // never finished
      slow.push(c);
    }
    await sleep(200);
    const t0 = Date.now();
    let status = 0;
    while (Date.now() - t0 < 20_000) {
      status = await get(s.url, {}, 2000).catch(() => 0);
      if (status === 200) break;
      await sleep(100);
    }
    const waited = Date.now() - t0;
    for (const c of slow) c.destroy();
    console.info(`scrape after ${METRICS_MAX_CONNECTIONS} slow connections: ${waited} ms`);
    expect(status).toBe(200);
    expect(waited).toBeLessThan(5000);
  }, 30_000);
});
