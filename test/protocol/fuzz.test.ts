// Property-based tests (fast-check): the codec, a real broker and the client
// against random, mutated, oversized, empty and fd-carrying frames. Every run
// is bounded (numRuns, per-case timeouts) and targets 127.0.0.1 and Unix
// sockets in a temp dir only. Failing seeds are printed by fast-check; replay
// one with FDBROKER_FUZZ_SEED=<seed>.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { native, type NativePoller } from '../../src/native/binding';
import { adoptListeners } from '../../src/client/adopt';
import { BrokerConnection } from '../../src/client/connection';
import { ERROR_CODES, FdbrokerError, isBrokerErrorCode } from '../../src/protocol/errors';
import {
  BROKER_MESSAGE_TYPES, CLIENT_MESSAGE_TYPES, decodeBrokerMessage, decodeClientMessage,
} from '../../src/protocol/messages';
import { cleanup, fdCount, get, sleep, startApp, startBroker, tmpDir } from '../helpers';

afterEach(cleanup);

const SEED = process.env.FDBROKER_FUZZ_SEED ? Number(process.env.FDBROKER_FUZZ_SEED) : undefined;
const params = (numRuns: number) => ({ numRuns, ...(SEED !== undefined ? { seed: SEED } : {}) });

const EAGAIN = -11;
const EPERM = -1;
const ECONNRESET = -104;
const EMSGSIZE = -90;

const isStableCode = (code: unknown): boolean => (ERROR_CODES as readonly unknown[]).includes(code);

// ------------------------------------------------------------------ frames

const LISTENER_INFOS = [
  { name: 'http', kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: 8080, backlog: 511 },
  { name: 'admin', kind: 'unix', family: 'unix', path: '/run/admin.sock', backlog: 511 },
  { name: 'stats', kind: 'udp', family: 'IPv6', address: '::', port: 8125 },
];

/** One valid example of every message type in PROTOCOL.md. */
const VALID_CLIENT: Array<Record<string, unknown>> = [
  { type: 'hello', versions: [1], client: 'fuzz/1.0' },
  { type: 'hello', versions: [1, 2, 3] },
  { type: 'adopt', id: 1, names: ['http'] },
  { type: 'adopt', id: 2, names: null },
  { type: 'adopt', id: 3 },
  { type: 'adopt', id: 4, names: [] },
  { type: 'adopt', id: 5, names: ['nope', 'http', 'http'] },
  { type: 'status', id: 6 },
  { type: 'join', id: 7, names: ['http'], label: 'fuzz' },
  { type: 'join', id: 8, names: [] },
  { type: 'ready', id: 9 },
];
const VALID_BROKER: Array<Record<string, unknown>> = [
  { type: 'welcome', version: 1, broker: { pid: 42, software: 'fdbroker/0.1.0' } },
  { type: 'listeners', id: 1, part: 0, last: true, listeners: [LISTENER_INFOS[0]] },
  { type: 'listeners', id: 1, part: 0, last: false, listeners: LISTENER_INFOS, generation: 3 },
  { type: 'listeners', id: 1, part: 1, last: true, listeners: [] },
  {
    type: 'status', id: 2,
    broker: { pid: 42, software: 'fdbroker/0.1.0', protocol: 1, controlPath: '/run/a.sock', startedAt: '2026-01-01T00:00:00.000Z' },
    listeners: LISTENER_INFOS, clients: [], generations: [],
  },
  { type: 'error', code: 'ERR_FDBROKER_PROTOCOL', message: 'bad' },
  { type: 'error', id: 3, code: 'ERR_FDBROKER_UNKNOWN_LISTENER', message: 'no', names: ['x'] },
  { type: 'ack', id: 4 },
  { type: 'retire', generation: 1, by: 2 },
];

const anyType = fc.oneof(
  fc.constantFrom(...CLIENT_MESSAGE_TYPES, ...BROKER_MESSAGE_TYPES),
  fc.string({ maxLength: 12 }),
  fc.jsonValue({ maxDepth: 1 }),
);

