// `fdbroker exec`: programs in other languages get the listeners the systemd
// way (fd 3.., LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), report readiness over
// sd_notify, and are retired by signal. Real processes, sockets and HTTP on
// 127.0.0.1; the programs are a Python stdlib HTTP server and systemd-notify.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { CLI, cleanup, FIXTURES, get, loadLoop, run, sleep, socketInodes, startBroker, tmpDir, type Proc, statusOf } from '../helpers';
import { SYSTEM_PYTHON } from '../other-user';
import { describeWith, file, itWith, python3, setpriv } from '../requirements';

afterEach(cleanup);

const PY_SERVER = path.join(FIXTURES, 'exec_py_server.py');
const SD_NOTIFY_SCRIPT = path.join(FIXTURES, 'exec_sd_notify.sh');
const SYSTEMD_NOTIFY = '/usr/bin/systemd-notify';

const COUNTER = path.join(FIXTURES, 'exec-count-signals.js');
/** How soon the program of a SIGKILLed wrapper must be gone. */
const ORPHAN_EXIT_BOUND_MS = 5000;
const PYTHON = python3(7);
const SYSTEMD_NOTIFY_TOOL = file(SYSTEMD_NOTIFY, 'systemd-notify', 'apt-get install systemd');

/** `fdbroker exec <sock> [flags] -- cmd...` */
function exec(sock: string, flags: string[], cmd: string[], env: NodeJS.ProcessEnv = {}): Proc {
  return run(process.execPath, [CLI, 'exec', sock, ...flags, '--', ...cmd], { env });
}

const pyExec = (sock: string, flags: string[] = [], env: NodeJS.ProcessEnv = {}) => exec(sock, flags, ['python3', PY_SERVER], env);

/** `fdbroker wait` for the generation of `pid`; resolves to its exit code. */
async function waitGen(sock: string, pid: number, until: 'ready' | 'handover' = 'ready'): Promise<number | null> {
  const w = run(process.execPath, [CLI, 'wait', sock, '--pid', String(pid), '--until', until, '--timeout', '15000', '--quiet']);
  const { code } = await w.exited;
  if (code !== 0) console.warn(`fdbroker wait --pid ${pid} --until ${until}: exit ${code}: ${w.stderr()}`);
  return code;
}

/** The pid of the program, from the server's "listen-pid ok <pid>" line. */
async function programPid(p: Proc): Promise<number> {
  return Number((await p.waitFor(/^listen-pid ok (\d+)$/m))[1]);
}

/** Whether `pid` is gone; a zombie its new parent has not reaped yet counts as gone. */
function gone(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/** Field 5 of /proc/<pid>/stat: the process group. */
function pgid(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

/** The pids whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (new RegExp(`^PPid:\\s+${pid}$`, 'm').test(fs.readFileSync(`/proc/${d}/status`, 'utf8'))) out.push(Number(d));
    } catch { /* exited meanwhile */ }
  }
  return out.sort((a, b) => a - b);
}

