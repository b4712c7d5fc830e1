// The pure parts of the systemd support (NOTIFY_SOCKET / WATCHDOG_* parsing,
// message building, the STATUS= line, matching --listen specs with sockets that
// came back), and SdNotifier against real receiving sockets: a path, an
// abstract name (bound by Python, so the address length is checked against
// another implementation), an fd attached, and a full queue (EAGAIN).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../../src/native/binding';
import { monotonicUsec, notifyMessage, parseNotifySocket, SdNotifier, watchdogIntervalMs } from '../../src/systemd/sd-notify';
import { statusLine } from '../../src/systemd/systemd-link';
import { planInherited, specMismatch } from '../../src/systemd/inherited';
import { parseListenerSpec } from '../../src/broker/spec';
import { createListener } from '../../src/broker/listeners';
import type { GenerationInfo } from '../../src/core/generation-info';
import { cleanup, fdCount, fdIsOpen, sleep, tmpDir } from '../helpers';
import { python3Command } from '../requirements';

const code = (f: () => unknown) => { try { f(); return 'none'; } catch (e) { return (e as { code: string }).code; } };
const gen = (number: number, state: GenerationInfo['state'], pid = 100 + number) =>
  ({ number, state, pid, clientId: number, uid: 0, adopted: [], joinedAt: '', standbyMs: 0, readyOverdue: false, retireOverdue: false }) as GenerationInfo;

afterEach(cleanup);

describe('sd_notify: parsing and messages', () => {
  it('NOTIFY_SOCKET: a path, an @abstract name, or an error', () => {
    expect(parseNotifySocket(undefined)).toBeUndefined();
    expect(parseNotifySocket('')).toBeUndefined();
    expect(parseNotifySocket('/run/user/0/systemd/notify')).toEqual({ family: 'unix', path: '/run/user/0/systemd/notify' });
    expect(parseNotifySocket('@/org/freedesktop/systemd1/notify/123')).toEqual({ family: 'unix', path: '\0/org/freedesktop/systemd1/notify/123' });
    for (const bad of ['relative/notify', 'vsock:2:1234', '@', `/${'x'.repeat(107)}`, `@${'x'.repeat(108)}`]) {
      expect(code(() => parseNotifySocket(bad)), bad).toBe('ERR_FDBROKER_SYSTEMD');
    }
  });

  it('WATCHDOG_USEC/2 in ms, only for our pid', () => {
    expect(watchdogIntervalMs({})).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '10000000' }, 42)).toBe(5000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '10000000', WATCHDOG_PID: '42' }, 42)).toBe(5000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '10000000', WATCHDOG_PID: '43' }, 42)).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '1000' }, 42)).toBe(1);
    for (const env of [{ WATCHDOG_USEC: '0' }, { WATCHDOG_USEC: '1s' }, { WATCHDOG_USEC: '5', WATCHDOG_PID: 'me' }]) {
      expect(code(() => watchdogIntervalMs(env, 42))).toBe('ERR_FDBROKER_SYSTEMD');
    }
  });

  it('messages are KEY=VALUE lines; a newline in a value or a bad key is refused', () => {
    expect(notifyMessage({ READY: 1, MAINPID: 7, STATUS: '1 listener' })).toBe('READY=1\nMAINPID=7\nSTATUS=1 listener\n');
    expect(code(() => notifyMessage({ STATUS: 'a\nREADY=1' }))).toBe('ERR_FDBROKER_INVALID_ARGUMENT');
    expect(code(() => notifyMessage({ 'ready': 1 }))).toBe('ERR_FDBROKER_INVALID_ARGUMENT');
    expect(monotonicUsec()).toMatch(/^\d+$/);
  });

  it('STATUS= names the newest ready generation', () => {
    expect(statusLine(1, [])).toBe('1 listener, 0 generations, no generation ready');
    expect(statusLine(2, [gen(3, 'retiring'), gen(5, 'ready'), gen(4, 'ready'), gen(6, 'starting')]))
      .toBe('2 listeners, 4 generations, serving: generation 5 (pid 105)');
    expect(statusLine(0, [gen(1, 'standby')])).toBe('0 listeners, 1 generation, no generation ready');
  });
});