/** A JSON value, biased towards the shapes the protocol uses. */
const fieldValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.integer(), fc.double(), fc.constantFrom(-1, 0, 1, 2 ** 53, 2 ** 53 - 1, 1e6, 1e6 + 1, 1e300, -0),
  fc.array(fc.integer({ min: -2, max: 3 }), { maxLength: 20 }),
  fc.array(fc.constantFrom('http', 'admin', 'x'.repeat(129), '', 'a b', '\u00e9', 'ok-name'), { maxLength: 6 }),
  fc.constantFrom(null, undefined, true, false, '', [], {}),
  fc.constant(LISTENER_INFOS),
  fc.array(fc.dictionary(fc.constantFrom('name', 'kind', 'family', 'address', 'port', 'path', 'backlog'), fc.jsonValue({ maxDepth: 1 })), { maxLength: 3 }),
);

type Mutation =
  | { op: 'drop'; key: number }
  | { op: 'set'; key: number; value: unknown }
  | { op: 'add'; key: string; value: unknown }
  | { op: 'type'; value: unknown };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('drop' as const), key: fc.nat() }),
  fc.record({ op: fc.constant('set' as const), key: fc.nat(), value: fieldValue }),
  fc.record({ op: fc.constant('add' as const), key: fc.string({ maxLength: 10 }), value: fieldValue }),
  fc.record({ op: fc.constant('type' as const), value: anyType }),
);

function mutate(base: Record<string, unknown>, ms: Mutation[]): Record<string, unknown> {
  const m: Record<string, unknown> = structuredClone(base);
  for (const mu of ms) {
    const keys = Object.keys(m);
    if (mu.op === 'drop' && keys.length > 0) delete m[keys[mu.key % keys.length]!];
    else if (mu.op === 'set' && keys.length > 0) m[keys[mu.key % keys.length]!] = mu.value;
    else if (mu.op === 'add') m[mu.key] = mu.value;
    else if (mu.op === 'type') m.type = mu.value;
  }
  return m;
}

type ByteEdit = { at: number; kind: 'cut' | 'flip' | 'insert'; bytes: Uint8Array };
const byteEdit: fc.Arbitrary<ByteEdit> = fc.record({
  at: fc.nat(), kind: fc.constantFrom('cut' as const, 'flip' as const, 'insert' as const),
  bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
});

function editBytes(buf: Buffer, edits: ByteEdit[]): Buffer {
  let b = buf;
  for (const e of edits) {
    const at = b.length === 0 ? 0 : e.at % (b.length + 1);
    if (e.kind === 'cut') b = b.subarray(0, at);
    else if (e.kind === 'flip' && b.length > 0) {
      b = Buffer.from(b);
      b[at % b.length] = b[at % b.length]! ^ (e.bytes[0]! || 1);
    } else b = Buffer.concat([b.subarray(0, at), Buffer.from(e.bytes), b.subarray(at)]);
  }
  return b;
}

/** A frame: random bytes, random JSON, or a mutated valid message (as JSON, then maybe byte-edited). */
function frameArb(valid: Array<Record<string, unknown>>): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }).map((u) => Buffer.from(u)) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }).map((s) => Buffer.from(s, 'utf8')) },
    { weight: 2, arbitrary: fc.constantFrom(...valid).map((v) => Buffer.from(JSON.stringify(v))) },
    {
      weight: 5,
      arbitrary: fc.tuple(fc.constantFrom(...valid), fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.array(byteEdit, { maxLength: 2 }))
        .map(([v, ms, edits]) => editBytes(Buffer.from(JSON.stringify(mutate(v, ms)) ?? 'null'), edits)),
    },
  );
}

/** Runs `fn` and classifies: a value, or an FdbrokerError with a stable code; anything else fails. */
function decodeOutcome<T extends { type: string }>(fn: () => T, types: readonly string[]): string {
  const t0 = performance.now();
  let kind: string;
  try {
    const m = fn();
    expect(types).toContain(m.type);
    kind = `ok:${m.type}`;
  } catch (err) {
    if (!(err instanceof FdbrokerError)) throw new Error(`not an FdbrokerError: ${String(err)}`, { cause: err });
    expect(ERROR_CODES).toContain(err.code);
    kind = err.code;
  }
  expect(performance.now() - t0).toBeLessThan(1000);
  return kind;
}

const tally = (t: Record<string, number>, k: string) => { t[k] = (t[k] ?? 0) + 1; };

// ------------------------------------------------------------------ a. codec

