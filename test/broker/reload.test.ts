// Changing a running broker's listeners, grants and limits: the pure plan,
// and the Broker API in this process (real sockets, fds counted in /proc).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker';
import { planListeners } from '../../src/broker/reload';
import { parseListenerSpec, type ListenerSpec } from '../../src/broker/spec';
import { BrokerConnection } from '../../src/client/connection';
import { native } from '../../src/native/binding';
import type { FdbrokerError } from '../../src/protocol/errors';
import type { ListenerInfo } from '../../src/protocol/messages';
import { cleanup, fdCount, rawConnect, sleep, tmpDir } from '../helpers';

const spec = (t: string): ListenerSpec => parseListenerSpec(t);
const brokers: Broker[] = [];
afterEach(async () => {
  for (const b of brokers.splice(0)) b.close();
  await cleanup();
});

function start(listeners: string[]): Broker {
  const b = Broker.start({ controlPath: path.join(tmpDir(), 'b.sock'), listeners: listeners.map(spec), inherit: false });
  brokers.push(b);
  return b;
}

/** A port something else (this process, through Node) listens on. */
async function takenPort(): Promise<{ port: number; close: () => void }> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as net.AddressInfo).port, close: () => srv.close() };
}

async function adoptError(b: Broker, names: string[]): Promise<FdbrokerError> {
  const conn = await BrokerConnection.connect(b.controlPath);
  try {
    const got = await conn.adopt(names);
    for (const l of got) native().close(l.fd);
    throw new Error(`adopted ${got.map((l) => l.info.name).join(',')}`);
  } catch (err) {
    return err as FdbrokerError;
  } finally {
    conn.close();
  }
}

describe('planListeners', () => {
  const current = new Map([['a', spec('a=tcp://127.0.0.1:1')], ['b', spec('b=tcp://127.0.0.1:2')], ['c', spec('c=unix:/tmp/c.sock')]]);

  it('new names are added, missing ones removed, a different spec is a change, the same spec nothing', () => {
    const plan = planListeners(current, [spec('a=tcp://127.0.0.1:1'), spec('b=tcp://127.0.0.1:3'), spec('d=tcp://127.0.0.1:0')], 511);
    expect(plan.add.map((s) => s.name)).toEqual(['d']);
    expect(plan.remove).toEqual(['c']);
    expect(plan.change.map((s) => s.name)).toEqual(['b']);
  });

  it('the backlog compares as it takes effect: the default written out is no change, another one is retuned in place; an address or mode is a change', () => {
    expect(planListeners(current, [...current.values()].map((s) => (s.name === 'a' ? spec('a=tcp://127.0.0.1:1?backlog=511') : s)), 511))
      .toEqual({ add: [], remove: [], change: [], retune: [] });
    expect(planListeners(current, [...current.values()].map((s) => (s.name === 'a' ? spec('a=tcp://127.0.0.1:1?backlog=64') : s)), 511).retune
      .map((s) => s.name)).toEqual(['a']);
    expect(planListeners(current, [...current.values()].map((s) => (s.name === 'a' ? spec('a=tcp://127.0.0.1:1?nodelay=0') : s)), 511).retune
      .map((s) => s.name)).toEqual(['a']);
    expect(planListeners(current, [...current.values()].map((s) => (s.name === 'a' ? spec('a=tcp://127.0.0.1:2') : s)), 511).change
      .map((s) => s.name)).toEqual(['a']);
    expect(planListeners(current, [...current.values()].map((s) => (s.name === 'c' ? spec('c=unix:/tmp/c.sock?mode=0660') : s)), 511).change
      .map((s) => s.name)).toEqual(['c']);
  });
});