describe('sockets that came back (LISTEN_FDS) meet --listen', () => {
  it('specMismatch: kind, address, port (port 0 takes any), path', () => {
    const tcp = { name: 'web', kind: 'tcp' as const, family: 'IPv4' as const, address: '127.0.0.1', port: 8080 };
    expect(specMismatch(parseListenerSpec('web=tcp://127.0.0.1:8080'), tcp)).toBeUndefined();
    expect(specMismatch(parseListenerSpec('web=tcp://127.0.0.1:0'), tcp)).toBeUndefined();
    expect(specMismatch(parseListenerSpec('web=tcp://127.0.0.1:8081'), tcp)).toMatch(/port 8080/);
    expect(specMismatch(parseListenerSpec('web=tcp://0.0.0.0:8080'), tcp)).toMatch(/127\.0\.0\.1/);
    expect(specMismatch(parseListenerSpec('web=udp://127.0.0.1:8080'), tcp)).toMatch(/tcp/);
    const unix = { name: 'u', kind: 'unix' as const, family: 'unix' as const, path: '/run/a.sock' };
    expect(specMismatch(parseListenerSpec('u=unix:/run/a.sock'), unix)).toBeUndefined();
    expect(specMismatch(parseListenerSpec('u=unix:/run/b.sock'), unix)).toMatch(/\/run\/a\.sock/);
  });

  it('planInherited: a matching name is adopted (the spec\'s backlog), a mismatch closed and created, the rest kept', () => {
    const a = createListener(parseListenerSpec('a=tcp://127.0.0.1:0'));
    const b = createListener(parseListenerSpec('b=tcp://127.0.0.1:0'));
    const c = createListener(parseListenerSpec('c=tcp://127.0.0.1:0'));
    try {
      const specs = [parseListenerSpec('a=tcp://127.0.0.1:0?backlog=77'), parseListenerSpec(`b=tcp://127.0.0.1:${b.info.port! === 65535 ? 1 : b.info.port! + 1}`),
        parseListenerSpec('d=tcp://127.0.0.1:0')];
      const plan = planInherited(specs, [a, b, c], 511);
      expect(plan.adopt.map((l) => [l.info.name, l.fd, l.info.backlog])).toEqual([['a', a.fd, 77], ['c', c.fd, c.info.backlog]]);
      expect(plan.create.map((s) => s.name)).toEqual(['b', 'd']);
      expect(plan.replaced.map((r) => r.name)).toEqual(['b']);
      expect(fdIsOpen(b.fd)).toBe(false); // closed
    } finally {
      for (const l of [a, c]) native().close(l.fd);
    }
  });
});

/** A bound AF_UNIX datagram socket at `p` (not read until asked). */
function receiver(p: string) {
  const n = native();
  const fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_DGRAM);
  expect(n.bind(fd, { family: 'unix', path: p })).toBe(0);
  const buf = Buffer.alloc(4096);
  return {
    fd,
    /** Every datagram waiting now, with its fds (owned by the caller). */
    read(): Array<{ text: string; fds: number[] }> {
      const out = [];
      for (;;) {
        const r = n.recvmsg(fd, buf, 8);
        if (typeof r === 'number') break;
        out.push({ text: buf.toString('utf8', 0, r.bytes), fds: r.fds });
      }
      return out;
    },
    close: () => n.close(fd),
  };
}

