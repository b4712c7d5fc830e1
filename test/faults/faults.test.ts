// Faults: the broker killed under load and recovered from an app, clients
// dying mid-transfer, the broker at its fd limit, connection churn, signals
// during transfers, and apps killed right after adopting. Real processes and
// sockets; every check is against the kernel's view (/proc).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../../src/native/binding';
import { adoptListeners } from '../../src/client/adopt';
import { cleanup, CLI, fdCount, FIXTURES, loadLoop, run, sleep, startApp, startBroker, tmpDir, alive, quietFdCount, rssKb, waitText, statusOf, rawConnect } from '../helpers';
import { describeWith, python3 } from '../requirements';

afterEach(cleanup);

/** For RSS checks: keep V8's young generation small, so that heap sizing is not taken for a leak. */
const GC_STEADY = { NODE_OPTIONS: '--max-semi-space-size=1' };

/** Waits (bounded) until the fd count of `pid` is `want`; returns the last count read. */
async function settleFds(pid: number, want: number, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let v = fdCount(pid);
  while (v !== want && Date.now() < deadline) {
    await sleep(20);
    v = fdCount(pid);
  }
  return v;
}


/** Runs test/fixtures/fault_clients.py and returns its summary. */
async function pyClients(args: string[], timeoutMs = 60_000): Promise<{ children: number; killed: number; exited: number; adopted: number; failed: number }> {
  const p = run('python3', [path.join(FIXTURES, 'fault_clients.py'), ...args]);
  const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
  const { code } = await p.exited;
  clearTimeout(timer);
  expect(code, p.stderr()).toBe(0);
  return JSON.parse(p.stdout().trim()) as { children: number; killed: number; exited: number; adopted: number; failed: number };
}

describe('the broker killed', () => {
  it('SIGKILL under load: the app serves on (0 failed); a new broker takes the listeners back from the app (same port); a new generation takes over under load (0 failed)', async () => {
    const dir = tmpDir();
    const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0']);
    const port = broker.ports.http!;
    const exposePath = path.join(dir, 'app-expose.sock');
    const app = run(process.execPath, [path.join(FIXTURES, 'fault-expose-app.js')], { env: { FDBROKER_SOCK: broker.sock, EXPOSE_PATH: exposePath } });
    await app.waitFor(/^ready \d+ gen 1$/m);
    await app.waitFor(/^exposed /m);
    const load = loadLoop(port, { concurrency: 4, maxMs: 50_000 });
    try {
      await sleep(300);
      process.kill(broker.pid, 'SIGKILL');
      expect((await broker.exited).signal).toBe('SIGKILL');
      await app.waitFor(/^broker-lost /m);
      const okAtKill = load.stats.ok;
      await sleep(700);
      expect(load.stats.ok).toBeGreaterThan(okAtKill); // still served, by the app alone
      expect(load.stats.failed).toBe(0);
      // A new broker on the same (stale) path takes the listeners from the app.
      const next = run(process.execPath, [CLI, 'serve', broker.sock, '--adopt-from', exposePath]);
      const m = await next.waitFor(/^fdbroker: ready on .*\n/m);
      expect(m[0]).toContain(`http=tcp://127.0.0.1:${port}`);
      const s = await statusOf(broker.sock);
      expect(s.broker.pid).toBe(next.pid);
      expect(s.listeners.map((l) => [l.name, l.port])).toEqual([['http', port]]);
      // The running app rejoins the new broker by itself, as the ready generation it is.
      for (let t = 0; t < 100 && !(await statusOf(broker.sock)).generations.some((g) => g.pid === app.pid && g.state === 'ready' && g.rejoined); t++) await sleep(50);
      expect((await statusOf(broker.sock)).generations).toMatchObject([{ pid: app.pid, state: 'ready', rejoined: true, number: 1 }]);
      // So the next deploy retires it, with no help: a new generation adopts from the new broker, and the old app drains and leaves.
      const gen2 = await startApp(broker.sock, {}, 'gen-app.js');
      await waitText(() => JSON.stringify(load.stats.servedBy), new RegExp(`"${gen2.pid}"`), 10_000);
      await app.waitFor(/^drained \d+ forced 0$/m, 15_000);
      expect((await app.exited).code).toBe(0);
      const afterHandover = load.stats.servedBy[String(gen2.pid)] ?? 0;
      await sleep(500);
      expect(load.stats.servedBy[String(gen2.pid)]).toBeGreaterThan(afterHandover);
    } finally {
      await load.stop();
    }
    console.info(`broker SIGKILL + recovery under load: ${JSON.stringify(load.stats)}`);
    expect(load.stats.failed).toBe(0);
    expect(load.stats.ok).toBeGreaterThan(0);
    expect(load.stats.servedBy[String(app.pid)]).toBeGreaterThan(0);
  });
});