describeWith([PYTHON], 'fdbroker exec', () => {
  it('runs a Python server on fd 3 with LISTEN_PID = its own pid; READY=1 over NOTIFY_SOCKET makes the generation ready', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const w = pyExec(broker.sock);
    const pid = await programPid(w);
    expect(w.stdout()).not.toMatch(/listen-pid mismatch/);
    await w.waitFor(/^listen-fds 1 http$/m);
    const notifyPath = (await w.waitFor(/^notify-socket (\S+)$/m))[1]!;
    expect(notifyPath).not.toBe('-');
    expect(fs.statSync(path.dirname(notifyPath)).mode & 0o777).toBe(0o700);
    await w.waitFor(/^ready \d+$/m);
    expect(await waitGen(broker.sock, w.pid)).toBe(0);

    for (let i = 0; i < 3; i++) {
      const res = await get(broker.ports.http!);
      expect(res).toEqual({ status: 200, body: `py ${pid}\n` });
    }
    // fdbroker status --json: a ready generation whose pid is the wrapper's.
    const st = run(process.execPath, [CLI, 'status', broker.sock, '--json']);
    expect((await st.exited).code).toBe(0);
    const s = JSON.parse(st.stdout());
    expect(s.generations).toHaveLength(1);
    expect(s.generations[0]).toMatchObject({ pid: w.pid, state: 'ready', adopted: ['http'], label: 'python3' });

    // Stopping the wrapper stops the program (SIGTERM forwarded); it exits
    // with the program's status and removes the notify socket's directory.
    w.kill('SIGTERM');
    expect((await w.exited).code).toBe(0);
    expect(w.stdout()).toMatch(/^signal SIGTERM$/m);
    expect(w.stdout()).toMatch(/^stopped \d+$/m);
    expect(fs.existsSync(path.dirname(notifyPath))).toBe(false);
    expect(w.stderr()).toBe('');
    expect((await statusOf(broker.sock)).generations).toEqual([]);
  });

  itWith([SYSTEMD_NOTIFY_TOOL], 'a program that uses systemd-notify --ready (with its BARRIER=1 fd) becomes ready', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const started = Date.now();
    const w = exec(broker.sock, [], ['sh', SD_NOTIFY_SCRIPT]);
    // systemd-notify waits (up to 5 s) for the receiver to close the barrier
    // pipe it sends; rc=0 means the wrapper closed it.
    await w.waitFor(/^systemd-notify rc=(\d+)$/m);
    expect(w.stdout()).toMatch(/^systemd-notify rc=0$/m);
    expect(Date.now() - started).toBeLessThan(4_000);
    const pid = await programPid(w);
    expect(await waitGen(broker.sock, w.pid)).toBe(0);
    expect((await get(broker.ports.http!)).body).toBe(`py ${pid}\n`);
    const g = (await statusOf(broker.sock)).generations.find((x) => x.pid === w.pid);
    expect(g?.state).toBe('ready');
    expect(w.stderr()).toBe('');
  });

  it('blue/green under load: v2 ready retires v1 by SIGTERM, both wrappers exit with the status of their program, 0 failed requests', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    let current = pyExec(broker.sock, [], { SLOW_MS: '20' });
    const pids = [await programPid(current)];
    expect(await waitGen(broker.sock, current.pid)).toBe(0);
    const load = loadLoop(broker.ports.http!, { concurrency: 8 });
    await sleep(300);
    for (let i = 0; i < 3; i++) {
      const next = pyExec(broker.sock, [], { SLOW_MS: '20' });
      pids.push(await programPid(next));
      expect(await waitGen(broker.sock, next.pid, 'handover')).toBe(0);
      const { code } = await current.exited;
      expect(code).toBe(0);
      expect(current.stdout()).toMatch(/^signal SIGTERM$/m);
      expect(current.stdout()).toMatch(/^stopped \d+$/m);
      expect(current.stderr()).toBe('');
      current = next;
      await sleep(300);
    }
    const stats = await load.stop();
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
    expect(stats.ok).toBeGreaterThan(100);
    expect(new Set(pids).size).toBe(4);
    const s = await statusOf(broker.sock);
    expect(s.generations.map((g) => [g.pid, g.state])).toEqual([[current.pid, 'ready']]);
  }, 90_000);

  it('a program that ignores the retire signal is killed after --stop-timeout; exec exits 137', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const v1 = pyExec(broker.sock, ['--stop-timeout', '300'], { IGNORE_TERM: '1' });
    expect(await waitGen(broker.sock, v1.pid)).toBe(0);
    const v2 = pyExec(broker.sock);
    expect(await waitGen(broker.sock, v2.pid, 'handover')).toBe(0);
    expect((await v1.exited).code).toBe(137);
    expect(v1.stdout()).toMatch(/^signal SIGTERM$/m);
    expect(v1.stderr()).toMatch(/did not exit within 300 ms: SIGKILL/);
  });

  it('--retire-signal chooses the signal sent on retire', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const v1 = pyExec(broker.sock, ['--retire-signal', 'USR2', '--stop-timeout', '300']);
    expect(await waitGen(broker.sock, v1.pid)).toBe(0);
    const v2 = pyExec(broker.sock);
    expect(await waitGen(broker.sock, v2.pid, 'handover')).toBe(0);
    expect((await v1.exited).code).toBe(137);
    expect(v1.stdout()).toMatch(/^signal SIGUSR2$/m);
    expect(v1.stdout()).not.toMatch(/^signal SIGTERM$/m);
  });

  it('exit status: the program\'s code, 128 + signal, 127 when it cannot be started', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const seven = exec(broker.sock, [], ['sh', '-c', 'exit 7']);
    expect((await seven.exited).code).toBe(7);
    const killed = exec(broker.sock, [], ['sh', '-c', 'kill -KILL $$']);
    expect((await killed.exited).code).toBe(137);
    const missing = exec(broker.sock, [], ['fdbroker-no-such-program-xyz', 'arg']);
    expect((await missing.exited).code).toBe(127);
    expect(missing.stderr()).toMatch(/fdbroker exec: ENOENT: cannot run fdbroker-no-such-program-xyz: command not found/);
    const missingPath = exec(broker.sock, [], ['/nonexistent/prog']);
    expect((await missingPath.exited).code).toBe(127);
    expect(missingPath.stderr()).toMatch(/ENOENT: cannot run \/nonexistent\/prog: no such file/);
    const plain = path.join(tmpDir(), 'not-executable');
    fs.writeFileSync(plain, '#!/bin/sh\nexit 0\n', { mode: 0o644 });
    const notExecutable = exec(broker.sock, [], [plain]);
    expect((await notExecutable.exited).code).toBe(127);
    expect(notExecutable.stderr()).toMatch(/EACCES: cannot run .*: not executable/);
    // Nothing is left joined.
    expect((await statusOf(broker.sock)).generations).toEqual([]);
  });

  it('--ready immediate: ready once spawned, no NOTIFY_SOCKET given', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const w = pyExec(broker.sock, ['--ready', 'immediate'], { NO_READY: '1', NOTIFY_SOCKET: '/tmp/inherited-should-not-pass' });
    const pid = await programPid(w);
    await w.waitFor(/^notify-socket -$/m);
    expect(await waitGen(broker.sock, w.pid)).toBe(0);
    expect((await get(broker.ports.http!)).body).toBe(`py ${pid}\n`);
  });

  it('no broker: exit 1 with ERR_FDBROKER_NO_BROKER, nothing started', async () => {
    const dir = tmpDir();
    const marker = path.join(dir, 'started');
    const w = exec(path.join(dir, 'none.sock'), [], ['sh', '-c', `touch ${marker}`]);
    expect((await w.exited).code).toBe(1);
    expect(w.stderr()).toMatch(/ERR_FDBROKER_NO_BROKER/);
    expect(fs.existsSync(marker)).toBe(false);
    const unknown = exec((await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'])).sock, ['--names', 'nope'], ['sh', '-c', `touch ${marker}`]);
    expect((await unknown.exited).code).toBe(1);
    expect(unknown.stderr()).toMatch(/ERR_FDBROKER_UNKNOWN_LISTENER/);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('the wrapper keeps no copy of the listener; the program has it at fd 3, in --names order', async () => {
    const broker = await startBroker(tmpDir(), ['a=tcp://127.0.0.1:0', 'http=tcp://127.0.0.1:0', 'b=tcp://127.0.0.1:0'], ['--quiet']);
    const w = pyExec(broker.sock, ['--names', 'http,b']);
    const pid = await programPid(w);
    await w.waitFor(/^listen-fds 2 http:b$/m);
    expect(await waitGen(broker.sock, w.pid)).toBe(0);
    const inode = fs.readlinkSync(`/proc/${pid}/fd/3`).match(/^socket:\[(\d+)\]$/)?.[1];
    expect(inode).toBeDefined();
    expect(socketInodes(broker.pid)).toContain(inode);
    expect(socketInodes(w.pid)).not.toContain(inode);
    expect((await get(broker.ports.http!)).body).toBe(`py ${pid}\n`);
    // No socket the broker holds (listeners a, http, b; control socket) is open in the wrapper.
    const brokerInodes = new Set(socketInodes(broker.pid));
    expect(socketInodes(w.pid).filter((i) => brokerInodes.has(i))).toEqual([]);
  });

  it('forwards SIGHUP, SIGUSR1 and SIGUSR2 to the program', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const w = pyExec(broker.sock);
    expect(await waitGen(broker.sock, w.pid)).toBe(0);
    for (const sig of ['SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const) {
      w.kill(sig);
      await w.waitFor(new RegExp(`^signal ${sig}$`, 'm'));
    }
    expect(w.child.exitCode).toBeNull();
    w.kill('SIGTERM');
    expect((await w.exited).code).toBe(0);
  });

  it('a refused ready is reported and the program runs on; the older generation keeps serving', async () => {
    // v1 is ready at once (--ready immediate), well within the broker's ready
    // timeout; v2 sends READY=1 after it.
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', '--ready-timeout', '1000']);
    const v1 = pyExec(broker.sock, ['--ready', 'immediate'], { NO_READY: '1' });
    expect(await waitGen(broker.sock, v1.pid)).toBe(0);
    const v2 = pyExec(broker.sock, [], { READY_DELAY_MS: '1500' });
    await v2.waitFor(/^ready \d+$/m);
    for (let i = 0; i < 50 && !/ERR_FDBROKER_READY_REFUSED/.test(v2.stderr()); i++) await sleep(50);
    expect(v2.stderr()).toMatch(/fdbroker exec: ERR_FDBROKER_READY_REFUSED: .*the program runs on/);
    expect(v2.child.exitCode).toBeNull();
    const s = await statusOf(broker.sock);
    expect(s.generations.map((g) => [g.pid, g.state])).toEqual([[v1.pid, 'ready'], [v2.pid, 'starting']]);
    expect(v1.stdout()).not.toMatch(/^signal/m);
    expect((await get(broker.ports.http!)).status).toBe(200);
  });

  it('--ready-timeout: a program that never sends READY=1 is stopped and exec fails', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    // A shell that exits 0 on SIGTERM (its trap is set long before 300 ms):
    // exec still fails, since the program never became ready.
    const w = exec(broker.sock, ['--ready-timeout', '300'], ['sh', '-c', 'trap "echo term; exit 0" TERM; while :; do sleep 0.05; done']);
    expect((await w.exited).code).toBe(1);
    expect(w.stdout()).toMatch(/^term$/m);
    expect(w.stderr()).toMatch(/no READY=1 within 300 ms: stopping the program/);
  });

  it('usage errors exit 2', async () => {
    for (const args of [['exec', '/tmp/x.sock'], ['exec', '/tmp/x.sock', '--'], ['exec', '--', 'true'],
      ['exec', '/tmp/x.sock', '--ready', 'later', '--', 'true'], ['exec', '/tmp/x.sock', '--retire-signal', 'SIGNOPE', '--', 'true']]) {
      const p = run(process.execPath, [CLI, ...args]);
      expect((await p.exited).code).toBe(2);
    }
  });
});

/** The orphan guard's watchdog (src/cli/orphan-guard.ts): a /bin/sh waiting on `read`. */
function isWatchdog(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('read line || kill -s "$0" "$1"');
  } catch {
    return false;
  }
}

