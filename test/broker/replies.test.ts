// No request within PROTOCOL.md's limits ends the broker (issue 10, defect 1):
// every reply fits one message (errors are bounded, status comes in parts),
// from an allowed peer and from a status-only peer. Also: status names every
// holder of a listener, and marks those that are not generations (defect 8).
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { BrokerConnection } from '../../src/client/connection';
import { adoptListeners } from '../../src/client/adopt';
import { MAX_LABEL_BYTES, MAX_MESSAGE_BYTES, MAX_NAME_BYTES, MAX_STANDBY_MS } from '../../src/protocol/limits';
import { alive, CLI, cleanup, FIXTURES, Raw, run, sleep, startBroker, statusOf, tmpDir } from '../helpers';
import { NOBODY, runAs, sharedCopy } from '../other-user';
import { describeWith, root, setpriv } from '../requirements';

afterEach(cleanup);

const HELLO = { type: 'hello', versions: [1] };
/** A valid listener name of exactly `bytes` bytes. */
const longName = (i: number, bytes = MAX_NAME_BYTES) => `${i}-`.padEnd(bytes, 'x');

async function greeted(sock: string): Promise<Raw> {
  const r = await Raw.connect(sock);
  r.send(HELLO);
  expect((await r.next())?.msg.type).toBe('welcome');
  return r;
}

describe('replies never exceed a message', () => {
  it('adopt naming 260 unknown 128-byte names: a bounded error that lists what fits; the broker serves on', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const names = Array.from({ length: 260 }, (_, i) => longName(i));
    const r = await greeted(broker.sock);
    r.send({ type: 'adopt', id: 1, names });
    const reply = (await r.next())!;
    expect(reply.bytes).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(reply.msg).toMatchObject({ type: 'error', id: 1, code: 'ERR_FDBROKER_UNKNOWN_LISTENER' });
    expect((reply.msg.names as string[]).length).toBeGreaterThan(0);
    // The connection stays usable, and the library reports the code.
    r.send({ type: 'status', id: 2 });
    expect((await r.next())?.msg).toMatchObject({ type: 'status', id: 2 });
    r.close();
    await expect(adoptListeners(broker.sock, { names })).rejects.toMatchObject({ code: 'ERR_FDBROKER_UNKNOWN_LISTENER' });
    expect(alive(broker.pid)).toBe(true);
  });

  it('status with 900 connected clients comes in parts of at most 64 KiB, and the library puts them together', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const idle: Raw[] = [];
    for (let i = 0; i < 900; i++) idle.push(await greeted(broker.sock));
    const r = await greeted(broker.sock);
    r.send({ type: 'status', id: 7 });
    const parts: Array<Record<string, unknown>> = [];
    for (;;) {
      const m = (await r.next())!;
      expect(m.bytes).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
      parts.push(m.msg);
      if (m.msg.last === true) break;
    }
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.map((p) => p.part)).toEqual(parts.map((_, i) => i));
    expect(parts.reduce((n, p) => n + (p.clients as unknown[]).length, 0)).toBe(901);
    const s = await statusOf(broker.sock);
    expect(s.clients.length).toBe(902);
    for (const c of idle) c.close();
    r.close();
  });

  it('status with 300 listeners of 128-byte names: every listener listed, through `fdbroker status --json` too', async () => {
    const specs = Array.from({ length: 300 }, (_, i) => `${longName(i)}=tcp://127.0.0.1:0`);
    const broker = await startBroker(tmpDir(), specs, ['--quiet']);
    const s = await statusOf(broker.sock);
    expect(s.listeners).toHaveLength(300);
    const cli = run(process.execPath, [CLI, 'status', broker.sock, '--json']);
    expect((await cli.exited).code).toBe(0);
    expect((JSON.parse(cli.stdout()) as { listeners: unknown[] }).listeners).toHaveLength(300);
  });

  it('property: no sequence of requests within the limits, from an allowed peer, ends the broker', async () => {
    const specs = Array.from({ length: 40 }, (_, i) => `${longName(i)}=tcp://127.0.0.1:0`);
    const broker = await startBroker(tmpDir(), specs, ['--quiet']);
    const known = Array.from({ length: 40 }, (_, i) => longName(i));
    const name = fc.oneof(fc.constantFrom(...known), fc.stringMatching(/^[A-Za-z0-9._:@-]{1,128}$/));
    const names = fc.option(fc.array(name, { maxLength: 300 }), { nil: null });
    const id = fc.nat({ max: 2 ** 31 });
    const request = fc.oneof(
      fc.record({ type: fc.constant('adopt'), id, names }),
      fc.record({ type: fc.constant('status'), id }),
      fc.record({ type: fc.constant('join'), id, names, label: fc.string({ maxLength: MAX_LABEL_BYTES / 4 }), standby: fc.nat({ max: MAX_STANDBY_MS }) }),
      fc.record({ type: fc.constant('ready'), id }),
      fc.record({ type: fc.constant('rejoin'), id, generation: fc.integer({ min: 1, max: 2 ** 31 }), state: fc.constantFrom('starting', 'ready', 'retiring'), names }),
      fc.record({ type: fc.constant('pong'), id }),
    );
    await fc.assert(fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 12 }), async (reqs) => {
      const r = await greeted(broker.sock);
      for (const q of reqs) {
        const payload = Buffer.byteLength(JSON.stringify(q));
        if (payload > MAX_MESSAGE_BYTES) continue; // outside the limits
        r.send(q);
      }
      // Read whatever comes (replies in parts included) until the broker is quiet.
      while ((await r.next(150)) !== null) { /* drained */ }
      r.close();
      expect(alive(broker.pid)).toBe(true);
    }), { numRuns: 40 });
    const s = await statusOf(broker.sock);
    expect(s.listeners).toHaveLength(40);
    expect(broker.stderr()).not.toMatch(/ERR_FDBROKER_INTERNAL/);
  }, 120_000);
});

