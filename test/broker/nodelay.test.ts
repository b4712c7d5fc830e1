// TCP_NODELAY, on by default for tcp listeners (?nodelay=0 turns it off):
// Linux carries it from a listening socket to the connections it accepts, so
// a program that never sets it (here a Python server under `fdbroker exec`)
// gets it anyway. A reload that changes only the option applies it to the
// held socket in place: same port, same socket, the next connections have it.
import { afterEach, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { CLI, cleanup, FIXTURES, run, socketInodes, startBroker, tmpDir } from '../helpers';
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
  for (const [q, want] of [['', 'nodelay=1'], ['?nodelay=1', 'nodelay=1'], ['?nodelay=0', 'nodelay=0']] as const) {
    it(`accepted connections have ${want} with "${q || 'no option'}"`, async () => {
      const broker = await startBroker(tmpDir(), [`http=tcp://127.0.0.1:0${q}`], ['--quiet']);
      const app = run(process.execPath, [CLI, 'exec', broker.sock, '--ready', 'immediate', '--', python(), path.join(FIXTURES, 'nodelay_server.py')]);
      await app.waitFor(/^serving \d+/m);
      expect(await ask(broker.ports.http!)).toBe(want);
      expect(await ask(broker.ports.http!)).toBe(want);
    });
  }

  it('a reload that changes only nodelay (and the backlog) applies it to the held socket: same port, same socket, no restart', async () => {
    const dir = tmpDir();
    const config = path.join(dir, 'fdbroker.toml');
    fs.writeFileSync(config, '[listeners]\nhttp = "tcp://127.0.0.1:0?nodelay=0"\n');
    const broker = await startBroker(dir, [], ['--quiet', '--config', config]);
    const port = broker.ports.http!;
    const app = run(process.execPath, [CLI, 'exec', broker.sock, '--ready', 'immediate', '--', python(), path.join(FIXTURES, 'nodelay_server.py')]);
    await app.waitFor(/^serving \d+/m);
    expect(await ask(port)).toBe('nodelay=0');
    const inodesBefore = socketInodes(broker.pid);
    // The same address (port 0 is the port it got), other options.
    fs.writeFileSync(config, '[listeners]\nhttp = "tcp://127.0.0.1:0?backlog=64"\n');
    const r = spawnSync(process.execPath, [CLI, 'reload', broker.sock, '--json'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ added: [], removed: [], changed: ['http'], grants: [] });
    expect(await ask(port)).toBe('nodelay=1');
    expect(socketInodes(broker.pid)).toEqual(inodesBefore);
    const st = spawnSync(process.execPath, [CLI, 'status', broker.sock, '--json'], { encoding: 'utf8' });
    expect(JSON.parse(st.stdout).listeners).toMatchObject([{ name: 'http', port, backlog: 64, backlogInForce: 64 }]);
    // And off again.
    fs.writeFileSync(config, '[listeners]\nhttp = "tcp://127.0.0.1:0?backlog=64&nodelay=0"\n');
    expect(spawnSync(process.execPath, [CLI, 'reload', broker.sock], { encoding: 'utf8' }).status).toBe(0);
    expect(await ask(port)).toBe('nodelay=0');
    // A refused reload changes nothing and counts in the refusals.
    fs.writeFileSync(config, '[listeners]\nhttp = "tcp://127.0.0.1:0?nodelay=2"\n');
    expect(spawnSync(process.execPath, [CLI, 'reload', broker.sock], { encoding: 'utf8' }).status).toBe(1);
    expect(await ask(port)).toBe('nodelay=0');
    const after = JSON.parse(spawnSync(process.execPath, [CLI, 'status', broker.sock, '--json'], { encoding: 'utf8' }).stdout);
    expect(after.metrics.refusals).toEqual({ ERR_FDBROKER_INVALID_CONFIG: 1 });
  });

  it('parses nodelay=0|1 for tcp only; on unless nodelay=0', () => {
    expect(parseListenerSpec('a=tcp://127.0.0.1:0').nodelay).toBe(true);
    expect(parseListenerSpec('a=tcp://127.0.0.1:0?nodelay=1').nodelay).toBe(true);
    expect(parseListenerSpec('a=tcp://127.0.0.1:0?nodelay=0').nodelay).toBe(false);
    expect(parseListenerSpec('a=unix:/tmp/x.sock').nodelay).toBeUndefined();
    expect(parseListenerSpec('a=udp://127.0.0.1:0').nodelay).toBeUndefined();
    expect(() => parseListenerSpec('a=tcp://127.0.0.1:0?nodelay=yes')).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_INVALID_SPEC' }));
    expect(() => parseListenerSpec('a=udp://127.0.0.1:0?nodelay=1')).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_INVALID_SPEC' }));
  });
});
