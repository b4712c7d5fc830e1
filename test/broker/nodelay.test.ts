// ?nodelay=1: Linux carries TCP_NODELAY from a listening socket to the
// connections it accepts, so a program that never sets it (here a Python
// server under `fdbroker exec`) gets it anyway; without the option it does not.
import { afterEach, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import * as path from 'node:path';
import { CLI, cleanup, FIXTURES, run, startBroker, tmpDir } from '../helpers';
import { python3Command } from '../requirements';
import { parseListenerSpec } from '../../src/broker/spec';

afterEach(cleanup);

const python = python3Command;

function ask(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d) => { out += d; });
    s.on('end', () => resolve(out.trim()));
    s.on('error', reject);
  });
}

describe('tcp listener option nodelay', () => {
  for (const [q, want] of [['?nodelay=1', 'nodelay=1'], ['', 'nodelay=0']] as const) {
    it(`accepted connections have ${want} with "${q || 'no option'}"`, async () => {
      const broker = await startBroker(tmpDir(), [`http=tcp://127.0.0.1:0${q}`], ['--quiet']);
      const app = run(process.execPath, [CLI, 'exec', broker.sock, '--ready', 'immediate', '--', python(), path.join(FIXTURES, 'nodelay_server.py')]);
      await app.waitFor(/^serving \d+/m);
      expect(await ask(broker.ports.http!)).toBe(want);
      expect(await ask(broker.ports.http!)).toBe(want);
    });
  }

  it('parses nodelay=0|1 for tcp only', () => {
    expect(parseListenerSpec('a=tcp://127.0.0.1:0?nodelay=1').nodelay).toBe(true);
    expect(parseListenerSpec('a=tcp://127.0.0.1:0?nodelay=0').nodelay).toBeUndefined();
    expect(() => parseListenerSpec('a=tcp://127.0.0.1:0?nodelay=yes')).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_INVALID_SPEC' }));
    expect(() => parseListenerSpec('a=udp://127.0.0.1:0?nodelay=1')).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_INVALID_SPEC' }));
  });
});
