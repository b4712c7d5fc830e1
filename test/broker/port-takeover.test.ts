// No other user can bind a port the broker holds, tcp or udp, IPv4 or IPv6,
// with SO_REUSEADDR, SO_REUSEPORT, both or neither; datagrams sent to a udp
// listener reach the app that adopted it; a second broker on the same port
// fails with EADDRINUSE naming the listener. The other user is uid 65534
// (setpriv) running a system Python from a world-readable temp dir.
import * as dgram from 'node:dgram';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { adoptListeners } from '../../src/client/adopt';
import { cleanup, CLI, run, startBroker, tmpDir, waitText } from '../helpers';
import { NOBODY, runAs, sharedCopy, SYSTEM_PYTHON, type SharedCopy } from '../other-user';
import { describeWith, file, root, setpriv } from '../requirements';

afterEach(cleanup);

/** How long the other user's process holds what it bound, reading datagrams. */
const HOLD_MS = 1500;
const DATAGRAMS = 20;

interface Attempt { target: string; opts: string; error: string | null }

describeWith([root('to run a process as uid 65534'), setpriv(), file(SYSTEM_PYTHON, `a system python3 (${SYSTEM_PYTHON}) uid 65534 can run`, 'apt-get install python3')],
  'ports the broker holds, against another local user', () => {
    let shared: SharedCopy;
    beforeAll(() => { shared = sharedCopy(); });
    afterAll(() => shared?.remove());

    it('uid 65534 cannot bind any of them (EADDRINUSE for every option set), and datagrams reach the app that adopted the udp listeners', async () => {
      const broker = await startBroker(tmpDir(), ['t4=tcp://127.0.0.1:0', 't6=tcp://[::1]:0', 'u4=udp://127.0.0.1:0', 'u6=udp://[::1]:0'], ['--quiet']);
      const p = broker.ports;
      // The app: adopts both udp listeners and counts what arrives.
      const ls = await adoptListeners(broker.sock, { names: ['u4', 'u6'] });
      const got = { u4: 0, u6: 0 };
      const socks = (['u4', 'u6'] as const).map((name) => {
        const s = dgram.createSocket(name === 'u4' ? 'udp4' : 'udp6');
        s.on('message', () => { got[name]++; });
        ls[name]!.attach(s);
        return s;
      });
      try {
        const targets = [
          `tcp,4,127.0.0.1,${p.t4}`, `tcp,4,0.0.0.0,${p.t4}`, `tcp,6,::1,${p.t6}`, `tcp,6,::,${p.t6}`,
          `udp,4,127.0.0.1,${p.u4}`, `udp,4,0.0.0.0,${p.u4}`, `udp,6,::1,${p.u6}`, `udp,6,::,${p.u6}`,
        ];
        const other = runAs(NOBODY, NOBODY, shared.root, SYSTEM_PYTHON, [path.join(shared.fixtures, 'bind_attempt.py'), ...targets],
          { HOLD_MS: String(HOLD_MS) });
        const first = JSON.parse((await other.waitFor(/^\{"uid".*\n/))[0]) as { uid: number; results: Attempt[] };
        expect(first.uid).toBe(NOBODY);
        expect(first.results).toHaveLength(targets.length * 4);
        // Every attempt, listed, so a failure shows which ones got through.
        expect.soft(first.results.filter((r) => r.error !== 'EADDRINUSE')).toEqual([]);

        // While uid 65534 still holds whatever it bound: every datagram reaches the app.
        const client4 = dgram.createSocket('udp4');
        const client6 = dgram.createSocket('udp6');
        for (let i = 0; i < DATAGRAMS; i++) {
          client4.send(`d${i}`, p.u4!, '127.0.0.1');
          client6.send(`d${i}`, p.u6!, '::1');
        }
        try {
          await waitText(() => `${got.u4} ${got.u6}`, new RegExp(`^${DATAGRAMS} ${DATAGRAMS}$`), HOLD_MS - 300);
        } finally {
          client4.close();
          client6.close();
        }
        const { code } = await other.exited;
        expect(code, other.stderr()).toBe(0);
        expect(JSON.parse(other.stdout().trim().split('\n').at(-1)!)).toEqual({ received: 0 });
      } finally {
        for (const s of socks) s.close();
      }
    });

    it('a second broker on the same udp (or tcp) port exits 1 with EADDRINUSE naming the listener', async () => {
      const broker = await startBroker(tmpDir(), ['u4=udp://127.0.0.1:0', 'u6=udp://[::1]:0', 't4=tcp://127.0.0.1:0'], ['--quiet']);
      const p = broker.ports;
      for (const [spec, shown] of [
        [`dns=udp://127.0.0.1:${p.u4}`, `udp://127.0.0.1:${p.u4}`],
        [`dns6=udp://[::1]:${p.u6}`, `udp://\\[::1\\]:${p.u6}`],
        [`web=tcp://127.0.0.1:${p.t4}`, `tcp://127.0.0.1:${p.t4}`],
      ] as const) {
        const second = run(process.execPath, [CLI, 'serve', path.join(tmpDir(), 'second.sock'), '--listen', spec]);
        // Bounded: a second broker that did bind says ready and serves on.
        const outcome = await Promise.race([second.exited.then(({ code }) => `exit ${code}`), second.waitFor(/^fdbroker: ready on .*$/m, 10_000).then((m) => m[0], () => 'no ready line')]);
        expect(outcome, `${spec}: ${second.stderr()}`).toBe('exit 1');
        const name = spec.split('=')[0]!;
        expect(second.stderr()).toMatch(new RegExp(`listener "${name}" cannot bind ${shown} \\(EADDRINUSE\\)`));
      }
    });
  });
