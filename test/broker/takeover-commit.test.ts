// A takeover is committed only when the successor's own socket answers at the
// path (issue 22, item 6): a "committed" while the path was merely unlinked
// (or names some other socket) is refused, and the old broker serves on and
// binds the path again instead of exiting with nobody on it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker';
import { BrokerConnection } from '../../src/client/connection';
import { PROTOCOL_VERSION } from '../../src/protocol/limits';
import { VERSION } from '../../src/protocol/version';
import { native } from '../../src/native/binding';
import { cleanup, sleep, statusOf, tmpDir } from '../helpers';

afterEach(cleanup);

it('"committed" with the control path unlinked is refused; the old broker keeps its listeners and binds the path again', async () => {
  const dir = tmpDir();
  const sock = path.join(dir, 'b.sock');
  const broker = Broker.start({ controlPath: sock, inherit: false, listeners: [{ name: 'web', kind: 'tcp', host: '127.0.0.1', port: 0 }] });
  try {
    const conn = await BrokerConnection.connect(sock);
    const { id, listeners } = await conn.takeover(PROTOCOL_VERSION, VERSION);
    for (const l of listeners) native().close(l.fd);
    fs.unlinkSync(sock); // nobody answers on the path now
    await expect(conn.commit(id, 2000)).rejects.toMatchObject({ code: 'ERR_FDBROKER_PROTOCOL' });
    conn.close();
    // The old broker serves on at the path.
    const t0 = Date.now();
    while (!fs.existsSync(sock) && Date.now() - t0 < 3000) await sleep(20);
    const s = await statusOf(sock);
    expect(s.broker.pid).toBe(process.pid);
    expect(s.listeners.map((l) => l.name)).toEqual(['web']);
  } finally {
    broker.close();
  }
});