describeWith([PYTHON], 'fdbroker exec: group signals and a dead wrapper', () => {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    it(`${sig} to the wrapper's process group (kill -${sig.slice(3)} -PGID, Ctrl-C) reaches the program exactly once`, async () => {
      const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
      const w = exec(broker.sock, ['--ready', 'immediate'], [process.execPath, COUNTER]);
      const pid = Number((await w.waitFor(/^armed (\d+)$/m))[1]);
      expect(await waitGen(broker.sock, w.pid)).toBe(0);
      // run() made the wrapper a process group leader, as a shell or service manager does.
      expect(pgid(w.pid)).toBe(w.pid);
      // The program is not in it: the group signal reaches it only through the
      // wrapper. (Counting alone cannot always show a double delivery: a second
      // signal sent while the first is still pending is merged by the kernel.)
      expect(pgid(pid), 'the program has a process group of its own').toBe(pid);
      process.kill(-w.pid, sig);
      const m = await w.waitFor(/^signals TERM=\d+ INT=\d+$/m);
      expect(m[0]).toBe(sig === 'SIGTERM' ? 'signals TERM=1 INT=0' : 'signals TERM=0 INT=1');
      expect((await w.exited).code).toBe(0);
      expect(gone(pid)).toBe(true);
    });
  }

  const deadWrapper = async (withSetpriv: boolean) => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const port = broker.ports.http!;
    // Without setpriv on PATH (the watchdog): an empty PATH, the program by absolute path.
    const emptyPath = tmpDir();
    const v1 = withSetpriv ? pyExec(broker.sock) : exec(broker.sock, [], [SYSTEM_PYTHON, PY_SERVER], { PATH: emptyPath });
    const pid = await programPid(v1);
    expect(await waitGen(broker.sock, v1.pid)).toBe(0);
    expect((await get(port)).body).toBe(`py ${pid}\n`);
    const kids = childrenOf(v1.pid);
    const watchdogs = kids.filter(isWatchdog);
    expect(watchdogs).toHaveLength(withSetpriv ? 0 : 1);
    expect(kids.filter((k) => !isWatchdog(k))).toEqual([pid]);
    process.kill(v1.pid, 'SIGKILL');
    const t0 = Date.now();
    while (!gone(pid) && Date.now() - t0 < ORPHAN_EXIT_BOUND_MS) await sleep(20);
    const ms = Date.now() - t0;
    console.info(`exec (${withSetpriv ? 'setpriv --pdeathsig' : 'watchdog'}) SIGKILLed: its program was gone after ${ms} ms`);
    expect(gone(pid), `the program (pid ${pid}) still runs ${ORPHAN_EXIT_BOUND_MS} ms after its wrapper died; its output:\n${v1.stdout()}\n${v1.stderr()}`).toBe(true);
    // It was told (the retire signal) and stopped cleanly, not killed.
    expect(v1.stdout()).toMatch(/^signal SIGTERM$/m);
    expect(v1.stdout()).toMatch(new RegExp(`^stopped ${pid}$`, 'm'));
    expect((await statusOf(broker.sock)).generations).toEqual([]);
    for (const w of watchdogs) expect(gone(w), 'the watchdog exits once it has signalled').toBe(true);
    // Nobody serves now, but the broker's listener queues the connection for the next generation.
    const pending = get(port);
    await sleep(200);
    const v2 = pyExec(broker.sock);
    const pid2 = await programPid(v2);
    expect(await pending).toEqual({ status: 200, body: `py ${pid2}\n` });
    expect(await waitGen(broker.sock, v2.pid)).toBe(0);
    expect((await get(port)).body).toBe(`py ${pid2}\n`);
  };

  itWith([setpriv()], `SIGKILL to the wrapper (setpriv --pdeathsig): the program gets SIGTERM and is gone within ${ORPHAN_EXIT_BOUND_MS} ms; the next generation serves the queued request`,
    () => deadWrapper(true));
  itWith([file(SYSTEM_PYTHON, `python3 at ${SYSTEM_PYTHON}`, 'apt-get install python3')],
    `SIGKILL to the wrapper with no setpriv on PATH (the watchdog): the program gets SIGTERM and is gone within ${ORPHAN_EXIT_BOUND_MS} ms; the next generation serves the queued request`,
    () => deadWrapper(false));

  it('with no setpriv on PATH, a wrapper that ends normally ends its watchdog too (nothing signalled, nothing left)', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const w = exec(broker.sock, ['--ready', 'immediate'], ['/bin/sh', '-c', 'echo started; /bin/sleep 0.5; exit 4'], { PATH: tmpDir() });
    await w.waitFor(/^started$/m);
    // The watchdog is spawned beside the program; give it a moment to show up in /proc.
    let watchdogs = childrenOf(w.pid).filter(isWatchdog);
    for (let t = 0; t < 50 && watchdogs.length === 0 && w.child.exitCode === null; t++) {
      await sleep(10);
      watchdogs = childrenOf(w.pid).filter(isWatchdog);
    }
    expect(watchdogs).toHaveLength(1);
    expect((await w.exited).code).toBe(4);
    const t0 = Date.now();
    while (!gone(watchdogs[0]!) && Date.now() - t0 < ORPHAN_EXIT_BOUND_MS) await sleep(20);
    expect(gone(watchdogs[0]!)).toBe(true);
  });
});

