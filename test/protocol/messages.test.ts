// Unit tests of the pure protocol and spec code: codec, chunking, versions, specs.
import { describe, expect, it } from 'vitest';
import {
  chunkListeners, CLIENT_MESSAGE_TYPES, decodeBrokerMessage, decodeClientMessage, encode, encodeHandoff, encodeListeners, encodeStatus, negotiateVersion, type ListenerInfo,
  type StatusMessage,
} from '../../src/protocol/messages';
import type { GenerationInfo } from '../../src/core/generation-info';
import { HandoverStats } from '../../src/metrics/handover-stats';
import { EventEmitter } from 'node:events';
import { parseListenerSpec } from '../../src/broker/spec';
import { MAX_GENERATION, PROTOCOL_FEATURES } from '../../src/protocol/limits';

const buf = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));
const code = (f: () => unknown) => { try { f(); return 'none'; } catch (e) { return (e as { code: string }).code; } };

describe('protocol codec', () => {
  it('round-trips every client message type and rejects the rest with ERR_FDBROKER_PROTOCOL', () => {
    for (const m of [
      { type: 'hello', versions: [1] }, { type: 'adopt', id: 1, names: ['a'] }, { type: 'status', id: 2 },
      { type: 'join', id: 3, names: null, label: 'x' }, { type: 'ready', id: 4 },
    ]) expect(decodeClientMessage(encode(m as never), 0).type).toBe(m.type);
    for (const bad of ['nope', '[]', '1', 'null', '{"type":"welcome","version":1}', '{"type":"hello","versions":[]}',
      '{"type":"adopt","id":-1}', '{"type":"adopt","id":1,"names":["bad name"]}', '{"type":"status"}']) {
      expect(code(() => decodeClientMessage(buf(bad), 0))).toBe('ERR_FDBROKER_PROTOCOL');
    }
  });

  it('fds are a protocol error on every client message, and on broker messages other than listeners', () => {
    expect(code(() => decodeClientMessage(buf({ type: 'hello', versions: [1] }), 1))).toBe('ERR_FDBROKER_PROTOCOL');
    expect(code(() => decodeBrokerMessage(buf({ type: 'ack', id: 1 }), 1))).toBe('ERR_FDBROKER_PROTOCOL');
    const l: ListenerInfo = { name: 'a', kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: 1 };
    expect(decodeBrokerMessage(buf({ type: 'listeners', id: 1, part: 0, last: true, listeners: [l] }), 1).type).toBe('listeners');
    // The count of fds must match the count of listeners announced.
    expect(code(() => decodeBrokerMessage(buf({ type: 'listeners', id: 1, part: 0, last: true, listeners: [l] }), 2))).toBe('ERR_FDBROKER_PROTOCOL');
  });

  it('takeover messages: takeover and committed from a client, handoff and moved from a broker, none with fds', () => {
    expect(decodeClientMessage(encode({ type: 'takeover', id: 1, protocol: 1, software: '0.1.0' }), 0)).toEqual({ type: 'takeover', id: 1, protocol: 1, software: '0.1.0' });
    expect(decodeClientMessage(encode({ type: 'committed', id: 1 }), 0)).toEqual({ type: 'committed', id: 1 });
    for (const bad of ['{"type":"takeover","id":1,"protocol":0,"software":"1"}', '{"type":"takeover","id":1,"protocol":1}', '{"type":"committed"}']) {
      expect(code(() => decodeClientMessage(buf(bad), 0))).toBe('ERR_FDBROKER_PROTOCOL');
    }
    expect(code(() => decodeClientMessage(encode({ type: 'takeover', id: 1, protocol: 1, software: '0.1.0' }), 1))).toBe('ERR_FDBROKER_PROTOCOL');
    const h = { type: 'handoff', id: 1, part: 0, last: true, broker: { pid: 1, software: '0.1.0', protocol: 1, startedAt: '' }, options: {}, nextGeneration: 1, generations: [] };
    expect(decodeBrokerMessage(buf(h), 0).type).toBe('handoff');
    expect(code(() => decodeBrokerMessage(buf(h), 1))).toBe('ERR_FDBROKER_PROTOCOL');
    expect(code(() => decodeBrokerMessage(buf({ ...h, generations: [{ number: 0 }] }), 0))).toBe('ERR_FDBROKER_PROTOCOL');
    expect(decodeBrokerMessage(buf({ type: 'moved', generation: 2, to: 9 }), 0)).toEqual({ type: 'moved', generation: 2, to: 9 });
    expect(code(() => decodeBrokerMessage(buf({ type: 'moved', generation: 2, to: 9 }), 1))).toBe('ERR_FDBROKER_PROTOCOL');
  });

  it('a handoff with more generations than fit 64 KiB comes in parts that add up', () => {
    const gens: GenerationInfo[] = Array.from({ length: 600 }, (_, i) => ({
      number: i + 1, clientId: i, pid: 1000 + i, uid: 0, label: 'x'.repeat(200), state: 'ready', adopted: ['http'],
      joinedAt: new Date(0).toISOString(), standbyMs: 0, readyOverdue: false, retireOverdue: false,
    }));
    const parts = encodeHandoff({ type: 'handoff', id: 3, broker: { pid: 1, software: '0.1.0', protocol: 1, startedAt: '' }, options: { standbyMs: 5 }, nextGeneration: 601, generations: gens });
    expect(parts.length).toBeGreaterThan(1);
    const decoded = parts.map((p) => decodeBrokerMessage(p, 0) as Extract<ReturnType<typeof decodeBrokerMessage>, { type: 'handoff' }>);
    expect(parts.every((p) => p.length <= 64 * 1024)).toBe(true);
    expect(decoded.map((d) => d.part)).toEqual(decoded.map((_, i) => i));
    expect(decoded.map((d) => d.last)).toEqual(decoded.map((_, i) => i === decoded.length - 1));
    expect(decoded.flatMap((d) => d.generations.map((g) => g.number))).toEqual(gens.map((g) => g.number));
    expect(decoded.every((d) => d.options.standbyMs === 5 && d.nextGeneration === 601)).toBe(true);
  });

  it('refuses to encode a message over 64 KiB', () => {
    expect(code(() => encode({ type: 'hello', versions: [1], client: 'x'.repeat(70_000) }))).toBe('ERR_FDBROKER_MESSAGE_TOO_LARGE');
  });

  it('encodeListeners builds the same message as encode, from cached listener JSON', () => {
    const ls: ListenerInfo[] = [
      { name: 'a', kind: 'tcp', family: 'IPv6', address: '::', port: 80, backlog: 511 },
      { name: 'b"\\', kind: 'unix', family: 'unix', path: '/run/ü.sock' },
    ];
    for (const generation of [undefined, 7]) {
      const fast = encodeListeners(3, 1, true, ls, generation);
      expect(JSON.parse(fast.toString())).toEqual({ type: 'listeners', id: 3, part: 1, last: true, listeners: ls, ...(generation ? { generation } : {}) });
    }
    expect(decodeBrokerMessage(encodeListeners(1, 0, false, []), 0).type).toBe('listeners');
  });

  it('negotiates the highest common version', () => {
    expect(negotiateVersion([1, 2, 3], [1, 2])).toBe(2);
    expect(negotiateVersion([9], [1])).toBeUndefined();
  });

  it('splits listeners into messages of at most 253 fds and 64 KiB', () => {
    const infos: ListenerInfo[] = Array.from({ length: 1024 }, (_, i) => ({ name: `l${i}`, kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: 1000 + i, backlog: 511 }));
    const groups = chunkListeners(infos, 253, 65536);
    expect(groups.flat()).toEqual(infos.map((_, i) => i));
    expect(Math.max(...groups.map((g) => g.length))).toBeLessThanOrEqual(253);
    const long: ListenerInfo[] = Array.from({ length: 300 }, (_, i) => ({ name: `${'n'.repeat(120)}${i}`, kind: 'unix', family: 'unix', path: `/${'p'.repeat(100)}` }));
    for (const g of chunkListeners(long, 253, 65536)) {
      const msg = encode({ type: 'listeners', id: 2 ** 40, part: 999, last: false, listeners: g.map((i) => long[i]!), generation: 2 ** 40 });
      expect(msg.length).toBeLessThanOrEqual(65536);
    }
    expect(chunkListeners([], 253, 65536)).toEqual([[]]);
  });
});