describe('codec: every input decodes to a known message type or throws a stable FdbrokerError', () => {
  const fdCounts = fc.integer({ min: 0, max: 3 });

  it('random bytes, random JSON, and mutations of every client and broker message type', () => {
    const outcomes: Record<string, number> = {};
    const client = frameArb(VALID_CLIENT);
    const broker = frameArb(VALID_BROKER);
    const t0 = Date.now();
    fc.assert(fc.property(client, fdCounts, (buf, fds) => {
      const k = decodeOutcome(() => decodeClientMessage(buf, fds), CLIENT_MESSAGE_TYPES);
      if (fds > 0) expect(k).toBe('ERR_FDBROKER_PROTOCOL'); // a client may never send fds
      tally(outcomes, `client ${k}`);
    }), params(4000));
    fc.assert(fc.property(broker, fdCounts, (buf, fds) => {
      let decoded: ReturnType<typeof decodeBrokerMessage> | undefined;
      const k = decodeOutcome(() => (decoded = decodeBrokerMessage(buf, fds)), BROKER_MESSAGE_TYPES);
      if (decoded?.type === 'listeners') expect(decoded.listeners).toHaveLength(fds);
      else if (decoded) expect(fds).toBe(0);
      // A broker's error code is a known one, or kept as sent when shaped like one (a newer broker's).
      if (decoded?.type === 'error') expect(isBrokerErrorCode(decoded.code)).toBe(true);
      tally(outcomes, `broker ${k}`);
    }), params(4000));
    // Every valid example decodes as itself (the mutations start from real messages).
    for (const v of VALID_CLIENT) expect(decodeClientMessage(Buffer.from(JSON.stringify(v)), 0).type).toBe(v.type);
    for (const v of VALID_BROKER) {
      const fds = v.type === 'listeners' ? (v.listeners as unknown[]).length : 0;
      expect(decodeBrokerMessage(Buffer.from(JSON.stringify(v)), fds).type).toBe(v.type);
    }
    console.log(`codec fuzz: 8000 runs in ${Date.now() - t0} ms:`, JSON.stringify(outcomes));
    // The generators reach both sides of the decoders.
    expect(Object.keys(outcomes).some((k) => k.startsWith('client ok:'))).toBe(true);
    expect(Object.keys(outcomes).some((k) => k.startsWith('broker ok:'))).toBe(true);
  }, 60_000);

  it('deeply nested, huge and odd JSON does not hang or escape as another exception', () => {
    const odd = [
      '['.repeat(100_000), '{"type":"hello","versions":' + '['.repeat(5000) + ']'.repeat(5000) + '}',
      JSON.stringify({ type: 'adopt', id: 1, names: Array.from({ length: 5000 }, (_, i) => `n${i}`) }),
      JSON.stringify({ type: 'hello', versions: Array(17).fill(1) }),
      JSON.stringify({ type: 'listeners', id: 1, part: 0, last: true, listeners: Array(300).fill(LISTENER_INFOS[0]) }),
      '{"type":"__proto__","__proto__":{"type":"hello"}}', '{"type":"hello","versions":[1],"constructor":null}',
      '{"type":"status","id":1,"broker":null,"listeners":[],"clients":[],"generations":"x"}',
      '\ufeff{"type":"ack","id":1}', '{"type":"ack","id":1}\u0000', 'x'.repeat(70_000),
    ];
    for (const s of odd) {
      for (let fds = 0; fds <= 3; fds++) {
        decodeOutcome(() => decodeClientMessage(Buffer.from(s), fds), CLIENT_MESSAGE_TYPES);
        decodeOutcome(() => decodeBrokerMessage(Buffer.from(s), fds), BROKER_MESSAGE_TYPES);
      }
    }
  });
});

// ------------------------------------------------------------------ raw sockets

/** A raw SOCK_SEQPACKET client over the native layer. */
class Raw {
  private static readonly buf = Buffer.alloc(256 * 1024);
  private constructor(readonly fd: number) {}

