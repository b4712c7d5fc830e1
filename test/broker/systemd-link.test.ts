// SystemdLink on a real broker, with a bound datagram socket standing in for
// the manager's NOTIFY_SOCKET: what is sent, in which order, with which fds.
// (Under a real systemd: test/systemd/systemd.test.ts.)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker';
import { SdNotifier } from '../../src/systemd/sd-notify';
import { SystemdLink } from '../../src/systemd/systemd-link';
import { takeOver } from '../../src/takeover/successor';
import { parseListenerSpec } from '../../src/broker/spec';
import { native } from '../../src/native/binding';
import { cleanup, FIXTURES, run, sleep, tmpDir } from '../helpers';

afterEach(cleanup);

function receiver(p: string) {
  const n = native();
  const fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_DGRAM);
  expect(n.bind(fd, { family: 'unix', path: p })).toBe(0);
  const buf = Buffer.alloc(4096);
  return {
    read(): Array<{ text: string; ino: number[] }> {
      const out = [];
      for (;;) {
        const r = n.recvmsg(fd, buf, 8);
        if (typeof r === 'number') break;
        out.push({ text: buf.toString('utf8', 0, r.bytes), ino: r.fds.map((f) => { const i = fs.fstatSync(f).ino; n.close(f); return i; }) });
      }
      return out;
    },
    close: () => n.close(fd),
  };
}

describe('SystemdLink', () => {
  it('ready(): the fd store first (not for inherited names), then READY=1+MAINPID+STATUS; STATUS on join/ready/leave; '
    + 'a reload (added, removed, refused); watchdog; stopping()', async () => {
    const dir = tmpDir();
    const rx = receiver(path.join(dir, 'notify'));
    const sock = path.join(dir, 'b.sock');
    const broker = Broker.start({
      controlPath: sock, inherit: false, standbyMs: 0,
      listeners: [parseListenerSpec('http=tcp://127.0.0.1:0'), parseListenerSpec('admin=tcp://127.0.0.1:0')],
    });
    const link = new SystemdLink(broker, new SdNotifier(path.join(dir, 'notify')), { watchdogMs: 50, inherited: ['admin'], replaced: ['old'] });
    try {
      const ino = (name: string) => fs.fstatSync(broker.listenerFdsForSelf().find((l) => l.info.name === name)!.fd).ino;
      link.ready();
      const first = rx.read();
      expect(first.map((m) => m.text)).toEqual([
        'FDSTOREREMOVE=1\nFDNAME=old\n',
        'FDSTORE=1\nFDNAME=http\n',
        `READY=1\nMAINPID=${process.pid}\nSTATUS=2 listeners, 0 generations, no generation ready\n`,
      ]);
      expect(first[1]!.ino).toEqual([ino('http')]);

      const app = run(process.execPath, [path.join(FIXTURES, 'gen-app.js')], { env: { FDBROKER_SOCK: sock } });
      const m = await app.waitFor(/^ready \d+ gen (\d+)/m);
      await sleep(200);
      const texts = rx.read().map((x) => x.text);
      expect(texts).toContain('WATCHDOG=1\n');
      expect(texts.filter((t) => t.startsWith('STATUS='))).toEqual([
        'STATUS=2 listeners, 1 generation, no generation ready\n',
        `STATUS=2 listeners, 1 generation, serving: generation ${m[1]} (pid ${app.pid})\n`,
      ]);
      app.kill('SIGKILL');
      await app.exited;
      await sleep(300);
      expect(rx.read().map((x) => x.text).filter((t) => t.startsWith('STATUS='))).toEqual(['STATUS=2 listeners, 0 generations, no generation ready\n']);

      // A reload (the broker's own events): RELOADING=1, the store follows the listeners, READY=1.
      const specs = [parseListenerSpec('http=tcp://127.0.0.1:0'), parseListenerSpec('admin=tcp://127.0.0.1:0')];
      let next = [...specs, parseListenerSpec('extra=tcp://127.0.0.1:0')];
      broker.reloadSource = () => ({ listeners: next });
      broker.reload();
      const added = rx.read().filter((x) => !x.text.startsWith('WATCHDOG'));
      const text = (xs: typeof added) => xs.map((x) => x.text.replace(/MONOTONIC_USEC=\d+/, 'MONOTONIC_USEC=N'));
      expect(text(added)).toEqual([
        'RELOADING=1\nMONOTONIC_USEC=N\nSTATUS=reloading\n',
        'FDSTORE=1\nFDNAME=extra\n',
        'STATUS=3 listeners, 0 generations, no generation ready\n',
        'READY=1\nSTATUS=3 listeners, 0 generations, no generation ready\n',
      ]);
      expect(added[1]!.ino).toEqual([ino('extra')]);
      next = specs;
      broker.reload();
      expect(text(rx.read().filter((x) => !x.text.startsWith('WATCHDOG')))).toEqual([
        'RELOADING=1\nMONOTONIC_USEC=N\nSTATUS=reloading\n',
        'FDSTOREREMOVE=1\nFDNAME=extra\n',
        'STATUS=2 listeners, 0 generations, no generation ready\n',
        'READY=1\nSTATUS=2 listeners, 0 generations, no generation ready\n',
      ]);
      // A refused reload: READY=1 all the same (the old configuration serves).
      broker.reloadSource = () => { throw new Error('bad file'); };
      expect(() => broker.reload()).toThrow('bad file');
      expect(text(rx.read().filter((x) => !x.text.startsWith('WATCHDOG')))).toEqual([
        'RELOADING=1\nMONOTONIC_USEC=N\nSTATUS=reloading\n',
        'READY=1\nSTATUS=2 listeners, 0 generations, no generation ready\n',
      ]);

      link.stopping();
      expect(rx.read().map((x) => x.text).filter((t) => !t.startsWith('WATCHDOG'))).toEqual(['STOPPING=1\nSTATUS=stopping\n']);
      await sleep(150);
      expect(rx.read()).toEqual([]); // the watchdog stopped with it
    } finally {
      link.close();
      broker.close();
      rx.close();
    }
  });

  it('while linked, a takeover is refused (ERR_FDBROKER_NOT_PERMITTED, nothing handed over, no fd left); after close() it is not', async () => {
    const dir = tmpDir();
    const rx = receiver(path.join(dir, 'notify'));
    const sock = path.join(dir, 'b.sock');
    const broker = Broker.start({ controlPath: sock, inherit: false, listeners: [parseListenerSpec('http=tcp://127.0.0.1:0')] });
    const link = new SystemdLink(broker, new SdNotifier(path.join(dir, 'notify')));
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    try {
      link.ready();
      const before = fds();
      const err = await takeOver({ controlPath: sock, inherit: false }).then(() => undefined, (e: Error & { code?: string }) => e);
      expect(err?.code).toBe('ERR_FDBROKER_NOT_PERMITTED');
      expect(err?.message).toMatch(/NOTIFY_SOCKET=.*systemctl restart/);
      await sleep(100);
      expect(fds()).toBe(before);
      expect(broker.listenerInfos().map((l) => l.name)).toEqual(['http']);
      link.close();
      expect(broker.takeoverRefusal).toBeUndefined();
    } finally {
      link.close();
      broker.close();
      rx.close();
    }
  });
});
