// The /proc check of a ready where the broker may not read the app's fd
// table: a broker running as uid 65534 and an app as uid 65533. The check
// cannot tell, so the ready is accepted and status says "unverified" with
// why (PROTOCOL.md §2.6 rule 9): never refused on a guess. Even an app that
// serves on a port of its own is accepted there: the limit of the check.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { BrokerConnection } from '../../src/client/connection';
import { cleanup, tmpDir } from '../helpers';
import { NOBODY, runAs, sharedCopy, type SharedCopy } from '../other-user';
import { describeWith, root, setpriv } from '../requirements';

const APP_UID = NOBODY - 1;
let shared: SharedCopy;
beforeAll(() => { shared = sharedCopy(); });
afterAll(() => shared?.remove());
afterEach(cleanup);

describeWith([root('to run a broker and an app as two other uids with setpriv'), setpriv()], 'ready checked where /proc is not readable', () => {
  it('the ready of another uid\'s app is accepted as unverified (EACCES), even one on its own port', async () => {
    const dir = tmpDir();
    fs.chmodSync(dir, 0o711);
    const own = path.join(dir, 'own');
    fs.mkdirSync(own, { mode: 0o755 });
    fs.chownSync(own, NOBODY, NOBODY);
    const sock = path.join(own, 'b.sock');
    const broker = runAs(NOBODY, NOBODY, shared.root, process.execPath, [shared.cli,
      'serve', sock, '--listen', 'http=tcp://127.0.0.1:0', '--mode', '0666', '--allow-uid', String(APP_UID)]);
    await broker.waitFor(/fdbroker: ready on /);
    const app = runAs(APP_UID, APP_UID, shared.root, process.execPath, [path.join(shared.fixtures, 'gen-app.js')],
      { FDBROKER_SOCK: sock, TRUST_UIDS: String(NOBODY), OWN_PORT: '1' });
    await app.waitFor(/^ready \d+ gen 1$/m);
    const conn = await BrokerConnection.connect(sock, { trustUids: [NOBODY] });
    const g = (await conn.status()).generations[0]!;
    conn.close();
    expect(g.state).toBe('ready');
    expect(g.holdCheck).toMatchObject({ result: 'unverified', why: expect.stringMatching(/EACCES|EPERM/) });
  }, 20_000);
});