  static async connect(sockPath: string): Promise<Raw> {
    const n = native();
    const fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_SEQPACKET);
    if (fd < 0) throw new Error(`socket: ${fd}`);
    const deadline = Date.now() + 5000;
    for (;;) {
      const r = n.connect(fd, { family: 'unix', path: sockPath });
      if (r === 0) return new Raw(fd);
      if (r !== EAGAIN || Date.now() > deadline) {
        n.close(fd);
        throw new Error(`connect: ${r}`);
      }
      await sleep(5);
    }
  }

  send(payload: Buffer, fds: number[] = []): number { return native().sendmsg(this.fd, payload, fds); }

  /** Messages until the peer hangs up, or until `idleMs` pass without one. */
  async readAll(idleMs: number, maxMs = 5000): Promise<{ replies: Array<{ payload: Buffer; fds: number }>; end: string }> {
    const n = native();
    const replies: Array<{ payload: Buffer; fds: number }> = [];
    const hardDeadline = Date.now() + maxMs;
    let idleDeadline = Date.now() + idleMs;
    for (;;) {
      const r = n.recvmsg(this.fd, Raw.buf, 253);
      if (typeof r === 'number') {
        if (r === EAGAIN) {
          if (Date.now() > idleDeadline || Date.now() > hardDeadline) return { replies, end: 'open' };
          await sleep(5);
          continue;
        }
        return { replies, end: r === ECONNRESET ? 'ECONNRESET' : `errno ${r}` };
      }
      for (const fd of r.fds) n.close(fd);
      if (r.truncated) return { replies, end: 'truncated' };
      if (r.bytes === 0 && r.fds.length === 0) return { replies, end: 'eof' };
      replies.push({ payload: Buffer.from(Raw.buf.subarray(0, r.bytes)), fds: r.fds.length });
      idleDeadline = Date.now() + idleMs;
    }
  }

  close(): void { native().close(this.fd); }
}

/** The fd count of `pid` once it has stopped changing. */
async function quietFdCount(pid: number, want?: number, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = fdCount(pid);
  let same = 0;
  while ((same < 8 || (want !== undefined && last !== want)) && Date.now() < deadline) {
    await sleep(25);
    const v = fdCount(pid);
    same = v === last ? same + 1 : 0;
    last = v;
  }
  return last;
}

// ------------------------------------------------------------------ b. broker

/** What one fuzz connection sends: maybe a valid hello first, then frames, some with fds. */
interface BrokerCase {
  hello: boolean;
  frames: Array<{ payload: Buffer; fds: number }>;
}

// Not "pause": this test's client is the broker's owner, so a random pause would hold the listener for 30 s and the
// final adopt check would meet ERR_FDBROKER_PAUSED (pause is tested in test/handover/pause.test.ts).
const CLIENT_VALID_AFTER_HELLO = VALID_CLIENT.filter((m) => m.type !== 'hello' && m.type !== 'pause');

const brokerFrame: fc.Arbitrary<{ payload: Buffer; fds: number }> = fc.record({
  payload: fc.oneof(
    { weight: 12, arbitrary: frameArb(VALID_CLIENT) },
    { weight: 3, arbitrary: fc.constantFrom(...CLIENT_VALID_AFTER_HELLO).map((v) => Buffer.from(JSON.stringify(v))) },
    { weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) },
    // Over 64 KiB: cut by the broker's kernel (MSG_TRUNC), dropped without a reply.
    { weight: 1, arbitrary: fc.integer({ min: 64 * 1024 + 1, max: 200 * 1024 }).map((len) => Buffer.alloc(len, 0x7b)) },
    { weight: 1, arbitrary: fc.constant(Buffer.from(JSON.stringify({ type: 'status', id: 1, pad: 'x'.repeat(64 * 1024) }))) },
  ),
  fds: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }, { weight: 1, arbitrary: fc.constant(253) }),
});

const brokerCase: fc.Arbitrary<BrokerCase> = fc.record({
  hello: fc.boolean(),
  frames: fc.array(brokerFrame, { minLength: 1, maxLength: 3 }),
});