describe('listener specs', () => {
  it('parses tcp, IPv6, unix with mode and backlog, and udp', () => {
    expect(parseListenerSpec('http=tcp://0.0.0.0:8080')).toMatchObject({ name: 'http', kind: 'tcp', host: '0.0.0.0', port: 8080 });
    expect(parseListenerSpec('v6=tcp://[::1]:0?backlog=4096')).toMatchObject({ kind: 'tcp', host: '::1', port: 0, backlog: 4096 });
    expect(parseListenerSpec('u=unix:/run/x.sock?mode=0660')).toMatchObject({ kind: 'unix', path: '/run/x.sock', mode: 0o660 });
    expect(parseListenerSpec('u=unix:rel.sock', '/tmp')).toMatchObject({ path: '/tmp/rel.sock' });
    expect(parseListenerSpec('d=udp://127.0.0.1:53')).toMatchObject({ kind: 'udp', port: 53 });
  });

  it('rejects bad specs with ERR_FDBROKER_INVALID_SPEC', () => {
    for (const bad of ['http', '=tcp://1.2.3.4:1', 'x=tcp://host:1', 'x=tcp://1.2.3.4:65536', 'x=tcp://1.2.3.4', 'x=ftp://1.2.3.4:1',
      'x=tcp://[::1:80', 'x=unix:', 'x=unix:@abstract', 'x=udp://1.2.3.4:1?backlog=1', 'x=tcp://1.2.3.4:1?backlog=0',
      'x=unix:/a?mode=999', `x=unix:/${'a'.repeat(120)}`, 'bad name=tcp://1.2.3.4:1']) {
      expect(code(() => parseListenerSpec(bad))).toBe('ERR_FDBROKER_INVALID_SPEC');
    }
  });
  it('"holding" carries four whole counts and no fds; welcome.features is a list of strings or read as none', () => {
    const h = { type: 'holding', connections: 3, sessions: 0, upgraded: 1, hooked: 2 };
    expect(decodeClientMessage(buf(h), 0)).toEqual(h);
    expect(code(() => decodeClientMessage(buf(h), 1))).toBe('ERR_FDBROKER_PROTOCOL');
    for (const bad of [{ ...h, connections: -1 }, { ...h, hooked: 1.5 }, { ...h, upgraded: '1' }, { type: 'holding' }, { ...h, sessions: 1e9 }]) {
      expect(code(() => decodeClientMessage(buf(bad), 0))).toBe('ERR_FDBROKER_PROTOCOL');
    }
    const welcome = { type: 'welcome', version: 1, broker: { pid: 1, software: 'fdbroker/0' } };
    expect(decodeBrokerMessage(buf({ ...welcome, features: ['holding'] }), 0)).toMatchObject({ features: ['holding'] });
    expect(decodeBrokerMessage(buf(welcome), 0)).not.toHaveProperty('features');
    expect(decodeBrokerMessage(buf({ ...welcome, features: 'holding' }), 0)).not.toHaveProperty('features');
  });
});

