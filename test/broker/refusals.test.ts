// Refusals cost almost nothing (issue 22, item 2): a peer with no grant is
// refused at accept, before a channel or session exists, still told why
// (ERR_FDBROKER_ACCESS_DENIED); and a flood of refusals gives a few events
// and log lines, not one per connection: the first of a uid on its own, the
// rest as one count per interval. (Latency under a flood: bench/refusal-flood.js.)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker';
import type { RefusalSummary } from '../../src/broker/refusal-tally';
import type { AuditEvent } from '../../src/broker/audit';
import { cleanup, CLI, run, sleep, tmpDir, waitText } from '../helpers';
import { NOBODY, SYSTEM_PYTHON } from '../other-user';
import { describeWith, root, setpriv } from '../requirements';

afterEach(cleanup);

const FLOOD = 3000;

// Connects and closes `count` times; on the last connection reads the
// broker's one reply first. Prints "<connected> <last reply>".
const FLOODER = String.raw`
import socket, sys, time
path, count = sys.argv[1], int(sys.argv[2])
ok = 0
reply = ""
for i in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    while True:
        try:
            s.connect(path)
            break
        except BlockingIOError:  # the broker's queue is full: wait a little
            time.sleep(0.001)
    ok += 1
    if i == count - 1:
        reply = s.recv(65536).decode()
    s.close()
print(ok, reply.replace("\n", " "), flush=True)
`;

function flooder(dir: string, sock: string, count: number) {
  const script = path.join(dir, 'flood.py');
  fs.writeFileSync(script, FLOODER, { mode: 0o644 });
  return run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', SYSTEM_PYTHON, script, sock, String(count)]);
}

describeWith([root('to connect as uid 65534'), setpriv()], 'refusals at accept', () => {
  it(`${FLOOD} connections from an ungranted uid: each is told ERR_FDBROKER_ACCESS_DENIED, none becomes a client; one clientError and audit event, the rest counted`, async () => {
    const dir = tmpDir();
    fs.chmodSync(dir, 0o711);
    const sock = path.join(dir, 'ctl.sock');
    const broker = Broker.start({ controlPath: sock, mode: 0o666, inherit: false, refusalSummaryIntervalMs: 300 });
    const errors: string[] = [];
    const audits: AuditEvent[] = [];
    const summaries: RefusalSummary[] = [];
    let connects = 0;
    broker.on('clientError', (_c, err) => errors.push((err as { code?: string }).code ?? err.message));
    broker.on('audit', (e) => audits.push(e));
    broker.on('refusals', (s) => summaries.push(s));
    broker.on('connect', () => connects++);
    try {
      const f = flooder(dir, sock, FLOOD);
      const { code } = await f.exited;
      expect(code, f.stderr()).toBe(0);
      const [ok, reply] = [f.stdout().split(' ')[0], f.stdout().slice(f.stdout().indexOf(' ') + 1)];
      expect(Number(ok)).toBe(FLOOD);
      expect(JSON.parse(reply.trim())).toMatchObject({ type: 'error', code: 'ERR_FDBROKER_ACCESS_DENIED' });
      await sleep(700); // a summary interval or two
      expect(connects).toBe(0);
      expect(broker.clientCount).toBe(0);
      expect(errors).toEqual(['ERR_FDBROKER_ACCESS_DENIED']);
      expect(audits).toMatchObject([{ op: 'connect', uid: NOBODY, result: 'ERR_FDBROKER_ACCESS_DENIED' }]);
      expect(summaries.length).toBeGreaterThan(0);
      expect(summaries.every((s) => s.uid === NOBODY && s.code === 'ERR_FDBROKER_ACCESS_DENIED')).toBe(true);
      expect(summaries.reduce((n, s) => n + s.count, 0)).toBe(FLOOD - 1);
    } finally {
      broker.close();
    }
  }, 60_000);

  it('with --quiet, the CLI prints the first refusal and then one count per uid per interval (not a line per connection)', async () => {
    const dir = tmpDir();
    fs.chmodSync(dir, 0o711);
    const sock = path.join(dir, 'ctl.sock');
    const broker = run(process.execPath, [CLI, 'serve', sock, '--quiet', '--no-inherit', '--mode', '0666', '--listen', 'http=tcp://127.0.0.1:0']);
    await broker.waitFor(/^fdbroker: ready on /m);
    const f = flooder(dir, sock, 500);
    expect((await f.exited).code).toBe(0);
    // The count comes at the end of the interval (REFUSAL_SUMMARY_INTERVAL_MS, 10 s).
    await waitText(broker.stderr, /^fdbroker: refused uid 65534 \(gid 65534\) 499 more times in the last 10 s: ERR_FDBROKER_ACCESS_DENIED/m, 15_000);
    broker.kill('SIGTERM');
    await broker.exited;
    const lines = broker.stderr().split('\n').filter(Boolean);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^fdbroker: client pid \d+ \(uid 65534\): ERR_FDBROKER_ACCESS_DENIED /);
  }, 30_000);
});
