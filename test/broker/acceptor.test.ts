// The Acceptor's batches (transport/acceptor.ts): each connection of a batch
// is refused (answered, closed), handed on, or, when a handler throws in the
// middle of a batch, closed; none is leaked.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bindControlSocket } from '../../src/broker/control-path';
import { native } from '../../src/native/binding';
import { encodeError } from '../../src/protocol/messages';
import { cleanup, tmpDir } from '../helpers';

afterEach(cleanup);

const openFds = () => fs.readdirSync('/proc/self/fd').length;

/** `count` connections to `sock`, made and left queued (not accepted yet). */
function connectMany(sock: string, count: number): number[] {
  const n = native();
  return Array.from({ length: count }, () => {
    const fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_SEQPACKET);
    expect(n.connect(fd, { family: 'unix', path: sock })).toBe(0);
    return fd;
  });
}

describe('Acceptor batches', () => {
  it('an admit that throws in the middle of a batch: the connections not handed on are closed, the refused ones answered', () => {
    const sock = path.join(tmpDir(), 'ctl.sock');
    const acceptor = bindControlSocket(sock);
    const clients = connectMany(sock, 10);
    const reply = encodeError({ type: 'error', code: 'ERR_FDBROKER_ACCESS_DENIED', message: 'no' });
    const handed: number[] = [];
    let seen = 0;
    acceptor.admit = () => {
      seen++;
      if (seen === 6) throw new Error('admit failed');
      return seen % 2 === 0 ? { code: 'ERR_FDBROKER_ACCESS_DENIED', reply } : undefined;
    };
    acceptor.on('connection', (fd) => handed.push(fd));
    const before = openFds();
    // Called as the poller would, before the event loop gets to it (the batch is taken here).
    expect(() => (acceptor as unknown as { onReadable(status: number): void }).onReadable(0)).toThrow(/admit failed/);
    // 1, 3, 5 handed on (still open, the listener's); 2, 4 refused and 6-10 closed: nothing else stays open.
    expect(handed).toHaveLength(3);
    expect(openFds()).toBe(before + 3);
    const n = native();
    const buf = Buffer.alloc(4096);
    const got = clients.map((fd) => {
      const r = n.recvmsg(fd, buf, 0);
      return typeof r === 'number' ? r : r.bytes;
    });
    // The refused ones read their reason; the closed ones see the end of the connection (0 bytes); the handed-on ones nothing yet.
    expect(got[1]).toBe(reply.length);
    expect(got[3]).toBe(reply.length);
    for (const i of [5, 6, 7, 8, 9]) expect(got[i]).toBe(0);
    for (const i of [0, 2, 4]) expect(got[i]).toBeLessThan(0); // EAGAIN
    for (const fd of [...handed, ...clients]) n.close(fd);
    acceptor.close();
  });
});