describe('encodeStatus', () => {
  it('carries the metrics snapshot once, in part 0, and every part stays within the limit', () => {
    const metrics = new HandoverStats(new EventEmitter()).snapshot();
    const clients = Array.from({ length: 400 }, (_, i) => ({ id: i, pid: 1000 + i, uid: 0, gid: 0, connectedAt: new Date(0).toISOString(), adopted: ['a'.repeat(100)] }));
    const status: StatusMessage = {
      type: 'status', id: 7, broker: { pid: 1, software: 'fdbroker/0', protocol: 1, controlPath: '/x', startedAt: '' },
      listeners: [], clients, generations: [], metrics,
    };
    const limit = 16 * 1024;
    const parts = encodeStatus(status, limit).map((b) => {
      expect(b.length).toBeLessThanOrEqual(limit);
      return JSON.parse(b.toString('utf8')) as StatusMessage;
    });
    expect(parts.length).toBeGreaterThan(1);
    expect(parts[0]!.metrics).toEqual(metrics);
    expect(parts.slice(1).every((p) => p.metrics === undefined)).toBe(true);
    expect(parts.flatMap((p) => p.clients)).toEqual(clients);
    // One message when it fits: metrics included.
    expect(JSON.parse(encodeStatus({ ...status, clients: [] })[0]!.toString('utf8')).metrics).toEqual(metrics);
  });
});