describeWith([root('runs a status-only peer as uid 65534'), setpriv()], 'a status-only peer', () => {
  it('reads a status of 900 clients in parts; adopt is refused with ERR_FDBROKER_NOT_PERMITTED; the broker serves on', async () => {
    const shared = sharedCopy();
    const dir = path.join(shared.root, 'sock');
    fs.mkdirSync(dir, { mode: 0o755 });
    const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet', '--allow-status-uid', String(NOBODY), '--mode', '0666']);
    const idle: Raw[] = [];
    for (let i = 0; i < 900; i++) idle.push(await greeted(broker.sock));
    const p = runAs(NOBODY, NOBODY, shared.root, process.execPath, [path.join(shared.fixtures, 'sec-client.js'), broker.sock, 'status']);
    expect((await p.exited).code, p.stderr()).toBe(0);
    expect(JSON.parse(p.stdout().trim())).toMatchObject({ ok: true, listeners: ['http'] });
    const a = runAs(NOBODY, NOBODY, shared.root, process.execPath, [path.join(shared.fixtures, 'sec-client.js'), broker.sock, 'adopt']);
    await a.exited;
    expect(JSON.parse(a.stdout().trim())).toMatchObject({ code: 'ERR_FDBROKER_NOT_PERMITTED' });
    expect(alive(broker.pid)).toBe(true);
    for (const c of idle) c.close();
    shared.remove();
  });
});

describe('holders', () => {
  it('status lists every process holding a listener and marks the one adopted outside any generation', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    // The quick start: an adoptListeners() app, not a generation.
    const plain = run(process.execPath, [path.join(FIXTURES, 'http-app.js')], { env: { FDBROKER_SOCK: broker.sock } });
    await plain.waitFor(/^ready \d+/m);
    const gen = run(process.execPath, [path.join(FIXTURES, 'gen-app.js')], { env: { FDBROKER_SOCK: broker.sock } });
    await gen.waitFor(/^ready \d+ gen 1$/m);
    const conn = await BrokerConnection.connect(broker.sock);
    const s = await conn.status();
    conn.close();
    const holders = s.listeners[0]!.holders!;
    expect(holders.find((h) => h.pid === plain.pid)).toMatchObject({ pid: plain.pid, comm: 'node' });
    expect(holders.find((h) => h.pid === plain.pid)!.generation).toBeUndefined();
    expect(holders.find((h) => h.pid === gen.pid)).toMatchObject({ generation: 1 });
    expect(holders.some((h) => h.pid === broker.pid)).toBe(false);
    const cli = run(process.execPath, [CLI, 'status', broker.sock]);
    await cli.exited;
    expect(cli.stdout()).toMatch(new RegExp(`${plain.pid}\\(node, not a generation\\)`));
    expect(cli.stdout()).toMatch(new RegExp(`${gen.pid}\\(#1\\)`));
    await sleep(10);
  });
});

describe('status without holders', () => {
  it('holders: false is answered without the /proc scan (no holders field); the default has holders', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const ls = await adoptListeners(broker.sock, { names: ['http'] });
    const r = await greeted(broker.sock);
    r.send({ type: 'status', id: 1, holders: false });
    const quick = (await r.next())!.msg as { id: number; listeners: Array<Record<string, unknown>> };
    expect(quick.id).toBe(1);
    expect(quick.listeners[0]).not.toHaveProperty('holders');
    r.send({ type: 'status', id: 2 });
    const full = (await r.next())!.msg as { id: number; listeners: Array<{ holders?: Array<{ pid: number }> }> };
    expect(full.id).toBe(2);
    expect(full.listeners[0]!.holders?.map((h) => h.pid)).toContain(process.pid);
    const conn = await BrokerConnection.connect(broker.sock);
    expect((await conn.status(5000, { holders: false })).listeners[0]).not.toHaveProperty('holders');
    conn.close();
    r.send({ type: 'status', id: 3, holders: 'no' });
    expect((await r.next())!.msg).toMatchObject({ type: 'error', code: 'ERR_FDBROKER_PROTOCOL' });
    r.close();
    ls.http!.close();
  });
});