describe('broker: random and mutated frames over many raw connections', () => {
  it('every connection ends in an error reply with a stable code, valid replies, or a drop; the broker serves on and holds no extra fd', async () => {
    const n = native();
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const baseline = await quietFdCount(broker.pid);
    const devNull = fs.openSync('/dev/null', 'r');
    const sendFds = Array.from({ length: 253 }, () => n.dup(devNull));
    const outcomes: Record<string, number> = {};
    const sendResults: Record<string, number> = {};
    let frames = 0;
    let connections = 0;
    const t0 = Date.now();

    const runCase = async (c: BrokerCase): Promise<void> => {
      connections++;
      const raw = await Raw.connect(broker.sock);
      let delivered = 0;
      try {
        if (c.hello) expect(raw.send(Buffer.from(JSON.stringify({ type: 'hello', versions: [1] })))).toBeGreaterThan(0);
        for (const f of c.frames) {
          frames++;
          const r = raw.send(f.payload, sendFds.slice(0, f.fds));
          if (r >= 0) delivered++;
          const k = r >= 0 ? (f.fds > 0 ? 'sent-with-fds' : 'sent') : r === EPERM ? 'EPERM (SO_PASSRIGHTS)' : r === EMSGSIZE ? 'EMSGSIZE' : `errno ${r}`;
          tally(sendResults, k);
          // Linux >= 6.16: the broker turned SO_PASSRIGHTS off, no fd reaches it.
          if (f.fds > 0) expect(r === EPERM || r === -32 /* EPIPE */ || r === ECONNRESET || r === -11 /* EAGAIN: the socket buffer is full */, `sendmsg with fds: ${r}`).toBe(true);
          else expect(r === f.payload.length || r === EMSGSIZE || r === -32 || r === ECONNRESET || r === EAGAIN, `sendmsg: ${r}`).toBe(true);
        }
        const { replies, end } = await raw.readAll(150);
        let sawFatal = false;
        for (const rep of replies) {
          const msg = decodeBrokerMessage(rep.payload, rep.fds); // throws (fails the test) on an invalid reply
          expect(BROKER_MESSAGE_TYPES).toContain(msg.type);
          if (msg.type === 'error') {
            expect(isStableCode(msg.code), `unstable code ${msg.code}`).toBe(true);
            tally(outcomes, `error ${msg.code}`);
            if (msg.id === undefined) sawFatal = true;
          } else tally(outcomes, `reply ${msg.type}`);
        }
        // An error without an id closes the connection.
        if (sawFatal) expect(['eof', 'ECONNRESET']).toContain(end);
        // Whatever reached the broker was answered or got the connection dropped.
        // (Only a connection where nothing arrived - every send refused - may
        // still be waiting, for its hello, when the read stops.)
        expect(['eof', 'ECONNRESET', 'open']).toContain(end);
        if (c.hello || delivered > 0) expect(replies.length > 0 || end !== 'open', 'a delivered frame got neither a reply nor a drop').toBe(true);
        tally(outcomes, `end ${end}${replies.length === 0 ? (delivered === 0 && !c.hello ? ' (nothing delivered)' : ' (no reply)') : ''}`);
      } finally {
        raw.close();
      }
    };

    // 600 connections in batches of 12 (well under the per-uid client limit).
    const cases = fc.sample(brokerCase, { numRuns: 600, ...(SEED !== undefined ? { seed: SEED } : {}) });
    for (let i = 0; i < cases.length; i += 12) {
      await Promise.all(cases.slice(i, i + 12).map(runCase));
    }
    const elapsed = Date.now() - t0;
    for (const fd of sendFds) n.close(fd);
    fs.closeSync(devNull);
    console.log(`broker fuzz: ${connections} connections, ${frames} frames in ${elapsed} ms; sends ${JSON.stringify(sendResults)}; outcomes ${JSON.stringify(outcomes)}`);
    expect(elapsed).toBeLessThan(45_000);

    // The broker is alive, holds what it held before, and still hands out a working listener.
    expect(() => process.kill(broker.pid, 0)).not.toThrow();
    expect(await quietFdCount(broker.pid, baseline)).toBe(baseline);
    const ls = await adoptListeners(broker.sock, { names: ['http'], timeout: 5000 });
    const server = http.createServer((_req, res) => res.end('fuzz ok\n'));
    await new Promise<void>((resolve) => ls.http!.attach(server, () => resolve()));
    try {
      expect(await get(broker.ports.http!)).toEqual({ status: 200, body: 'fuzz ok\n' });
    } finally {
      await new Promise((r) => server.close(r));
    }
    const app = await startApp(broker.sock);
    const deadline = Date.now() + 5000;
    let res = await get(broker.ports.http!);
    while (res.body !== `${app.pid} ok\n` && Date.now() < deadline) res = await get(broker.ports.http!);
    expect(res).toEqual({ status: 200, body: `${app.pid} ok\n` });
  }, 90_000);
});