describeWith([python3()], 'dying clients', () => {
  it('200 client processes that send adopt and die at once (half SIGKILLed): broker alive, fd count back to baseline', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    Object.values(await adoptListeners(broker.sock)).forEach((l) => l.close());
    const before = await quietFdCount(broker.pid);
    const r = await pyClients([broker.sock, 'burst', '200']);
    expect(r).toMatchObject({ children: 200, killed: 100, exited: 100, failed: 0 });
    expect(alive(broker.pid)).toBe(true);
    expect(await settleFds(broker.pid, before)).toBe(before);
    // Handouts really were in flight when clients died.
    const handedOut = broker.stdout().split('\n').filter((l) => l.includes('op=adopt') && l.endsWith('result=ok')).length;
    console.info(`burst of 200: ${handedOut} handouts sent`);
    expect(handedOut).toBeGreaterThan(0);
    const ls = await adoptListeners(broker.sock, { names: ['http'] });
    expect(ls.http!.port).toBe(broker.ports.http);
    ls.http!.close();
    expect((await statusOf(broker.sock)).clients).toHaveLength(1);
  });

  it('1,000 apps SIGKILLed right after adopting (20 at a time): broker fds unchanged, RSS growth bounded', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet'], GC_STEADY);
    await pyClients([broker.sock, 'adopt-die', '40', '20']); // warm up
    const fdsBefore = await quietFdCount(broker.pid);
    const rssBefore = rssKb(broker.pid);
    const t0 = Date.now();
    const r = await pyClients([broker.sock, 'adopt-die', '1000', '20'], 90_000);
    console.info(`1,000 adopt-and-die: ${Date.now() - t0} ms, RSS ${rssBefore} -> ${rssKb(broker.pid)} kB`);
    expect(r).toEqual({ children: 1000, adopted: 1000, killed: 1000, exited: 0, failed: 0 });
    expect(alive(broker.pid)).toBe(true);
    expect(await settleFds(broker.pid, fdsBefore)).toBe(fdsBefore);
    expect(rssKb(broker.pid) - rssBefore).toBeLessThan(20 * 1024);
    expect((await statusOf(broker.sock)).clients).toHaveLength(1);
  }, 120_000);
});

