// A client written in Python from PROTOCOL.md alone (test/fixtures/py_client.py)
// talks to the real broker: if it works, the document is enough to write one.
import * as path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { cleanup, FIXTURES, get, run, startBroker, tmpDir } from '../helpers';
import { describeWith, tool } from '../requirements';

const PY_CLIENT = path.join(FIXTURES, 'py_client.py');
const PYTHON = tool('python3', ['-c', 'import socket, sys; socket.SOCK_SEQPACKET; sys.exit(0 if sys.version_info >= (3, 8) else 1)'],
  'python3 (>= 3.8, with socket.SOCK_SEQPACKET)', 'apt-get install python3');

const py = (...args: string[]) => run('python3', [PY_CLIENT, ...args]);

afterEach(cleanup);

describeWith([PYTHON], 'a Python client written from PROTOCOL.md', () => {
  it('adopts the listener, checks it, and serves HTTP on it', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const app = py(broker.sock, 'http');
    const m = await app.waitFor(/^ready (\d+)$/m);
    expect(Number(m[1])).toBe(app.pid);
    for (let i = 0; i < 3; i++) {
      const res = await get(broker.ports.http!);
      expect(res.status).toBe(200);
      expect(res.body).toBe(`py ${app.pid}\n`);
    }
    expect(app.stderr()).toBe('');
  });

  it('status mode prints the status message, listing the listener and the adopting client', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const app = py(broker.sock, 'http');
    await app.waitFor(/^ready \d+$/m);
    const st = py(broker.sock, '--status');
    const { code } = await st.exited;
    expect(st.stderr()).toBe('');
    expect(code).toBe(0);
    const status = JSON.parse(st.stdout());
    expect(status).toMatchObject({ type: 'status', id: 1 });
    expect(status.broker).toMatchObject({ pid: broker.pid, protocol: 1, controlPath: broker.sock });
    expect(status.broker.software).toMatch(/^fdbroker\/\d+\.\d+\.\d+/);
    expect(status.listeners).toEqual([
      {
        name: 'http', kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: broker.ports.http, backlog: expect.any(Number),
        // Read from the socket, and who holds it: the adopting app.
        queued: 0, backlogInForce: expect.any(Number), holders: expect.arrayContaining([expect.objectContaining({ pid: app.pid })]),
      },
    ]);
    const holder = status.clients.find((c: { pid: number }) => c.pid === app.pid);
    expect(holder).toMatchObject({ pid: app.pid, adopted: ['http'] });
  });

  it('an unknown listener name gets an error reply: code on stderr, exit 3', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const c = py(broker.sock, 'nope');
    const { code } = await c.exited;
    expect(code).toBe(3);
    expect(c.stderr().split('\n')[0]).toBe('ERR_FDBROKER_UNKNOWN_LISTENER');
    expect(c.stdout()).toBe('');
  });

  it('offering only version 99 gets ERR_FDBROKER_VERSION listing the broker\'s versions, then the connection closes', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0']);
    const c = py(broker.sock, '--bad-version');
    const { code } = await c.exited;
    expect(c.stderr()).toBe('');
    expect(code).toBe(4);
    expect(c.stdout()).toBe('ERR_FDBROKER_VERSION [1] closed\n');
  });
});
