// A root broker never changes the mode or owner of a file through a symlink
// that another user swapped in over its fresh socket (issue 22, item 1).
//
// The socket directory is world-writable and not sticky (accepted only with
// --insecure-dir / insecureDir): there uid 65534 can rename the broker's new
// socket away and put a symlink to a root-owned 0600 file in its place between
// bind(2) and the chmod/chown that sets the socket's mode and group. A racer
// (Python, as uid 65534 via setpriv) watches both socket names and does exactly
// that, while this process starts and stops a broker (in-process, to give the
// racer as many windows as possible) up to RACE_STARTS times or RACE_MS.
// Both victims must be unchanged after every start.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker';
import { parseListenerSpec } from '../../src/broker/spec';
import { cleanup, run, sleep, tmpDir } from '../helpers';
import { NOBODY, SYSTEM_PYTHON } from '../other-user';
import { describeWith, root, setpriv } from '../requirements';

afterEach(cleanup);

const RACE_STARTS = 200;
const RACE_MS = 30_000;

// Blindly and as fast as it can: rename whatever is at a watched name away
// and symlink the victim in its place. The broker's chmod/chown comes within
// microseconds of bind(2); a rename that finds nothing costs one syscall.
// The test removes what the racer leaves before each start.
const RACER = String.raw`
import os, sys
pairs = list(zip(sys.argv[1::2], sys.argv[2::2]))
swaps = 0
print("ready", flush=True)
while True:
    for p, victim in pairs:
        try:
            os.rename(p, p + ".old")
        except OSError:
            continue
        try:
            os.symlink(victim, p)
        except OSError:
            pass
        swaps += 1
        print("swaps", swaps, flush=True)
`;

describeWith([root('to own the victim files and race as uid 65534'), setpriv()], 'no chmod or chown through a symlink', () => {
  it(`a racer as uid 65534 swaps symlinks over the fresh sockets in a world-writable dir over up to ${RACE_STARTS} starts: the victims never change`, async () => {
    const base = tmpDir();
    fs.chmodSync(base, 0o711);
    const ww = path.join(base, 'ww');
    fs.mkdirSync(ww);
    fs.chmodSync(ww, 0o777); // world-writable, not sticky
    const secret = path.join(base, 'secret');
    fs.mkdirSync(secret, { mode: 0o711 });
    const victims = [path.join(secret, 'shadow-listener'), path.join(secret, 'shadow-control')];
    for (const v of victims) fs.writeFileSync(v, 'root only\n', { mode: 0o600 });
    const listenerPath = path.join(ww, 'app.sock');
    const controlPath = path.join(ww, 'ctl.sock');
    const script = path.join(base, 'racer.py');
    fs.writeFileSync(script, RACER, { mode: 0o644 });
    const racer = run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', SYSTEM_PYTHON, script,
      listenerPath, victims[0]!, controlPath, victims[1]!]);
    await racer.waitFor(/^ready$/m);
    const before = victims.map((v) => fs.lstatSync(v));
    const spec = parseListenerSpec(`app=unix:${listenerPath}?mode=0666`);
    const t0 = Date.now();
    let starts = 0;
    let failedStarts = 0;
    const reasons = new Set<string>();
    let changed: string | undefined;
    while (starts < RACE_STARTS && Date.now() - t0 < RACE_MS && changed === undefined) {
      starts++;
      for (const p of [listenerPath, controlPath]) for (const q of [p, `${p}.old`]) fs.rmSync(q, { force: true });
      try {
        // group 65534 makes the control socket go through chown as well as chmod.
        const b = Broker.start({ controlPath, listeners: [spec], insecureDir: true, mode: 0o660, group: NOBODY, inherit: false });
        b.close();
      } catch (err) {
        reasons.add(`${(err as { code?: string }).code}: ${(err as Error).message}`);
        failedStarts++; // The racer put a symlink at a path first: refused, as it should be.
      }
      victims.forEach((v, i) => {
        const st = fs.lstatSync(v);
        if (st.mode !== before[i]!.mode || st.uid !== before[i]!.uid || st.gid !== before[i]!.gid) {
          changed = `${v}: mode ${(st.mode & 0o7777).toString(8)} uid ${st.uid} gid ${st.gid} after start ${starts}`;
        }
      });
      await sleep(1);
    }
    racer.kill('SIGKILL');
    await racer.exited;
    // The highest count printed: the process may end before its last line is read whole.
    const swaps = Math.max(0, ...[...racer.stdout().matchAll(/swaps (\d+)/g)].map((m) => Number(m[1])));
    console.log(`symlink race: ${starts} starts (${failedStarts} refused a symlink at the path), ${swaps} swaps by uid ${NOBODY}, ${Date.now() - t0} ms`);
    console.log([...reasons].join('\n'));
    expect(changed).toBeUndefined();
    // The race was really run: the racer swapped sockets out many times.
    expect(swaps).toBeGreaterThan(starts / 4);
    for (const v of victims) expect(fs.lstatSync(v).mode & 0o7777).toBe(0o600);
  }, RACE_MS + 30_000);
});

describe('socket directories', () => {
  it('a unix listener in a world-writable, non-sticky directory is refused (ERR_FDBROKER_INSECURE_PATH) unless insecureDir', () => {
    const base = tmpDir();
    const ww = path.join(base, 'ww');
    fs.mkdirSync(ww);
    fs.chmodSync(ww, 0o777);
    const controlPath = path.join(base, 'ctl.sock');
    const spec = parseListenerSpec(`app=unix:${path.join(ww, 'app.sock')}`);
    expect(() => Broker.start({ controlPath, listeners: [spec], inherit: false }))
      .toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_INSECURE_PATH', message: expect.stringMatching(/listener "app"/) }));
    expect(fs.readdirSync(ww)).toEqual([]);
    const b = Broker.start({ controlPath, listeners: [spec], inherit: false, insecureDir: true });
    // Nothing is left behind but the socket itself (the private directory is gone).
    expect(fs.readdirSync(ww)).toEqual(['app.sock']);
    b.close();
  });

  it('on close, the control path is unlinked only if it still names this broker\'s socket (pathRemoved says which)', () => {
    const base = tmpDir();
    const controlPath = path.join(base, 'ctl.sock');
    const b = Broker.start({ controlPath, listeners: [], inherit: false });
    expect(fs.readdirSync(base).filter((f) => f.startsWith('.fdbroker-'))).toEqual([]);
    fs.renameSync(controlPath, path.join(base, 'moved.sock'));
    fs.writeFileSync(controlPath, 'someone else\'s');
    b.close();
    expect(b.pathRemoved).toBe(false);
    expect(fs.readFileSync(controlPath, 'utf8')).toBe('someone else\'s');
    fs.rmSync(controlPath);
    const b2 = Broker.start({ controlPath, listeners: [], inherit: false });
    b2.close();
    expect(b2.pathRemoved).toBe(true);
    expect(fs.existsSync(controlPath)).toBe(false);
  });
});