describe('SdNotifier', () => {
  it('sends to a path, with an fd attached (FDSTORE=1) that is the same socket', () => {
    const dir = tmpDir();
    const rx = receiver(path.join(dir, 'notify'));
    const l = createListener(parseListenerSpec('http=tcp://127.0.0.1:0'));
    try {
      const s = new SdNotifier(path.join(dir, 'notify'));
      const warnings: Error[] = [];
      s.on('warning', (e) => warnings.push(e));
      s.notify({ READY: 1, MAINPID: process.pid });
      s.notify({ FDSTORE: 1, FDNAME: 'http' }, [l.fd]);
      const got = rx.read();
      expect(got.map((g) => g.text)).toEqual([`READY=1\nMAINPID=${process.pid}\n`, 'FDSTORE=1\nFDNAME=http\n']);
      expect(got[1]!.fds).toHaveLength(1);
      expect(fs.fstatSync(got[1]!.fds[0]!).ino).toBe(fs.fstatSync(l.fd).ino);
      for (const g of got) for (const fd of g.fds) native().close(fd);
      expect(warnings).toEqual([]);
      expect(fdIsOpen(l.fd)).toBe(true); // still the caller's
      s.close();
    } finally {
      rx.close();
      native().close(l.fd);
    }
  });

  it('a manager that is gone is a warning (ERR_FDBROKER_SYSTEMD with the errno as cause), not a throw', () => {
    const s = new SdNotifier(path.join(tmpDir(), 'nobody'));
    const warnings: Error[] = [];
    s.on('warning', (e) => warnings.push(e));
    s.notify({ READY: 1 });
    expect(warnings.map((w) => [(w as { code?: string }).code, (w.cause as { code?: string }).code])).toEqual([['ERR_FDBROKER_SYSTEMD', 'ENOENT']]);
  });

  it('a full queue (EAGAIN): WATCHDOG=1 waits once, however often the watchdog fires; other messages keep their order', async () => {
    const dir = tmpDir();
    const rx = receiver(path.join(dir, 'notify'));
    try {
      const s = new SdNotifier(path.join(dir, 'notify'));
      let filled = 0;
      while (s.pending === 0 && filled < 10_000) s.notify({ STATUS: `fill${filled++}` });
      expect(s.pending).toBeGreaterThan(0);
      for (let i = 0; i < 100; i++) s.notify({ WATCHDOG: 1 });
      s.notify({ STATUS: 'last' });
      for (let i = 0; i < 100; i++) s.notify({ WATCHDOG: 1 });
      expect(s.pending).toBe(1 + 1 + 1 + 1); // the first refused STATUS, one WATCHDOG, STATUS=last, one WATCHDOG
      const got: string[] = [];
      const deadline = Date.now() + 10_000;
      while (s.pending > 0 && Date.now() < deadline) {
        got.push(...rx.read().map((m) => m.text));
        await sleep(5);
      }
      got.push(...rx.read().map((m) => m.text));
      expect(got.slice(-4)).toEqual([`STATUS=fill${filled - 1}\n`, 'WATCHDOG=1\n', 'STATUS=last\n', 'WATCHDOG=1\n']);
      s.close();
    } finally {
      rx.close();
    }
  });

  it('a full queue (EAGAIN): later messages wait, in order, with duplicated fds, and go out as the manager reads; no fd is left', async () => {
    const dir = tmpDir();
    const rx = receiver(path.join(dir, 'notify'));
    const fds0 = fdCount(process.pid);
    const l = createListener(parseListenerSpec('http=tcp://127.0.0.1:0'));
    try {
      const s = new SdNotifier(path.join(dir, 'notify'));
      const N = 200;
      for (let i = 0; i < N; i++) s.notify({ STATUS: `n${i}` }, i === N - 1 ? [l.fd] : []);
      expect(s.pending).toBeGreaterThan(0);
      native().close(l.fd); // the queued message holds its own duplicate
      const got: Array<{ text: string; fds: number[] }> = [];
      const deadline = Date.now() + 10_000;
      while (got.length < N && Date.now() < deadline) {
        got.push(...rx.read());
        await sleep(5);
      }
      expect(got.map((g) => g.text)).toEqual(Array.from({ length: N }, (_, i) => `STATUS=n${i}\n`));
      expect(got[N - 1]!.fds).toHaveLength(1);
      for (const g of got) for (const fd of g.fds) native().close(fd);
      expect(s.pending).toBe(0);
      s.close();
      // Neither the per-message sockets nor the queued duplicate outlive their message.
      expect(fdCount(process.pid)).toBe(fds0);
    } finally {
      rx.close();
    }
  });

  it('close() drops what still waits and closes its duplicated fds', () => {
    const dir = tmpDir();
    const rx = receiver(path.join(dir, 'notify'));
    const l = createListener(parseListenerSpec('http=tcp://127.0.0.1:0'));
    try {
      const fds0 = fdCount(process.pid);
      const s = new SdNotifier(path.join(dir, 'notify'));
      for (let i = 0; i < 100; i++) s.notify({ FDSTORE: 1, FDNAME: 'http' }, [l.fd]);
      expect(s.pending).toBeGreaterThan(0);
      expect(fdCount(process.pid)).toBe(fds0 + s.pending);
      s.close();
      expect(s.pending).toBe(0);
      expect(fdCount(process.pid)).toBe(fds0);
      for (const g of rx.read()) for (const fd of g.fds) native().close(fd);
    } finally {
      rx.close();
      native().close(l.fd);
    }
  });

  it('an @abstract NOTIFY_SOCKET reaches a socket Python bound to that abstract name', async () => {
    const name = `fdbroker-test-${process.pid}-${Date.now()}`;
    const py = spawn(python3Command(), ['-c', [
      'import socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      `s.bind("\\0${name}")`,
      'print("bound", flush=True)',
      's.settimeout(10)',
      'print(s.recv(4096).decode(), end="", flush=True)',
    ].join('\n')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    py.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise((r) => py.on('exit', r));
    try {
      while (!out.includes('bound\n')) await sleep(10);
      const s = new SdNotifier(`@${name}`);
      const warnings: Error[] = [];
      s.on('warning', (e) => warnings.push(e));
      s.notify({ READY: 1, STATUS: 'abstract' });
      await exited;
      expect(warnings).toEqual([]);
      expect(out).toBe('bound\nREADY=1\nSTATUS=abstract\n');
    } finally {
      py.kill();
    }
  });
});