// ------------------------------------------------------------------ c. client

type FdKind = 'tcp' | 'unix' | 'udp' | 'seqpacket' | 'pipe' | 'devnull';
interface ReplySpec {
  /** What is sent in place of the expected reply. */
  body: 'valid' | 'mutated' | 'random' | 'error' | 'empty' | 'oversize' | 'close' | 'silence';
  mutations: Mutation[];
  raw: Buffer;
  errorCode: string;
  fds: FdKind[];
  /** For listeners: how many parts, and an extra unsolicited message after. */
  parts: number;
  extra: boolean;
}
interface ClientCase {
  api: 'adoptListeners' | 'connect+adopt' | 'connect+join';
  names: string[] | undefined;
  welcome: ReplySpec;
  listeners: ReplySpec;
}

const fdKind = fc.constantFrom<FdKind>('tcp', 'tcp', 'unix', 'udp', 'seqpacket', 'pipe', 'devnull');
const replySpec = (validWeight: number): fc.Arbitrary<ReplySpec> => fc.record({
  body: fc.oneof(
    { weight: validWeight, arbitrary: fc.constant('valid' as const) },
    { weight: 4, arbitrary: fc.constant('mutated' as const) },
    { weight: 1, arbitrary: fc.constantFrom('random' as const, 'error' as const, 'empty' as const, 'oversize' as const, 'close' as const) },
    { weight: 1, arbitrary: fc.constant('error' as const) },
    { weight: 1, arbitrary: fc.constant('silence' as const) },
  ),
  mutations: fc.array(mutation, { minLength: 1, maxLength: 3 }),
  raw: frameArb(VALID_BROKER),
  errorCode: fc.oneof(fc.constantFrom(...ERROR_CODES), fc.string({ maxLength: 10 })),
  fds: fc.oneof({ weight: 3, arbitrary: fc.array(fdKind, { maxLength: 3 }) }, { weight: 1, arbitrary: fc.constant<FdKind[]>([]) }),
  parts: fc.integer({ min: 1, max: 3 }),
  extra: fc.boolean(),
});
const clientCase: fc.Arbitrary<ClientCase> = fc.record({
  api: fc.constantFrom('adoptListeners' as const, 'connect+adopt' as const, 'connect+join' as const),
  names: fc.constantFrom(undefined, ['http'], ['http', 'admin'], []),
  welcome: replySpec(8),
  listeners: replySpec(4),
});

/** A fake broker: a SOCK_SEQPACKET listener in this process that answers with what a case says. */
class FakeBroker {
  readonly path: string;
  private readonly lfd: number;
  private readonly poller: NativePoller;
  private conns = new Map<number, NativePoller>();
  private script: ClientCase | undefined;
  /** Listening sockets and other fds to attach, by kind (owned here). */
  readonly fdsByKind: Record<FdKind, number>;
  readonly tcpPort: number;
  readonly unixPath: string;

  constructor(dir: string) {
    const n = native();
    const c = n.constants;
    this.path = path.join(dir, 'fake.sock');
    this.lfd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
    expect(n.bind(this.lfd, { family: 'unix', path: this.path })).toBe(0);
    expect(n.listen(this.lfd, 64)).toBe(0);
    const tcp = n.socket(c.AF_INET, c.SOCK_STREAM);
    expect(n.bind(tcp, { family: 'inet', address: '127.0.0.1', port: 0 })).toBe(0);
    expect(n.listen(tcp, 511)).toBe(0);
    this.tcpPort = (n.sockname(tcp) as { port: number }).port;
    this.unixPath = path.join(dir, 'u.sock');
    const unix = n.socket(c.AF_UNIX, c.SOCK_STREAM);
    expect(n.bind(unix, { family: 'unix', path: this.unixPath })).toBe(0);
    expect(n.listen(unix, 511)).toBe(0);
    const udp = n.socket(c.AF_INET, c.SOCK_DGRAM);
    expect(n.bind(udp, { family: 'inet', address: '127.0.0.1', port: 0 })).toBe(0);
    const seq = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const pipe = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    const devnull = fs.openSync('/dev/null', 'r');
    this.fdsByKind = { tcp, unix, udp, seqpacket: seq, pipe, devnull };
    this.poller = new (n.Poller)(this.lfd, () => this.accept());
    this.poller.start(c.UV_READABLE);
  }

