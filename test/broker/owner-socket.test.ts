// PATH.owner, the owner's own control socket (broker/owner-socket.ts): 0600
// whatever --mode the shared PATH has, so another uid can neither connect to
// it nor fill its queue; the owner's clients use it (client/control-target.ts),
// through a takeover and after a killed broker. (Latency under a flood on
// PATH: bench/refusal-flood.js.)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { controlTargets } from '../../src/client/control-target';
import { listenerPidAt } from '../../src/broker/control-path';
import { native } from '../../src/native/binding';
import { cleanup, CLI, run, startBroker, statusOf, tmpDir, waitText } from '../helpers';
import { NOBODY, SYSTEM_PYTHON, sharedDir } from '../other-user';
import { describeWith, root, setpriv } from '../requirements';

afterEach(cleanup);

// Connects to argv[1] as this uid; prints "ok" or the errno name.
const CONNECT = String.raw`
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
try:
    s.connect(sys.argv[1])
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
`;

describeWith([root('to connect as uid 65534'), setpriv()], 'PATH.owner', () => {
  it('is a 0600 socket of the broker\'s user beside a 0666 PATH: another uid cannot connect to it, the owner is served through it', async () => {
    const dir = sharedDir();
    const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--mode', '0666', '--quiet']);
    const owner = `${broker.sock}.owner`;
    const st = fs.lstatSync(owner);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(process.geteuid!());
    expect(listenerPidAt(owner)).toBe(broker.pid);

    const script = path.join(dir, 'connect.py');
    fs.writeFileSync(script, CONNECT, { mode: 0o644 });
    const as = async (target: string) => {
      const p = run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', SYSTEM_PYTHON, script, target]);
      await p.exited;
      return p.stdout().trim();
    };
    expect(await as(broker.sock)).toBe('ok'); // the shared path is open to it (and refuses it at accept)
    expect(await as(owner)).toBe('EACCES');

    // With PATH moved away, the owner's status still answers: it goes through PATH.owner.
    fs.renameSync(broker.sock, `${broker.sock}.moved`);
    expect((await statusOf(broker.sock)).broker.pid).toBe(broker.pid);
    fs.renameSync(`${broker.sock}.moved`, broker.sock);

    broker.kill('SIGTERM');
    await broker.exited;
    expect(fs.existsSync(owner)).toBe(false);
    expect(fs.existsSync(broker.sock)).toBe(false);
  });
});

// Connects to argv[1]; a refusal at accept comes unasked (its type is printed), else it says hello and prints the
// answer's type; then holds the connection for argv[2] s.
const HOLD = String.raw`
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.settimeout(0.5)
try:
    first = s.recv(65536)
except socket.timeout:
    s.settimeout(5)
    s.send(json.dumps({"type": "hello", "versions": [1]}).encode())
    first = s.recv(65536)
print(json.loads(first.decode())["type"], flush=True)
time.sleep(float(sys.argv[2]))
`;

describeWith([root('to connect as uid 65534'), setpriv()], 'PATH.owner and the client limit', () => {
  it('other users filling --max-clients on PATH do not lock the owner out: it is served on PATH.owner', async () => {
    const dir = sharedDir();
    const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--mode', '0666', '--allow-uid', String(NOBODY), '--max-clients', '1', '--quiet']);
    const script = path.join(dir, 'hold.py');
    fs.writeFileSync(script, HOLD, { mode: 0o644 });
    const hold = () => run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', SYSTEM_PYTHON, script, broker.sock, '5']);
    const first = hold();
    await first.waitFor(/^welcome$/m);
    const second = hold();
    await second.waitFor(/^error$/m); // the limit is full: ERR_FDBROKER_OVERLOADED
    expect((await statusOf(broker.sock)).clients.some((c) => c.uid === NOBODY)).toBe(true);
  });
});

describe('PATH.owner through a takeover and a killed broker', () => {
  it('a takeover\'s successor renames its own over it; the old broker leaves it alone when it exits', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const owner = `${broker.sock}.owner`;
    const next = run(process.execPath, [CLI, 'serve', broker.sock, '--takeover', '--quiet']);
    await next.waitFor(/^fdbroker: ready on /m);
    await broker.exited;
    expect(listenerPidAt(owner)).toBe(next.pid);
    expect((await statusOf(broker.sock)).broker.pid).toBe(next.pid);
  });

  it('a killed broker\'s stale PATH.owner: the owner\'s client falls back to PATH and a new broker replaces it', async () => {
    const dir = tmpDir();
    const first = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
    first.kill('SIGKILL');
    await first.exited;
    expect(fs.lstatSync(`${first.sock}.owner`).isSocket()).toBe(true); // left behind, nobody listening
    const r = run(process.execPath, [CLI, 'status', first.sock]);
    await r.exited;
    expect(r.stderr()).toMatch(/ERR_FDBROKER_NO_BROKER/);
    expect(r.stderr()).not.toMatch(/\.owner/);
    const second = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
    expect(listenerPidAt(`${second.sock}.owner`)).toBe(second.pid);
    expect((await statusOf(second.sock)).broker.pid).toBe(second.pid);
  });
});

describe('PATH.owner that cannot be made', () => {
  it('a directory in its place: the broker and a takeover\'s successor (--metrics too) say so and serve on PATH', async () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'broker.sock');
    fs.mkdirSync(`${sock}.owner`);
    const first = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
    await waitText(first.stderr, /warning: serving without .*broker\.sock\.owner, the owner's own control socket/);
    const next = run(process.execPath, [CLI, 'serve', sock, '--takeover', '--quiet', '--metrics', 'tcp://127.0.0.1:0']);
    await next.waitFor(/^fdbroker: ready on /m);
    await waitText(next.stderr, /warning: serving without .*broker\.sock\.owner/);
    expect((await statusOf(sock)).broker.pid).toBe(next.pid);
    expect(fs.statSync(`${sock}.owner`).isDirectory()).toBe(true); // never replaced
  });

  it('a live socket of the same user at the name (not a stale one) is not replaced at a fresh start', async () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'broker.sock');
    const n = native();
    const fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_SEQPACKET);
    try {
      expect(n.bind(fd, { family: 'unix', path: `${sock}.owner` })).toBe(0);
      expect(n.listen(fd, 4)).toBe(0);
      const ino = fs.statSync(`${sock}.owner`).ino;
      const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
      await waitText(broker.stderr, /warning: serving without .*EADDRINUSE/);
      expect(fs.statSync(`${sock}.owner`).ino).toBe(ino);
    } finally {
      n.close(fd);
    }
  });
});

describe('controlTargets', () => {
  it('tries PATH.owner first only when it is a socket file of this process\'s own user', () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'ctl.sock');
    expect(controlTargets(sock)).toEqual([sock]);
    fs.writeFileSync(`${sock}.owner`, ''); // not a socket
    expect(controlTargets(sock)).toEqual([sock]);
    fs.rmSync(`${sock}.owner`);
    const n = native();
    const fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_SEQPACKET);
    try {
      expect(n.bind(fd, { family: 'unix', path: `${sock}.owner` })).toBe(0);
      expect(controlTargets(sock)).toEqual([`${sock}.owner`, sock]);
      if (process.geteuid!() === 0) {
        fs.lchownSync(`${sock}.owner`, NOBODY, NOBODY); // another user's file at the name: never tried
        expect(controlTargets(sock)).toEqual([sock]);
      }
    } finally {
      n.close(fd);
    }
  });
});