describe('the broker at its limits', () => {
  it('at RLIMIT_NOFILE (64): more clients than fds, an EMFILE warning, still alive; afterwards adopts work and fds are back to baseline', async () => {
    const dir = tmpDir();
    const sock = path.join(dir, 'broker.sock');
    const broker = run('prlimit', ['--nofile=64:64', process.execPath, CLI, 'serve', sock, '--listen', 'http=tcp://127.0.0.1:0']);
    await broker.waitFor(/^fdbroker: ready on /m);
    expect(fs.readFileSync(`/proc/${broker.pid}/limits`, 'utf8')).toMatch(/^Max open files\s+64\s+64/m);
    Object.values(await adoptListeners(sock)).forEach((l) => l.close());
    const before = await quietFdCount(broker.pid);
    const held: number[] = [];
    try {
      for (let i = 0; i < 100; i++) {
        const fd = await rawConnect(sock);
        held.push(fd);
        native().sendmsg(fd, Buffer.from(JSON.stringify({ type: 'hello', versions: [1] })), []);
      }
      await waitText(broker.stderr, /^fdbroker: warning: accept EMFILE/m);
      expect(alive(broker.pid)).toBe(true);
      expect(fdCount(broker.pid)).toBeGreaterThan(before + 30); // it did take clients up to its limit
    } finally {
      for (const fd of held) native().close(fd);
    }
    // The queued rest are accepted, read as closed and dropped; then a normal adopt works.
    expect(await settleFds(broker.pid, before, 10_000)).toBe(before);
    const ls = await adoptListeners(sock, { names: ['http'] });
    expect(ls.http!.fd).toBeGreaterThanOrEqual(0);
    ls.http!.close();
    expect(await settleFds(broker.pid, before)).toBe(before);
    expect(alive(broker.pid)).toBe(true);
  });

  it('10,000 connect/close cycles (100 at a time, < 30 s): broker alive, fd count unchanged, RSS < +20 MB', async () => {
    // A small young generation: V8 otherwise grows its semi-spaces (up to 3 x 16 MB)
    // under this allocation rate, which is RSS growth but not a leak.
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet'], GC_STEADY);
    const n = native();
    const cycle = async (k: number) => {
      const fds = await Promise.all(Array.from({ length: k }, () => rawConnect(broker.sock)));
      for (const fd of fds) n.close(fd);
    };
    for (let i = 0; i < 50; i++) await cycle(100); // warm up: let the heap reach its working size
    const fdsBefore = await quietFdCount(broker.pid);
    const rssBefore = rssKb(broker.pid);
    const t0 = Date.now();
    for (let i = 0; i < 100; i++) await cycle(100);
    const ms = Date.now() - t0;
    console.info(`10,000 connect/close: ${ms} ms, RSS ${rssBefore} -> ${rssKb(broker.pid)} kB`);
    expect(ms).toBeLessThan(30_000);
    expect(alive(broker.pid)).toBe(true);
    expect(await settleFds(broker.pid, fdsBefore, 10_000)).toBe(fdsBefore);
    expect(rssKb(broker.pid) - rssBefore).toBeLessThan(20 * 1024);
    // No client state is left behind either.
    expect((await statusOf(broker.sock)).clients).toHaveLength(1);
    const ls = await adoptListeners(broker.sock, { names: ['http'] });
    ls.http!.close();
  });

  it('SIGHUP, SIGWINCH, SIGCHLD and SIGPIPE sent repeatedly during 1,000 adopts: every adopt succeeds, the broker lives and logs SIGHUP', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const signals: NodeJS.Signals[] = ['SIGHUP', 'SIGWINCH', 'SIGCHLD', 'SIGPIPE'];
    let sent = 0;
    const timer = setInterval(() => {
      for (const s of signals) {
        process.kill(broker.pid, s);
        sent++;
      }
    }, 5);
    let ok = 0;
    const failures: string[] = [];
    try {
      await Promise.all(Array.from({ length: 10 }, async () => {
        for (let i = 0; i < 100; i++) {
          try {
            const ls = await adoptListeners(broker.sock, { names: ['http'], timeout: 10_000 });
            expect(ls.http!.port).toBe(broker.ports.http);
            ls.http!.close();
            ok++;
          } catch (err) {
            failures.push(String(err));
          }
        }
      }));
    } finally {
      clearInterval(timer);
    }
    console.info(`1,000 adopts under ${sent} signals`);
    expect(failures).toEqual([]);
    expect(ok).toBe(1000);
    expect(sent).toBeGreaterThan(40);
    await sleep(100);
    expect(alive(broker.pid)).toBe(true);
    expect(broker.stderr()).toMatch(/^fdbroker: SIGHUP ignored/m);
    const ls = await adoptListeners(broker.sock, { names: ['http'] });
    ls.http!.close();
  });
});