  setScript(s: ClientCase): void { this.script = s; }

  private accept(): void {
    const n = native();
    for (;;) {
      const fd = n.accept(this.lfd);
      if (fd < 0) return;
      const p = new (n.Poller)(fd, () => this.onReadable(fd));
      this.conns.set(fd, p);
      p.start(n.constants.UV_READABLE);
    }
  }

  private drop(fd: number): void {
    const p = this.conns.get(fd);
    if (!p) return;
    this.conns.delete(fd);
    p.close();
    native().close(fd);
  }

  private onReadable(fd: number): void {
    const n = native();
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const r = n.recvmsg(fd, buf, 0);
      if (typeof r === 'number') {
        if (r !== EAGAIN) this.drop(fd);
        return;
      }
      if (r.bytes === 0 && r.fds.length === 0) {
        this.drop(fd);
        return;
      }
      for (const f of r.fds) n.close(f);
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(buf.subarray(0, r.bytes).toString('utf8')) as Record<string, unknown>;
      } catch {
        this.drop(fd);
        return;
      }
      const s = this.script!;
      if (msg.type === 'hello') this.answer(fd, s.welcome, () => VALID_BROKER[0]!, 0);
      else if (msg.type === 'adopt' || msg.type === 'join') this.answer(fd, s.listeners, (part, last) => this.listenersMsg(msg, part, last), Number(msg.id));
      else this.drop(fd);
      if (!this.conns.has(fd)) return;
    }
  }

  private listenersMsg(req: Record<string, unknown>, part: number, last: boolean): Record<string, unknown> {
    const infos = [
      { name: 'http', kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: this.tcpPort, backlog: 511 },
      { name: 'admin', kind: 'unix', family: 'unix', path: this.unixPath, backlog: 511 },
    ];
    const names = req.names as string[] | null | undefined;
    const chosen = part === 0 ? infos.filter((i) => !names || names.includes(i.name)) : [];
    return {
      type: 'listeners', id: req.id, part, last, listeners: chosen,
      ...(req.type === 'join' ? { generation: 1 } : {}),
    };
  }

  private answer(fd: number, spec: ReplySpec, valid: (part: number, last: boolean) => Record<string, unknown>, id: number): void {
    const n = native();
    const send = (payload: Buffer, fds: number[]) => {
      const r = n.sendmsg(fd, payload, fds);
      if (r < 0 && r !== EMSGSIZE) this.drop(fd);
    };
    const fdsFor = (m: Record<string, unknown>): number[] => {
      // A valid listeners message carries the matching fds; otherwise the spec's.
      if (spec.body === 'valid' && m.type === 'listeners') {
        return (m.listeners as Array<{ kind: string }>).map((l) => this.fdsByKind[l.kind as FdKind]);
      }
      return spec.fds.map((k) => this.fdsByKind[k]);
    };
    switch (spec.body) {
      case 'silence': return;
      case 'close': this.drop(fd); return;
      case 'empty': send(Buffer.alloc(0), spec.fds.map((k) => this.fdsByKind[k])); return;
      case 'oversize': send(Buffer.alloc(70_000, 0x20), spec.fds.map((k) => this.fdsByKind[k])); return;
      case 'random': send(spec.raw.length > 0 ? spec.raw : Buffer.from('x'), spec.fds.map((k) => this.fdsByKind[k])); return;
      case 'error':
        send(Buffer.from(JSON.stringify({ type: 'error', id, code: spec.errorCode, message: 'fuzz' })), spec.fds.map((k) => this.fdsByKind[k]));
        return;
      case 'mutated': {
        const m = mutate(valid(0, true), spec.mutations);
        send(Buffer.from(JSON.stringify(m) ?? 'null'), fdsFor(m));
        return;
      }
      case 'valid': {
        const parts = valid(0, true).type === 'listeners' ? spec.parts : 1;
        for (let p = 0; p < parts && this.conns.has(fd); p++) {
          const m = valid(p, p === parts - 1);
          send(Buffer.from(JSON.stringify(m)), fdsFor(m));
        }
        if (spec.extra && this.conns.has(fd)) send(Buffer.from(JSON.stringify({ type: 'ack', id: 999 })), []);
      }
    }
  }

  /** Closes every accepted connection (the client's side of a case is over). */
  dropAll(): void { for (const fd of [...this.conns.keys()]) this.drop(fd); }

  close(): void {
    this.dropAll();
    this.poller.close();
    const n = native();
    n.close(this.lfd);
    for (const fd of Object.values(this.fdsByKind)) n.close(fd);
  }
}

