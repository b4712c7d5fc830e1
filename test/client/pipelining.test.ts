// BrokerConnection matches answers by id: several requests in flight on one
// connection each get their own answer (issue 18, defect 5), against a real
// `fdbroker serve --config` broker. Misuse fails before anything is sent.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BrokerConnection } from '../../src/client/connection';
import { native } from '../../src/native/binding';
import type { FdbrokerError } from '../../src/protocol/errors';
import { cleanup, fdCount, startBroker, tmpDir, type BrokerProc } from '../helpers';

afterEach(cleanup);

async function brokerWithConfig(): Promise<BrokerProc> {
  const dir = tmpDir();
  const config = path.join(dir, 'fdbroker.toml');
  fs.writeFileSync(config, '[listeners]\nhttp = "tcp://127.0.0.1:0"\n');
  return startBroker(dir, [], ['--quiet', '--config', config]);
}

const codeOf = (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (e: FdbrokerError) => e.code);

describe('BrokerConnection: requests in flight together', () => {
  it('reload() and status() at once, and an adopt pipelined behind them: each gets its own answer', async () => {
    const broker = await brokerWithConfig();
    const conn = await BrokerConnection.connect(broker.sock, { timeout: 5000 });
    try {
      const [reloaded, status, adopted] = await Promise.all([conn.reload(), conn.status(), conn.adopt(['http'])]);
      expect(reloaded).toEqual({ added: [], removed: [], changed: [], grants: [] });
      expect(status.listeners.map((l) => l.name)).toEqual(['http']);
      expect(adopted.map((l) => l.info.name)).toEqual(['http']);
      for (const l of adopted) native().close(l.fd);
      // The connection is still usable afterwards.
      expect((await conn.status()).broker.pid).toBe(broker.pid);
    } finally {
      conn.close();
    }
  });

  it('many status() and reload() interleaved: all answered, in any order of completion', async () => {
    const broker = await brokerWithConfig();
    const conn = await BrokerConnection.connect(broker.sock, { timeout: 5000 });
    try {
      const calls = Array.from({ length: 20 }, (_, i) => (i % 3 === 0 ? conn.reload().then(() => 'reloaded') : conn.status().then((s) => s.type)));
      const got = await Promise.all(calls);
      expect(got.filter((g) => g === 'reloaded')).toHaveLength(7);
      expect(got.filter((g) => g === 'status')).toHaveLength(13);
    } finally {
      conn.close();
    }
  });

  it('a ready() waiting for its answer does not block a status() asked meanwhile', async () => {
    const broker = await brokerWithConfig();
    const conn = await BrokerConnection.connect(broker.sock, { timeout: 5000 });
    try {
      const j = await conn.join(['http'], { label: 'pipelined' });
      for (const l of j.listeners) native().close(l.fd);
      const [ready, status] = await Promise.all([codeOf(conn.ready()), conn.status()]);
      expect(ready).toBe('ok');
      expect(status.generations.map((g) => g.number)).toEqual([j.generation]);
    } finally {
      conn.close();
    }
  });

  it('an error answer settles only its own request', async () => {
    const broker = await brokerWithConfig();
    const conn = await BrokerConnection.connect(broker.sock, { timeout: 5000 });
    try {
      const [bad, good] = await Promise.all([codeOf(conn.adopt(['nope'])), codeOf(conn.status())]);
      expect(bad).toBe('ERR_FDBROKER_UNKNOWN_LISTENER');
      expect(good).toBe('ok');
    } finally {
      conn.close();
    }
  });

  it('close() settles every request in flight with ERR_FDBROKER_CLOSED and leaks no fd', async () => {
    const broker = await brokerWithConfig();
    const before = fdCount(process.pid);
    const conn = await BrokerConnection.connect(broker.sock, { timeout: 5000 });
    const j = await conn.join(['http']);
    for (const l of j.listeners) native().close(l.fd);
    const pending = [codeOf(conn.status()), codeOf(conn.adopt(['http'])), codeOf(conn.reload())];
    conn.close();
    expect(await Promise.all(pending)).toEqual(['ERR_FDBROKER_CLOSED', 'ERR_FDBROKER_CLOSED', 'ERR_FDBROKER_CLOSED']);
    await new Promise((r) => setTimeout(r, 50));
    expect(fdCount(process.pid)).toBe(before);
  });

  it('the broker going away settles every request in flight (a ready() without timeout too)', async () => {
    const broker = await brokerWithConfig();
    const conn = await BrokerConnection.connect(broker.sock, { timeout: 5000 });
    const j = await conn.join(['http']);
    for (const l of j.listeners) native().close(l.fd);
    await conn.ready();
    // A second ready is acked at once by a live broker; stop the broker first so nothing answers.
    broker.kill('SIGSTOP');
    try {
      const pending = [codeOf(conn.ready()), codeOf(conn.status(60_000))];
      broker.kill('SIGKILL');
      const codes = await Promise.all(pending);
      expect(codes.every((c) => c === 'ERR_FDBROKER_CLOSED' || c === 'ECONNRESET')).toBe(true);
    } finally {
      conn.close();
    }
  });
});

describe('BrokerConnection: misuse fails before anything is sent', () => {
  it('a request on a closed connection: ERR_FDBROKER_CLOSED; an invalid name: ERR_FDBROKER_INVALID_ARGUMENT; a second join: ERR_FDBROKER_INVALID_ARGUMENT; commit() of no takeover: ERR_FDBROKER_INVALID_ARGUMENT', async () => {
    const broker = await brokerWithConfig();
    const conn = await BrokerConnection.connect(broker.sock, { timeout: 5000 });
    try {
      expect(await codeOf(conn.adopt(['not a name']))).toBe('ERR_FDBROKER_INVALID_ARGUMENT');
      expect(await codeOf(conn.join(['http'], { label: 'x'.repeat(300) }))).toBe('ERR_FDBROKER_INVALID_ARGUMENT');
      const j = await conn.join(['http']);
      for (const l of j.listeners) native().close(l.fd);
      expect(await codeOf(conn.join(['http']))).toBe('ERR_FDBROKER_INVALID_ARGUMENT');
      expect(await codeOf(conn.rejoin({ generation: 3, state: 'ready', names: [] }))).toBe('ERR_FDBROKER_INVALID_ARGUMENT');
      expect(await codeOf(conn.commit(99))).toBe('ERR_FDBROKER_INVALID_ARGUMENT');
      // None of that reached the broker: the connection serves on.
      expect((await conn.status()).generations).toHaveLength(1);
    } finally {
      conn.close();
    }
    expect(await codeOf(conn.status())).toBe('ERR_FDBROKER_CLOSED');
  });
});