describe('Broker: listeners added and removed while it runs', () => {
  it('addNamedListener creates, announces and hands out; removeNamedListener closes the broker copy and refuses it after', async () => {
    const b = start(['a=tcp://127.0.0.1:0']);
    const added: ListenerInfo[] = [];
    const removed: ListenerInfo[] = [];
    b.on('listenerAdded', (l) => added.push(l));
    b.on('listenerRemoved', (l) => removed.push(l));
    const before = fdCount(process.pid);
    const info = b.addNamedListener(spec('x=tcp://127.0.0.1:0'));
    expect(fdCount(process.pid)).toBe(before + 1);
    expect(added).toEqual([info]);
    expect(() => b.addNamedListener(spec('x=tcp://127.0.0.1:0'))).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_DUPLICATE_NAME' }));
    expect(fdCount(process.pid)).toBe(before + 1);
    const conn = await BrokerConnection.connect(b.controlPath);
    const got = await conn.adopt(['x']);
    conn.close();
    expect(got.map((l) => l.info.port)).toEqual([info.port]);
    // This process holds a copy: the broker's copy goes, the socket stays, listed as removed.
    b.removeNamedListener('x');
    expect(removed.map((l) => l.name)).toEqual(['x']);
    const refused = await adoptError(b, ['x']);
    expect(refused.code).toBe('ERR_FDBROKER_UNKNOWN_LISTENER');
    expect(refused.message).toMatch(/"x" removed by a reload/);
    expect(b.status().listeners.find((l) => l.name === 'x')).toMatchObject({ removed: true, port: info.port });
    const c = net.connect(info.port!, '127.0.0.1');
    await new Promise<void>((r, j) => { c.once('connect', r); c.once('error', j); });
    c.destroy();
    native().close(got[0]!.fd);
    // Nobody holds it now: connections are refused.
    const gone = await new Promise<string>((r) => net.connect(info.port!, '127.0.0.1').once('error', (e: NodeJS.ErrnoException) => r(e.code!)).once('connect', () => r('connected')));
    expect(gone).toBe('ECONNREFUSED');
    expect(() => b.removeNamedListener('x')).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_UNKNOWN_LISTENER' }));
  });

  it('applyReload is atomic: a bind that fails closes what it created and changes nothing', async () => {
    const b = start(['a=tcp://127.0.0.1:0', 'c=tcp://127.0.0.1:0']);
    const taken = await takenPort();
    const names = () => b.listenerInfos().map((l) => l.name);
    const before = fdCount(process.pid);
    const events: string[] = [];
    b.on('listenerAdded', (l) => events.push(`+${l.name}`));
    b.on('listenerRemoved', (l) => events.push(`-${l.name}`));
    let err: FdbrokerError | undefined;
    try {
      b.applyReload({ listeners: [spec('a=tcp://127.0.0.1:0'), spec('n1=tcp://127.0.0.1:0'), spec(`n2=tcp://127.0.0.1:${taken.port}`)], access: { allowUids: [1234] } });
    } catch (e) { err = e as FdbrokerError; }
    expect(fdCount(process.pid)).toBe(before);
    expect(err?.code).toBe('ERR_FDBROKER_RELOAD_FAILED');
    expect((err?.cause as NodeJS.ErrnoException).code).toBe('EADDRINUSE');
    expect(names()).toEqual(['a', 'c']);
    expect(events).toEqual([]);
    taken.close();
    await new Promise((r) => setTimeout(r, 20));
    const after = fdCount(process.pid);
    const r = b.applyReload({ listeners: [spec('a=tcp://127.0.0.1:0'), spec('n1=tcp://127.0.0.1:0')] });
    expect(r).toEqual({ added: ['n1'], removed: ['c'], changed: [], grants: [] });
    expect(events).toEqual(['-c', '+n1']);
    expect(names()).toEqual(['a', 'n1']);
    expect(fdCount(process.pid)).toBe(after);
  });

  it('a listener removed while a queued reply still names its fd is closed only after that reply went out', async () => {
    const b = start(['a=tcp://127.0.0.1:0', 'x=tcp://127.0.0.1:0']);
    const xPort = b.listenerInfos().find((l) => l.name === 'x')!.port;
    const n = native();
    const fd = await rawConnect(b.controlPath);
    const send = (m: object) => n.sendmsg(fd, Buffer.from(JSON.stringify(m)), []);
    send({ type: 'hello', versions: [1] });
    // The broker runs in this process: peek at its channels' queues (test only).
    const channels = (b as unknown as { channels: Set<{ queue: unknown[] }> }).channels;
    const queued = () => Math.max(0, ...[...channels].map((c) => c.queue.length));
    // Requests whose answers (small errors) this client does not read, until the broker has to queue them.
    for (let i = 0; i < 5000 && queued() === 0; i++) {
      send({ type: 'ready', id: i });
      await sleep(0);
    }
    expect(queued()).toBeGreaterThan(0);
    send({ type: 'adopt', id: 99999, names: ['x'] });
    await sleep(20);
    const before = fdCount(process.pid);
    b.removeNamedListener('x');
    expect(fdCount(process.pid)).toBe(before); // not closed: the queued reply carries its number
    // Read every answer: the handout is socket x, not whatever reused its number.
    const buf = Buffer.alloc(65536);
    let port: number | undefined;
    const deadline = Date.now() + 5000;
    while (port === undefined && Date.now() < deadline) {
      const r = n.recvmsg(fd, buf, 16);
      if (typeof r === 'number') { await sleep(2); continue; }
      for (const f of r.fds) {
        const name = n.sockname(f);
        if (typeof name !== 'number' && name.family === 'inet') port = name.port;
        n.close(f);
      }
    }
    expect(port).toBe(xPort);
    await sleep(400); // the broker's check timer closes it once no queue names it
    expect(fdCount(process.pid)).toBe(before - 1);
    n.close(fd);
  });

  it('a reload that would leave no listener (an empty file) is refused', () => {
    const b = start(['a=tcp://127.0.0.1:0']);
    expect(() => b.applyReload({ listeners: [] })).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_RELOAD_FAILED' }));
    expect(b.listenerInfos().map((l) => l.name)).toEqual(['a']);
  });

  it('a changed listener is removed and added again; at the same port the new bind fails and nothing changes; options alone are applied in place', () => {
    const b = start(['a=tcp://127.0.0.1:0']);
    const port = b.listenerInfos()[0]!.port!;
    let err: FdbrokerError | undefined;
    try { b.applyReload({ listeners: [spec(`a=tcp://127.0.0.1:${port}?backlog=64`)] }); } catch (e) { err = e as FdbrokerError; }
    expect(err?.code).toBe('ERR_FDBROKER_RELOAD_FAILED');
    expect(err?.message).toMatch(/another address/);
    expect(b.listenerInfos()).toMatchObject([{ name: 'a', port, backlog: 511 }]);
    // The same spec'd address (port 0), another backlog: the held socket takes it, same port.
    const r = b.applyReload({ listeners: [spec('a=tcp://127.0.0.1:0?backlog=64')] });
    expect(r).toEqual({ added: [], removed: [], changed: ['a'], grants: [] });
    expect(b.listenerInfos()).toMatchObject([{ name: 'a', backlog: 64, port }]);
    // Another address: a new socket.
    const r2 = b.applyReload({ listeners: [spec('a=tcp://127.0.0.2:0?backlog=64')] });
    expect(r2).toEqual({ added: [], removed: [], changed: ['a'], grants: [] });
    expect(b.listenerInfos()[0]!.address).toBe('127.0.0.2');
  });

  it('listeners not created from a spec (here: handed over) are left alone, and a reload cannot take their name', () => {
    const fd = native().socket(native().constants.AF_INET, native().constants.SOCK_STREAM) as number;
    native().bind(fd, { family: 'inet', address: '127.0.0.1', port: 0 });
    native().listen(fd, 16);
    const addr = native().sockname(fd) as { port: number };
    const b = Broker.startInternal({
      controlPath: path.join(tmpDir(), 'b.sock'), inherit: false, listeners: [spec('a=tcp://127.0.0.1:0')],
      listenerFds: [{ fd, info: { name: 'given', kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: addr.port, backlog: 16 } }],
    });
    brokers.push(b);
    expect(b.applyReload({ listeners: [] })).toEqual({ added: [], removed: ['a'], changed: [], grants: [] });
    expect(b.listenerInfos().map((l) => l.name)).toEqual(['given']);
    expect(() => b.applyReload({ listeners: [spec('given=tcp://127.0.0.1:0')] })).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_DUPLICATE_NAME' }));
  });

  it('setLimits applies to connections from now on; those connected stay', async () => {
    const b = start(['a=tcp://127.0.0.1:0']);
    // The client limit is for the shared PATH (PATH.owner, the owner's own socket, is exempt): this test's
    // clients, of the broker's own uid, reach PATH once PATH.owner's name is gone.
    fs.unlinkSync(`${b.controlPath}.owner`);
    const first = await BrokerConnection.connect(b.controlPath);
    b.setLimits({ maxClients: 1 });
    let code: string | undefined;
    try { (await BrokerConnection.connect(b.controlPath)).close(); } catch (e) { code = (e as FdbrokerError).code; }
    expect(code).toBe('ERR_FDBROKER_OVERLOADED');
    expect((await first.status()).listeners.map((l) => l.name)).toEqual(['a']);
    b.applyReload({ listeners: [spec('a=tcp://127.0.0.1:0')], limits: {} });
    const second = await BrokerConnection.connect(b.controlPath);
    second.close();
    first.close();
  });

  it('reload() without a source is ERR_FDBROKER_NO_CONFIG, and says so in reloadFailed', () => {
    const b = start(['a=tcp://127.0.0.1:0']);
    const seen: string[] = [];
    b.on('reloading', () => seen.push('reloading'));
    b.on('reloadFailed', (e) => seen.push((e as FdbrokerError).code));
    b.on('reloaded', () => seen.push('reloaded'));
    expect(() => b.reload()).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_NO_CONFIG' }));
    b.reloadSource = () => ({ listeners: [spec('a=tcp://127.0.0.1:0'), spec('b=tcp://127.0.0.1:0')] });
    expect(b.reload()).toEqual({ added: ['b'], removed: [], changed: [], grants: [] });
    expect(seen).toEqual(['reloading', 'ERR_FDBROKER_NO_CONFIG', 'reloading', 'reloaded']);
  });
});

