// Fds in flight are bounded per uid (issue 22, item 4). An fd the broker sent
// and the client has not received counts against the broker's user in the
// kernel; past the broker's RLIMIT_NOFILE every sendmsg with fds fails
// (ETOOMANYREFS) for every client, the owner's own deploys included. So a
// granted uid other than the broker's and root may have at most
// maxFdsInFlightPerUid fds in unread handouts, a client that sits on a
// handout is dropped after unreadHandoutTimeoutMs, and ETOOMANYREFS is named
// and printed even with --quiet.
//
// The broker runs as uid 65533 (root is exempt from the kernel's limit) with
// RLIMIT_NOFILE 256 (prlimit) and 40 listeners; uid 65534, granted, opens 10
// connections that each ask for every listener and never read (400 fds).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker';
import { parseListenerSpec } from '../../src/broker/spec';
import { systemError } from '../../src/protocol/errors';
import { cleanup, Raw, run, sleep, tmpDir, waitText, type Proc } from '../helpers';
import { NOBODY, sharedCopy, SYSTEM_PYTHON, type SharedCopy } from '../other-user';
import { describeWith, root, setpriv, tool } from '../requirements';

afterEach(cleanup);

const OWNER = NOBODY - 1;
const LISTENERS = 40;
const NOFILE = 256;
const HOSTILE_CONNECTIONS = 10;
const HELLO = { type: 'hello', versions: [1] };

let shared: SharedCopy;
beforeAll(() => { shared = sharedCopy(); });
afterAll(() => shared?.remove());

// Opens N connections, each: hello, adopt every listener; reads nothing. Prints "held N", then waits.
const HOSTILE = String.raw`
import json, socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
conns = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    s.send(json.dumps({"type": "hello", "versions": [1]}).encode())
    s.send(json.dumps({"type": "adopt", "id": 1, "names": None}).encode())
    conns.append(s)
print("held", n, flush=True)
time.sleep(600)
`;

/** `fdbroker serve` as uid 65533 with RLIMIT_NOFILE 256, 40 listeners, uid 65534 granted. */
async function ownerBroker(extra: string[]): Promise<{ proc: Proc; sock: string; dir: string }> {
  const dir = tmpDir();
  fs.chmodSync(dir, 0o711);
  const own = path.join(dir, 'own');
  fs.mkdirSync(own, { mode: 0o755 });
  fs.chownSync(own, OWNER, OWNER);
  const sock = path.join(own, 'b.sock');
  const listen = Array.from({ length: LISTENERS }, (_, i) => ['--listen', `l${i}=tcp://127.0.0.1:0`]).flat();
  const proc = run('prlimit', [`--nofile=${NOFILE}:${NOFILE}`, 'setpriv', `--reuid=${OWNER}`, `--regid=${OWNER}`, '--clear-groups',
    process.execPath, shared.cli, 'serve', sock, '--mode', '0666', '--allow-uid', String(NOBODY), '--no-inherit', ...listen, ...extra],
  { cwd: shared.root });
  await proc.waitFor(/^fdbroker: ready on /m, 15_000);
  const script = path.join(dir, 'hostile.py');
  fs.writeFileSync(script, HOSTILE, { mode: 0o644 });
  return { proc, sock, dir };
}

function hostile(dir: string, sock: string): Proc {
  return run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', SYSTEM_PYTHON, path.join(dir, 'hostile.py'), sock, String(HOSTILE_CONNECTIONS)]);
}

/** The owner (uid 65533) adopts every listener with the library: {ok, names} or {code}. */
async function ownerAdopts(sock: string): Promise<{ ok?: boolean; names?: string[]; code?: string; message?: string }> {
  const p = run('setpriv', [`--reuid=${OWNER}`, `--regid=${OWNER}`, '--clear-groups', process.execPath,
    path.join(shared.fixtures, 'sec-client.js'), sock, 'adopt'], { cwd: shared.root });
  await p.exited;
  return JSON.parse(p.stdout().trim().split('\n')[0]!);
}

describeWith([root('to run the broker and clients as other uids'), setpriv(),
  tool('prlimit', ['--version'], 'prlimit (util-linux)', 'apt-get install util-linux')], 'fds in flight per uid', () => {
  it(`uid 65534 sitting on ${HOSTILE_CONNECTIONS} unread handouts of ${LISTENERS} listeners cannot stop the owner's adopt (broker RLIMIT_NOFILE ${NOFILE})`, async () => {
    const { proc, sock, dir } = await ownerBroker([]);
    const h = hostile(dir, sock);
    await h.waitFor(/^held/m);
    // The ones over the cap are refused, named for what they are.
    await waitText(proc.stdout, new RegExp(`uid=${NOBODY} .*result=ERR_FDBROKER_UNREAD_REPLY$`, 'm'));
    const r = await ownerAdopts(sock);
    expect(r, JSON.stringify(r)).toMatchObject({ ok: true });
    expect(r.names).toHaveLength(LISTENERS);
    expect(proc.stderr()).not.toMatch(/ETOOMANYREFS|Unknown system error/);
  }, 60_000);

  it('with the cap lifted, ETOOMANYREFS is named and printed even with --quiet', async () => {
    const { proc, sock, dir } = await ownerBroker(['--quiet', '--max-fds-in-flight-per-uid', '100000']);
    const h = hostile(dir, sock);
    await h.waitFor(/^held/m);
    await sleep(300);
    const r = await ownerAdopts(sock);
    expect(r.ok).toBeUndefined();
    await waitText(proc.stderr, /^fdbroker: warning: .*ETOOMANYREFS/m);
    expect(proc.stderr()).not.toMatch(/Unknown system error/);
  }, 60_000);
});

it('ETOOMANYREFS is named (Node\'s own table has no name for it)', () => {
  expect(systemError(-109, 'sendmsg').code).toBe('ETOOMANYREFS');
});

describeWith([root('to run a client as uid 65534'), setpriv()], 'unread handouts', () => {
  it('a client of a granted uid that does not read its handout within unreadHandoutTimeoutMs is dropped; one that reads stays', async () => {
    const dir = tmpDir();
    fs.chmodSync(dir, 0o711);
    const sock = path.join(dir, 'b.sock');
    const broker = Broker.start({
      controlPath: sock, mode: 0o666, inherit: false, unreadHandoutTimeoutMs: 400, access: { allowUids: [NOBODY] },
      listeners: [parseListenerSpec('http=tcp://127.0.0.1:0')],
    });
    const dropped: Array<[number, string]> = [];
    broker.on('clientError', (c, err) => dropped.push([c.uid, (err as { code?: string }).code ?? '']));
    try {
      fs.writeFileSync(path.join(dir, 'hostile.py'), HOSTILE, { mode: 0o644 });
      const slow = run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', SYSTEM_PYTHON, path.join(dir, 'hostile.py'), sock, '1']);
      await slow.waitFor(/^held/m);
      const reader = await Raw.connect(sock);
      reader.send(HELLO);
      expect((await reader.next())?.msg.type).toBe('welcome');
      reader.send({ type: 'adopt', id: 1, names: ['http'] });
      expect(await reader.next()).toMatchObject({ msg: { type: 'listeners' }, fds: 1 });
      await sleep(1200);
      expect(dropped).toEqual([[NOBODY, 'ERR_FDBROKER_TIMEOUT']]);
      expect(broker.clientCount).toBe(1); // the reader stays
      reader.close();
    } finally {
      broker.close();
    }
  });
});