describe('client: BrokerConnection and adoptListeners against a fake broker answering with random frames and fds', () => {
  it('always rejects with a stable code (or a system error) or resolves with valid listeners; every received fd is closed', async () => {
    const fake = new FakeBroker(tmpDir());
    const outcomes: Record<string, number> = {};
    const t0 = Date.now();
    // Let the first connection set up anything lazy (shared receive buffers) before the baseline.
    fake.setScript(fc.sample(clientCase, { numRuns: 1, seed: 1 })[0]!);
    await adoptListeners(fake.path, { timeout: 300 }).then((ls) => { for (const l of Object.values(ls)) l.close(); }, () => {});
    fake.dropAll();
    await sleep(20);
    const baseline = fdCount(process.pid);

    const runCase = async (c: ClientCase): Promise<void> => {
      fake.setScript(c);
      const timeout = 400;
      let result: string;
      try {
        let fds: number[] = [];
        if (c.api === 'adoptListeners') {
          const ls = await adoptListeners(fake.path, { timeout, ...(c.names ? { names: c.names } : {}) });
          for (const [name, l] of Object.entries(ls)) {
            expect(l.name).toBe(name);
            expect(['tcp', 'unix', 'udp']).toContain(l.kind);
            fds.push(l.fd);
          }
          for (const l of Object.values(ls)) {
            const n = native();
            expect(n.getsockoptInt(l.fd, n.constants.SOL_SOCKET, n.constants.SO_ACCEPTCONN)).toEqual({ value: 1 });
            l.close();
          }
          result = `resolved ${Object.keys(ls).length} listeners`;
        } else {
          const conn = await BrokerConnection.connect(fake.path, { timeout });
          try {
            const got = c.api === 'connect+adopt'
              ? await conn.adopt(c.names, timeout)
              : (await conn.join(c.names, { label: 'fuzz', timeout })).listeners;
            fds = got.map((g) => g.fd);
            for (const g of got) expect(g.fd).toBeGreaterThanOrEqual(0);
            result = `resolved ${got.length} fds`;
          } finally {
            conn.close();
          }
          for (const fd of fds) native().close(fd);
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (err instanceof FdbrokerError) {
          expect(isBrokerErrorCode(err.code)).toBe(true);
          result = err.code;
        } else {
          // A Node system error: errno, syscall and an E* code.
          expect(typeof e.syscall, String(err)).toBe('string');
          expect(e.code).toMatch(/^E[A-Z]+$/);
          result = `system ${e.code}`;
        }
      }
      tally(outcomes, `${c.api}: ${result}`);
      fake.dropAll();
      // Every fd received on an error path is closed by the library.
      let count = fdCount(process.pid);
      for (let i = 0; i < 20 && count !== baseline; i++) {
        await sleep(10);
        count = fdCount(process.pid);
      }
      expect(count, `fd count after ${JSON.stringify({ ...c, welcome: { ...c.welcome, raw: undefined }, listeners: { ...c.listeners, raw: undefined } })}: ${result}`).toBe(baseline);
    };

    await fc.assert(fc.asyncProperty(clientCase, runCase), params(300));
    fake.close();
    const elapsed = Date.now() - t0;
    console.log(`client fuzz: 300 cases in ${elapsed} ms: ${JSON.stringify(outcomes)}`);
    expect(Object.keys(outcomes).some((k) => k.includes('resolved'))).toBe(true);
    expect(Object.keys(outcomes).some((k) => k.includes('ERR_FDBROKER_'))).toBe(true);
    expect(elapsed).toBeLessThan(60_000);
  }, 90_000);
});
