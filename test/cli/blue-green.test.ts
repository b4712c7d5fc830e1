// examples/blue-green.sh: deploy v2 over v1 under load, and roll back when v2
// fails to start. Real broker, real apps, real HTTP on 127.0.0.1.
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { alive, CLI, cleanup, FIXTURES, get, loadLoop, ROOT, run, sleep, startBroker, tmpDir } from '../helpers';
import { parentPid } from '../../src/cli/proc-tree';

const SCRIPT = path.join(ROOT, 'examples', 'blue-green.sh');
const GEN_APP = path.join(FIXTURES, 'gen-app.js');
/** The quick start's app (README, examples/app.js): a generation. */
const QUICK_START_APP = path.join(ROOT, 'examples', 'app.js');
/** An app that adopts with adoptListeners() and disconnects: it holds the listener but is no generation. */
const PLAIN_ADOPTER = path.join(FIXTURES, 'http-app.js');
/** A program that serves LISTEN_FDS (for `fdbroker exec`). */
const PLAIN_APP = path.join(FIXTURES, 'exec-listen-fds.js');
/** A piped or captured deploy must be over by then (it is over in well under a second here). */
const PIPE_MAX_MS = 8_000;
const started = new Set<number>();

afterEach(async () => {
  // blue-green.sh starts each version with setsid: its pid leads a process
  // group holding the whole tree (a wrapper, `fdbroker exec` under it). End
  // the group: SIGTERM first, so exec stops its program, then SIGKILL.
  const groups = [...started];
  started.clear();
  const signalGroup = (pid: number, sig: NodeJS.Signals) => { try { process.kill(-pid, sig); } catch { /* gone */ } };
  for (const pid of groups) signalGroup(pid, 'SIGTERM');
  await sleep(300);
  for (const pid of groups) {
    signalGroup(pid, 'SIGKILL');
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  await cleanup();
});

function deploy(sock: string, env: NodeJS.ProcessEnv = {}, cmd: string[] = [process.execPath, GEN_APP]) {
  const p = run('bash', [SCRIPT, sock, ...cmd], {
    env: { FDBROKER: `${process.execPath} ${CLI}`, FDBROKER_SOCK: sock, TIMEOUT_MS: '10000', LOG: path.join(tmpDir(), 'app.log'), ...env },
  });
  return p;
}

/** The started pid (from stderr) and the one JSON verdict line (stdout). */
function outcome(d: { stdout: () => string; stderr: () => string }) {
  const pid = Number(d.stderr().match(/started pid (\d+)/)![1]);
  started.add(pid);
  const lines = d.stdout().trim().split('\n');
  expect(lines).toHaveLength(1);
  return { pid, verdict: JSON.parse(lines[0]!) as { verdict: string; pid: number; log: string;
    wait: { result: string; pid?: number; generation?: number; older: Array<{ pid: number }>; holders: Array<{ pid: number; comm?: string; listeners: string[] }> } | null } };
}

describe('examples/blue-green.sh', () => {
  it('deploys v2 over v1 under load with 0 failed requests, then rolls back a v3 that crashes', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const v1 = run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: broker.sock } });
    await v1.waitFor(/^ready/m);
    const load = loadLoop(broker.ports.http!, { concurrency: 12, keepAlive: true });
    await sleep(300);

    const d2 = deploy(broker.sock);
    const r2 = await d2.exited;
    const { pid: v2pid, verdict: j2 } = outcome(d2);
    expect(r2.code).toBe(0);
    expect(j2).toMatchObject({ verdict: 'deployed', pid: v2pid, wait: { result: 'ok', pid: v2pid, older: [] } });
    expect((await v1.exited).code).toBe(0);

    const d3 = deploy(broker.sock, { CRASH_BEFORE_READY: '1' });
    const r3 = await d3.exited;
    expect(outcome(d3).verdict).toMatchObject({ verdict: 'rolled_back', wait: { result: 'gone' } });
    expect(r3.code).toBe(1);
    expect(d3.stderr()).toMatch(/rolled back/);

    await sleep(300);
    const stats = await load.stop();
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
    expect(Object.keys(stats.servedBy).sort()).toEqual([String(v1.pid), String(v2pid)].sort());
    // v2 still serves after the failed v3.
    const after = loadLoop(broker.ports.http!, { concurrency: 2 });
    await sleep(200);
    const s = await after.stop();
    expect(Object.keys(s.servedBy)).toEqual([String(v2pid)]);
  });

  it('the quick start\'s app (examples/app.js) is a generation: deployed over itself with the script\'s own CLI (no FDBROKER), the old one leaves; 0 failed', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', '500']);
    const v1 = run(process.execPath, [QUICK_START_APP], { env: { FDBROKER_SOCK: broker.sock, APP_VERSION: 'v1' } });
    await v1.waitFor(/^v1: serving on port \d+, pid \d+, generation \d+$/m);
    const load = loadLoop(broker.ports.http!, { concurrency: 6, keepAlive: true });
    await sleep(300);
    // FDBROKER unset: the script runs bin/fdbroker.js of the package it comes with.
    const d2 = deploy(broker.sock, { FDBROKER: '', APP_VERSION: 'v2' }, [process.execPath, QUICK_START_APP]);
    const r2 = await d2.exited;
    const { pid: v2pid, verdict } = outcome(d2);
    expect(r2.code, d2.stderr()).toBe(0);
    expect(verdict).toMatchObject({ verdict: 'deployed', pid: v2pid, wait: { result: 'ok', pid: v2pid, older: [], holders: [] } });
    expect(d2.stderr()).toMatch(new RegExp(`deployed in \\d+ ms: pid ${v2pid} serves and the older generations have left`));
    expect(await v1.exited).toEqual({ code: 0, signal: null });
    await sleep(200);
    const stats = await load.stop();
    expect(stats.byKind).toEqual({});
    expect(stats.failed).toBe(0);
    expect(stats.ok).toBeGreaterThan(0);
    // Only v2 answers now.
    expect(await get(broker.ports.http!)).toEqual({ status: 200, body: `hello from v2 (pid ${v2pid})\n` });
  });

  it('a listener held by a process that is not a generation: the verdict, wait and status name it, never "older generations have left"', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', '500']);
    const plain = run(process.execPath, [PLAIN_ADOPTER], { env: { FDBROKER_SOCK: broker.sock } });
    await plain.waitFor(/^ready \d+/m);
    const v1 = run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: broker.sock } });
    await v1.waitFor(/^ready/m);
    const d2 = deploy(broker.sock);
    const r2 = await d2.exited;
    const { pid: v2pid, verdict } = outcome(d2);
    // The new version serves: deployed (exit 0), and the verdict carries the holder.
    expect(r2.code, d2.stderr()).toBe(0);
    expect(verdict).toMatchObject({ verdict: 'deployed', pid: v2pid, wait: { result: 'ok', holders: [{ pid: plain.pid, comm: 'node', listeners: ['http'] }] } });
    expect(d2.stderr()).toMatch(new RegExp(`but pid ${plain.pid} \\(node\\) holds http and is not a generation: it serves on`));
    expect(d2.stderr()).toMatch(/the old code may still answer/);
    expect(d2.stderr()).not.toMatch(/older generations have left/);
    expect((await v1.exited).code).toBe(0);
    // The plain adopter still serves beside v2: the warning is true.
    const load = loadLoop(broker.ports.http!, { concurrency: 8, keepAlive: false });
    await sleep(500);
    const stats = await load.stop();
    expect(stats.failed).toBe(0);
    expect(stats.servedBy[String(plain.pid)]).toBeGreaterThan(0);
    // `status` says it in a line of its own.
    const st = spawnSync(process.execPath, [CLI, 'status', broker.sock], { encoding: 'utf8' });
    expect(st.stdout).toContain(`not generations: pid ${plain.pid} (node) holds http: they serve on through every deploy`);
  });

  it('rolls back a v2 that never becomes ready (timeout), stopping it', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const v1 = run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: broker.sock } });
    await v1.waitFor(/^ready/m);
    const d2 = deploy(broker.sock, { NEVER_READY: '1', TIMEOUT_MS: '800' });
    const r2 = await d2.exited;
    const { pid, verdict } = outcome(d2);
    expect(verdict).toMatchObject({ verdict: 'rolled_back', wait: { result: 'timeout' } });
    expect(r2.code).toBe(1);
    expect(d2.stderr()).toMatch(/not ready within 800 ms/);
    await sleep(300);
    // Gone, or a zombie waiting for this container's init to reap it.
    const state = (() => { try { return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0]; } catch { return 'gone'; } })();
    expect(['gone', 'Z']).toContain(state);
    expect(v1.child.exitCode).toBe(null);
  });

  it('a ready new version whose predecessor still drains at the timeout is deployed (exit 3), never stopped', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    // v1 keeps serving when told to retire: a drain longer than the deploy's timeout.
    const v1 = run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: broker.sock, IGNORE_RETIRE: '1' } });
    await v1.waitFor(/^ready/m);
    const d2 = deploy(broker.sock, { TIMEOUT_MS: '1500' });
    const r2 = await d2.exited;
    const { pid, verdict } = outcome(d2);
    expect(r2.code).toBe(3);
    expect(verdict).toMatchObject({ verdict: 'draining', pid, wait: { result: 'draining', pid, older: [{ pid: v1.pid }] } });
    expect(d2.stderr()).toMatch(/still draining/);
    expect(alive(pid)).toBe(true);
    const s = await loadLoop(broker.ports.http!, { concurrency: 2 });
    await sleep(300);
    const st = await s.stop();
    expect(st.failed).toBe(0);
    expect(st.servedBy[String(pid)]).toBeGreaterThan(0);
  });

  it('waits on the generation a wrapper\'s child joined with (sh -c that stays, fdbroker exec under it)', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const v1 = run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: broker.sock } });
    await v1.waitFor(/^ready/m);
    // sh stays the parent (a command after node); node joins as the generation.
    const d2 = deploy(broker.sock, {}, ['sh', '-c', `"${process.execPath}" "${GEN_APP}"; exit $?`]);
    const r2 = await d2.exited;
    const { pid: shPid, verdict: j2 } = outcome(d2);
    expect(r2.code).toBe(0);
    expect(j2.verdict).toBe('deployed');
    expect(j2.wait!.pid).not.toBe(shPid);
    expect(parentPid(j2.wait!.pid!)).toBe(shPid);
    expect((await v1.exited).code).toBe(0);
    // Two levels: sh -c running `fdbroker exec`, which runs a program.
    const d3 = deploy(broker.sock, {}, ['sh', '-c', `"${process.execPath}" "${CLI}" exec "${broker.sock}" --ready immediate -- "${process.execPath}" "${PLAIN_APP}"; exit $?`]);
    const r3 = await d3.exited;
    const { pid: sh3, verdict: j3 } = outcome(d3);
    expect(r3.code).toBe(0);
    expect(j3.verdict).toBe('deployed');
    expect(parentPid(j3.wait!.pid!)).toBe(sh3);
    expect(alive(j2.wait!.pid!)).toBe(false);
  });

  it('does not hang when its output is piped (| cat) or captured ($(...)), while the new version runs on', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const env = { FDBROKER: `${process.execPath} ${CLI}`, FDBROKER_SOCK: broker.sock, TIMEOUT_MS: '10000' };
    const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
    const cmd = `${q(SCRIPT)} ${q(broker.sock)} ${q(process.execPath)} ${q(GEN_APP)}`;
    const piped = run('bash', ['-c', `${cmd} 2>&1 | cat`], { env });
    const t0 = Date.now();
    const rp = await Promise.race([piped.exited, sleep(PIPE_MAX_MS).then(() => 'hung' as const)]);
    expect(rp).not.toBe('hung');
    expect((rp as { code: number }).code).toBe(0);
    const v1 = Number(piped.stdout().match(/started pid (\d+)/)![1]);
    started.add(v1);
    expect(alive(v1)).toBe(true);
    expect(piped.stdout()).toMatch(/"verdict":"deployed"/);
    const captured = run('bash', ['-c', `out=$(${cmd}); echo "got: $out"`], { env });
    const rc = await Promise.race([captured.exited, sleep(PIPE_MAX_MS).then(() => 'hung' as const)]);
    expect(rc).not.toBe('hung');
    const j = JSON.parse(captured.stdout().replace(/^got: /, ''));
    started.add(j.pid);
    expect(j.verdict).toBe('deployed');
    expect(alive(j.pid)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(2 * PIPE_MAX_MS);
  });
});
