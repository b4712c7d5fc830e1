// holding() and the hooks' argument checks, in-process on real sockets:
// an HTTP server with a WebSocket (`ws`), a keep-alive connection and an SSE
// stream, counted before and during a drain.
import { afterEach, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import * as net from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { drain, holding, onDrain, trackConnections } from '../../src/handover/drain';
import { closeWebSocketOnDrain, closeWebSocketsOnDrain } from '../../src/handover/drain-ws';
import { endEventStreamOnDrain } from '../../src/handover/drain-sse';
import { sleep } from '../helpers';

const closers: Array<() => void> = [];
afterEach(() => { for (const c of closers.splice(0)) c(); });

async function serve(): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: hi\n\n');
      endEventStreamOnDrain(res, { retry: 100 });
      return;
    }
    res.end('ok');
  });
  trackConnections(server);
  closeWebSocketsOnDrain(new WebSocketServer({ server }), { code: 4001 });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => { server.closeAllConnections(); server.close(); });
  return { server, port: (server.address() as net.AddressInfo).port };
}

describe('holding()', () => {
  it('counts connections by kind, then drain() ends each the protocol\'s way', async () => {
    const { server, port } = await serve();
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
    await new Promise((r) => ws.on('open', r));
    const sse = await new Promise<http.IncomingMessage>((r) => http.get({ port, host: '127.0.0.1', path: '/events', agent: false }, r));
    let sseBody = '';
    sse.on('data', (d) => { sseBody += d; });
    const sseEnd = new Promise((r) => sse.on('end', r));
    const agent = new http.Agent({ keepAlive: true });
    await new Promise((r) => http.get({ port, host: '127.0.0.1', agent }, (res) => { res.resume(); res.on('end', r); }));
    await sleep(50);
    expect(holding(server)).toEqual({ connections: 3, sessions: 0, upgraded: 1, hooked: 2, draining: false });
    const p = drain(server, { timeout: 5000, spread: 200 });
    expect(holding(server).draining).toBe(true);
    agent.destroy(); // the idle keep-alive one would otherwise wait for keepAliveTimeout
    expect(await closed).toBe(4001);
    await sseEnd;
    expect(sseBody).toMatch(/retry: 100\n\n$/);
    const r = await p;
    expect(r).toMatchObject({ forced: 0, hooked: 2, sessions: 0 });
    await sleep(20); // the server's 'close' comes before its last socket's 'close'
    expect(holding(server)).toMatchObject({ connections: 0, hooked: 0, upgraded: 0 });
  });

  it('hooks refuse bad arguments with ERR_FDBROKER_INVALID_ARGUMENT', async () => {
    const untracked = new net.Socket();
    expect(() => onDrain(untracked, () => {})).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_INVALID_ARGUMENT' }));
    const fake = { close: () => {} };
    const { port } = await serve();
    void port;
    for (const code of [1005, 1006, 999, 2000, 5000]) {
      expect(() => closeWebSocketsOnDrain({ on: () => {} }, { code })).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_INVALID_ARGUMENT' }));
    }
    expect(() => closeWebSocketOnDrain(fake, { socket: null } as never, { reason: 'x'.repeat(124) })).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_INVALID_ARGUMENT' }));
    const res = { socket: null } as unknown as http.ServerResponse;
    expect(() => endEventStreamOnDrain(res, { retry: -1 })).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_INVALID_ARGUMENT' }));
  });
});
