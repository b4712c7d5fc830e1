// The fd store goes only to a receiver the broker can trust (issue 22, item
// 3): an abstract NOTIFY_SOCKET name can be bound by any user in the network
// namespace, so `fdbroker serve` attaches no fd to it unless told
// (--notify-abstract-fdstore); a path socket must belong to root or to the
// broker's uid. Plain notifications (READY=1, STATUS=) still go out.
//
// The receiver is Python as uid 65534 (setpriv), which binds the name first
// and reports every datagram with the number of fds that came with it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { cleanup, CLI, run, tmpDir, type Proc } from '../helpers';
import { NOBODY, SYSTEM_PYTHON } from '../other-user';
import { describeWith, root, setpriv } from '../requirements';

afterEach(cleanup);

const RECEIVER = String.raw`
import array, json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
addr = sys.argv[1]
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
print(json.dumps({"bound": True}), flush=True)
while True:
    msg, anc, flags, _ = s.recvmsg(4096, socket.CMSG_SPACE(64 * 4))
    fds = array.array("i")
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    print(json.dumps({"text": msg.decode(), "fds": len(fds)}), flush=True)
`;

interface Datagram { text: string; fds: number }

/** Starts the receiver as `uid` at `address` (a path or @name). */
async function receiver(dir: string, address: string, uid: number): Promise<{ proc: Proc; got: () => Datagram[] }> {
  const script = path.join(dir, 'rx.py');
  fs.writeFileSync(script, RECEIVER, { mode: 0o644 });
  const proc = uid === 0 ? run(SYSTEM_PYTHON, [script, address])
    : run('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', SYSTEM_PYTHON, script, address]);
  await proc.waitFor(/"bound"/);
  const got = () => proc.stdout().split('\n').filter((l) => l.includes('"text"')).map((l) => JSON.parse(l) as Datagram);
  return { proc, got };
}

/** Runs a broker with NOTIFY_SOCKET=`notify` until READY=1 reached the receiver, then stops it. */
async function serveUnder(notify: string, rx: { got: () => Datagram[] }, extra: string[] = []): Promise<{ stderr: string; got: Datagram[] }> {
  const broker = run(process.execPath, [CLI, 'serve', path.join(tmpDir(), 'ctl.sock'), '--listen', 'http=tcp://127.0.0.1:0', '--no-inherit', ...extra],
    { env: { ...process.env, NOTIFY_SOCKET: notify } });
  await broker.waitFor(/^fdbroker: ready on /m, 10_000);
  const t0 = Date.now();
  while (!rx.got().some((d) => d.text.startsWith('READY=1')) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
  broker.kill('SIGTERM');
  await broker.exited;
  return { stderr: broker.stderr(), got: rx.got() };
}

describeWith([root('to run the receiver as uid 65534'), setpriv()], 'fd store receivers', () => {
  it('an abstract NOTIFY_SOCKET bound by uid 65534 gets READY=1 but no listener; --notify-abstract-fdstore sends them (unsafe, explicit)', async () => {
    const dir = tmpDir();
    fs.chmodSync(dir, 0o711); // lets uid 65534 read its script
    const name = `@fdbroker-squat-${process.pid}-${Date.now()}`;
    const rx = await receiver(dir, name, NOBODY);
    const r = await serveUnder(name, rx);
    expect(r.got.some((d) => d.text.startsWith('READY=1'))).toBe(true);
    expect(r.got.reduce((n, d) => n + d.fds, 0)).toBe(0);
    expect(r.got.some((d) => d.text.includes('FDSTORE=1'))).toBe(false);
    expect(r.stderr).toMatch(/warning: .*abstract.*--notify-abstract-fdstore/);
    rx.proc.kill('SIGKILL');
    await rx.proc.exited;

    const name2 = `${name}-2`;
    const rx2 = await receiver(dir, name2, NOBODY);
    const r2 = await serveUnder(name2, rx2, ['--notify-abstract-fdstore']);
    expect(r2.got.find((d) => d.text.includes('FDSTORE=1\nFDNAME=http'))?.fds).toBe(1);
    rx2.proc.kill('SIGKILL');
  });

  it('a path NOTIFY_SOCKET owned by uid 65534 gets no listener; one owned by root gets each listener', async () => {
    const dir = tmpDir();
    fs.chmodSync(dir, 0o777); // lets uid 65534 bind in it
    const theirs = path.join(dir, 'theirs.notify');
    const rx = await receiver(dir, theirs, NOBODY);
    expect(fs.statSync(theirs).uid).toBe(NOBODY);
    const r = await serveUnder(theirs, rx);
    expect(r.got.some((d) => d.text.startsWith('READY=1'))).toBe(true);
    expect(r.got.reduce((n, d) => n + d.fds, 0)).toBe(0);
    expect(r.stderr).toMatch(/warning: .*belongs to uid 65534/);
    rx.proc.kill('SIGKILL');

    const ours = path.join(dir, 'ours.notify');
    const rx2 = await receiver(dir, ours, 0);
    const r2 = await serveUnder(ours, rx2);
    expect(r2.got.find((d) => d.text.includes('FDSTORE=1\nFDNAME=http'))?.fds).toBe(1);
    expect(r2.stderr).not.toMatch(/warning/);
    rx2.proc.kill('SIGKILL');
  });
});