describeWith([PYTHON], 'fdbroker exec: a broker that dies and comes back', () => {
  it('READY=1 while no broker runs: exec re-joins the next broker on the path as ready, and a later version retires it', async () => {
    const dir = tmpDir();
    const b1 = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const port = b1.ports.http!;
    const v1 = pyExec(b1.sock, ['--label', 'v1'], { READY_DELAY_MS: '1000' });
    await programPid(v1);
    b1.kill('SIGKILL');
    await b1.exited;
    await v1.waitFor(/^ready \d+$/m, 5000); // READY=1 went out while no broker ran
    await sleep(200);
    expect(v1.stderr()).toMatch(/fdbroker exec: lost the broker .*re-joining when a broker answers/);
    expect((await get(port)).status).toBe(200); // the program serves on its own copy
    // A new broker on the same path (another socket for "http": this is not systemd's fd store).
    const b2 = await startBroker(dir, ['http=tcp://127.0.0.1:0'], ['--quiet']);
    let st = await statusOf(b2.sock);
    for (let t = 0; t < 100 && !st.generations.some((g) => g.pid === v1.pid); t++) {
      await sleep(50);
      st = await statusOf(b2.sock);
    }
    expect(st.generations.map((g) => [g.pid, g.state, g.label])).toEqual([[v1.pid, 'ready', 'v1']]);
    expect(v1.stderr()).toMatch(/fdbroker exec: re-joined the broker as generation \d+ \(ready\)/);
    // The next version on the new broker retires the re-joined one.
    const v2 = pyExec(b2.sock, ['--label', 'v2']);
    expect(await waitGen(b2.sock, v2.pid, 'handover')).toBe(0);
    expect((await v1.exited).code).toBe(0);
    expect((await statusOf(b2.sock)).generations.map((g) => [g.pid, g.state])).toEqual([[v2.pid, 'ready']]);
  });
});