describe('protocol codec: generation numbers, epochs, standby rejoin, leaving (issue 18)', () => {
  const G = MAX_GENERATION;
  it('a generation number above MAX_GENERATION (2^31-1) is a protocol error wherever one travels', () => {
    expect(G).toBe(2 ** 31 - 1);
    const rejoin = (generation: number) => buf({ type: 'rejoin', id: 1, generation, state: 'ready', names: [] });
    expect(decodeClientMessage(rejoin(G), 0)).toMatchObject({ generation: G });
    expect(code(() => decodeClientMessage(rejoin(G + 1), 0))).toBe('ERR_FDBROKER_PROTOCOL');
    expect(code(() => decodeClientMessage(rejoin(2 ** 53 - 1), 0))).toBe('ERR_FDBROKER_PROTOCOL');
    const l: ListenerInfo = { name: 'a', kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: 1 };
    const broker = [
      (n: number) => ({ type: 'listeners', id: 1, part: 0, last: true, listeners: [l], generation: n }),
      (n: number) => ({ type: 'ack', id: 1, generation: n }),
      (n: number) => ({ type: 'ack', id: 1, left: [1, n] }),
      (n: number) => ({ type: 'retire', generation: n, by: 1 }),
      (n: number) => ({ type: 'retire', generation: 1, by: n }),
      (n: number) => ({ type: 'resume', generation: n, failed: 1, reason: 'left' }),
      (n: number) => ({ type: 'resume', generation: 1, failed: n, reason: 'left' }),
      (n: number) => ({ type: 'release', generation: n }),
      (n: number) => ({ type: 'moved', generation: n, to: 1 }),
      (n: number) => ({
        type: 'handoff', id: 1, part: 0, last: true, broker: { pid: 1, software: '0.1.0', protocol: 1, startedAt: 'x' }, options: {},
        nextGeneration: 2, generations: [{ number: n, pid: 1, state: 'ready', adopted: [] }],
      }),
    ];
    for (const make of broker) {
      const ok = make(G);
      const fds = ok.type === 'listeners' ? 1 : 0;
      expect(decodeBrokerMessage(buf(ok), fds).type).toBe(ok.type);
      expect(code(() => decodeBrokerMessage(buf(make(G + 1)), fds)), JSON.stringify(make(G + 1))).toBe('ERR_FDBROKER_PROTOCOL');
    }
  });

  it('rejoin: state "standby" with standbyLeft, and epoch; standbyLeft kept only with standby; bad values refused', () => {
    const r = (extra: Record<string, unknown>) => buf({ type: 'rejoin', id: 1, generation: 4, names: [], ...extra });
    expect(decodeClientMessage(r({ state: 'standby', standbyLeft: 1500, epoch: 3 }), 0)).toMatchObject({ state: 'standby', standbyLeft: 1500, epoch: 3 });
    expect(decodeClientMessage(r({ state: 'ready', standbyLeft: 1500 }), 0)).not.toHaveProperty('standbyLeft');
    expect(decodeClientMessage(r({ state: 'ready' }), 0)).not.toHaveProperty('epoch');
    for (const bad of [{ state: 'standby', standbyLeft: -1 }, { state: 'standby', standbyLeft: 600_001 }, { state: 'ready', epoch: -1 },
      { state: 'ready', epoch: 1.5 }, { state: 'serving' }]) {
      expect(code(() => decodeClientMessage(r(bad), 0)), JSON.stringify(bad)).toBe('ERR_FDBROKER_PROTOCOL');
    }
  });

  it('leaving round-trips; listeners and ack carry epoch; committed ack carries left', () => {
    expect(decodeClientMessage(encode({ type: 'leaving' }), 0)).toEqual({ type: 'leaving' });
    expect(CLIENT_MESSAGE_TYPES).toContain('leaving');
    expect(decodeBrokerMessage(buf({ type: 'ack', id: 1, generation: 2, state: 'ready', epoch: 5 }), 0)).toMatchObject({ epoch: 5 });
    expect(decodeBrokerMessage(buf({ type: 'ack', id: 1, left: [3, 4] }), 0)).toMatchObject({ left: [3, 4] });
    expect(decodeBrokerMessage(buf({ type: 'listeners', id: 1, part: 0, last: true, listeners: [], generation: 2, epoch: 7 }), 0)).toMatchObject({ epoch: 7 });
    for (const bad of [{ type: 'ack', id: 1, epoch: -1 }, { type: 'ack', id: 1, left: 'x' }, { type: 'ack', id: 1, left: [0] },
      { type: 'listeners', id: 1, part: 0, last: true, listeners: [], epoch: 'x' }]) {
      expect(code(() => decodeBrokerMessage(buf(bad), 0)), JSON.stringify(bad)).toBe('ERR_FDBROKER_PROTOCOL');
    }
  });

  it('an error code this version does not know (a newer broker\'s) is kept as sent; one not shaped like a code reads as ERR_FDBROKER_PROTOCOL', () => {
    expect(decodeBrokerMessage(buf({ type: 'error', id: 1, code: 'ERR_FDBROKER_FROM_THE_FUTURE', message: 'x' }), 0)).toMatchObject({ code: 'ERR_FDBROKER_FROM_THE_FUTURE' });
    expect(decodeBrokerMessage(buf({ type: 'error', id: 1, code: 'ERR_FDBROKER_TIMEOUT', message: 'x' }), 0)).toMatchObject({ code: 'ERR_FDBROKER_TIMEOUT' });
    for (const c of ['EACCES', 'ERR_FDBROKER_lower', `ERR_FDBROKER_${'X'.repeat(80)}`]) {
      expect(decodeBrokerMessage(buf({ type: 'error', id: 1, code: c, message: 'x' }), 0)).toMatchObject({ code: 'ERR_FDBROKER_PROTOCOL' });
    }
    // Not a string: a malformed error message.
    expect(code(() => decodeBrokerMessage(buf({ type: 'error', id: 1, code: 42, message: 'x' }), 0))).toBe('ERR_FDBROKER_PROTOCOL');
  });

  it('the features a client checks are in PROTOCOL_FEATURES', () => {
    expect(PROTOCOL_FEATURES).toEqual(expect.arrayContaining(['holding', 'takeover', 'leaving', 'standby-rejoin', 'epoch', 'pause']));
  });

  it('pause: pause, unpause and join.pause from a client; paused and accepting from a broker; bad values refused', () => {
    expect(decodeClientMessage(encode({ type: 'pause', id: 1, names: ['http'], forMs: 5000 }), 0)).toEqual({ type: 'pause', id: 1, names: ['http'], forMs: 5000 });
    expect(decodeClientMessage(buf({ type: 'pause', id: 1 }), 0)).toEqual({ type: 'pause', id: 1, names: null });
    expect(decodeClientMessage(buf({ type: 'unpause', id: 2, names: ['a'], forMs: 3 }), 0)).toEqual({ type: 'unpause', id: 2, names: ['a'] });
    expect(decodeClientMessage(buf({ type: 'join', id: 3, pause: true }), 0)).toMatchObject({ type: 'join', pause: true });
    expect(decodeClientMessage(buf({ type: 'join', id: 3, pause: false }), 0)).not.toHaveProperty('pause');
    for (const bad of [{ type: 'pause', id: 1, forMs: -1 }, { type: 'pause', id: 1, forMs: 1.5 }, { type: 'pause', id: 1, names: ['bad name'] },
      { type: 'unpause' }, { type: 'join', id: 1, pause: 'yes' }]) {
      expect(code(() => decodeClientMessage(buf(bad), 0)), JSON.stringify(bad)).toBe('ERR_FDBROKER_PROTOCOL');
    }
    expect(decodeBrokerMessage(buf({ type: 'accepting', paused: ['http'] }), 0)).toEqual({ type: 'accepting', paused: ['http'] });
    const p = { type: 'paused', id: 4, listeners: [{ name: 'http', since: '2026-01-01T00:00:00.000Z', until: '2026-01-01T00:00:30.000Z' }] };
    expect(decodeBrokerMessage(buf(p), 0)).toEqual(p);
    for (const bad of [{ type: 'accepting' }, { type: 'accepting', paused: [1] }, { type: 'paused', id: 1, listeners: [{ name: 'x' }] },
    ]) {
      expect(code(() => decodeBrokerMessage(buf(bad), 0)), JSON.stringify(bad)).toBe('ERR_FDBROKER_PROTOCOL');
    }
    // Neither carries fds.
    expect(code(() => decodeBrokerMessage(buf({ type: 'accepting', paused: [] }), 1))).toBe('ERR_FDBROKER_PROTOCOL');
  });
});