describe('reload during a takeover', () => {
  it('is refused (ERR_FDBROKER_UPGRADE_IN_PROGRESS, nothing changes, no fd left): the successor has the listeners as handed; once it gave up, a reload applies', async () => {
    const b = start(['a=tcp://127.0.0.1:0']);
    b.reloadSource = () => ({ listeners: [spec('b=tcp://127.0.0.1:0')] });
    const seen: string[] = [];
    b.on('reloadFailed', (e) => seen.push((e as FdbrokerError).code));
    const conn = await BrokerConnection.connect(b.controlPath);
    const { listeners } = await conn.takeover(1, '999.0.0');
    for (const l of listeners) native().close(l.fd);
    const before = fdCount(process.pid);
    expect(() => b.reload()).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_UPGRADE_IN_PROGRESS' }));
    expect(() => b.addNamedListener(spec('c=tcp://127.0.0.1:0'))).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_UPGRADE_IN_PROGRESS' }));
    expect(() => b.removeNamedListener('a')).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_UPGRADE_IN_PROGRESS' }));
    // `fdbroker reload` (the request) is refused the same way.
    const other = await BrokerConnection.connect(b.controlPath);
    await expect(other.reload()).rejects.toMatchObject({ code: 'ERR_FDBROKER_UPGRADE_IN_PROGRESS' });
    other.close();
    expect(b.listenerInfos().map((l) => l.name)).toEqual(['a']);
    expect(seen).toEqual(['ERR_FDBROKER_UPGRADE_IN_PROGRESS', 'ERR_FDBROKER_UPGRADE_IN_PROGRESS']);
    await sleep(50);
    expect(fdCount(process.pid)).toBe(before);
    const aborted = new Promise((r) => b.once('takeoverAborted', r));
    conn.close();
    await aborted;
    expect(b.reload()).toEqual({ added: ['b'], removed: ['a'], changed: [], grants: [] });
  });
});
