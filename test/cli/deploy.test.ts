// `fdbroker deploy`: under `fdbroker run` (no command: run rolls its own,
// as on disk now) and beside `fdbroker serve` (with a command). Real
// processes and HTTP load on 127.0.0.1, clients that never retry.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { alive, CLI, cleanup, FIXTURES, get, run, sleep, startBroker, tmpDir, waitText } from '../helpers';
import { failuresByKind, readyPid, RUN_APP, startRun, timedLoad } from '../run-helpers';
import { DEPLOY_EXIT } from '../../src/cli/deploy';

afterEach(cleanup);

const GEN_APP = path.join(FIXTURES, 'gen-app.js');

async function deployCmd(sock: string, extra: string[], env: NodeJS.ProcessEnv = {}) {
  const d = run(process.execPath, [CLI, 'deploy', sock, '--timeout', '15000', ...extra], { env });
  const ex = await d.exited;
  const lines = d.stdout().trim().split('\n');
  expect(lines, d.stdout()).toHaveLength(1);
  return { code: ex.code, verdict: JSON.parse(lines[0]!) as { verdict: string; pid: number; wait: { result: string; pid?: number } | null }, stderr: d.stderr() };
}

describe('fdbroker deploy', () => {
  it('under run: deploys the command as on disk now under load (0 failed), then rolls back a version that crashes, printing its last lines', async () => {
    const dir = tmpDir();
    const mode = path.join(dir, 'mode');
    const r = await startRun(dir, ['--library', '--quiet'], [process.execPath, RUN_APP], { MODE_FILE: mode });
    const v1 = await readyPid(r, 1);
    const loads = [timedLoad(r.port, { concurrency: 4 }), timedLoad(r.port, { concurrency: 4, keepAlive: true })];
    await sleep(300);

    const d2 = await deployCmd(r.sock, []);
    expect(d2.code).toBe(DEPLOY_EXIT.deployed);
    expect(d2.verdict).toMatchObject({ verdict: 'deployed', wait: { result: 'ok' } });
    const v2 = d2.verdict.pid;
    expect(v2).not.toBe(v1);
    expect(d2.stderr).toMatch(/generation \d+ ready after \d+ ms/);
    expect(d2.stderr).toMatch(/old version drained and left after \d+ ms/);
    expect(alive(v1)).toBe(false);

    // The code on disk changes and the new version cannot start.
    fs.writeFileSync(mode, 'crash');
    const d3 = await deployCmd(r.sock, []);
    expect(d3.code).toBe(DEPLOY_EXIT.rolledBack);
    expect(d3.verdict.verdict).toBe('rolled_back');
    expect(d3.stderr).toMatch(/\| run-app \d+: cannot start: config key "port" is not a number/);

    await sleep(300);
    const results = (await Promise.all(loads.map((l) => l.stop()))).flat();
    expect(failuresByKind(results)).toEqual({});
    expect(results.length).toBeGreaterThan(50);
    // v2 serves on, and run did not count the failed deploy as a crash of what serves.
    expect((await get(r.port)).body).toMatch(new RegExp(`^${v2} gen`));
    expect(r.stderr()).toMatch(/deploy failed: pid \d+ exited with code 1; the previous version serves on/);
    expect(r.stderr()).not.toMatch(/without being told to retire/);
  });

  it('under run: a new version not ready by the deploy\'s timeout is stopped (exit 1), the old one serves on', async () => {
    const dir = tmpDir();
    const mode = path.join(dir, 'mode');
    const r = await startRun(dir, ['--library', '--quiet'], [process.execPath, RUN_APP], { MODE_FILE: mode });
    const v1 = await readyPid(r, 1);
    fs.writeFileSync(mode, 'never-ready');
    const d = run(process.execPath, [CLI, 'deploy', r.sock, '--timeout', '1500']);
    const ex = await d.exited;
    const verdict = JSON.parse(d.stdout().trim()) as { verdict: string; pid: number; wait: { result: string } };
    expect(ex.code).toBe(DEPLOY_EXIT.rolledBack);
    expect(verdict).toMatchObject({ verdict: 'rolled_back', wait: { result: 'timeout' } });
    await waitText(r.stderr, new RegExp(`deploy failed: pid ${verdict.pid} `));
    expect(alive(verdict.pid)).toBe(false);
    expect((await get(r.port)).body).toMatch(new RegExp(`^${v1} gen`));
  });

  it('SIGHUP to run is the same as deploy PATH', async () => {
    const r = await startRun(tmpDir(), ['--library', '--quiet'], [process.execPath, RUN_APP]);
    const v1 = await readyPid(r, 1);
    r.kill('SIGHUP');
    const v2 = await readyPid(r, 2);
    expect(v2).not.toBe(v1);
    await r.waitFor(new RegExp(`^drained ${v1}$`, 'm'));
    expect(alive(r.pid)).toBe(true);
  });

  it('with a command, beside fdbroker serve: deploys under load, then a crashing version exits 1 with its output shown', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', '1000']);
    const v1 = run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: broker.sock } });
    await v1.waitFor(/^ready/m);
    const load = timedLoad(broker.ports.http!, { concurrency: 6, keepAlive: true });
    await sleep(300);
    const log = path.join(tmpDir(), 'app.log');
    const d2 = await deployCmd(broker.sock, ['--log', log, '--', process.execPath, GEN_APP], { FDBROKER_SOCK: broker.sock });
    expect(d2.code).toBe(DEPLOY_EXIT.deployed);
    expect((await v1.exited).code).toBe(0);
    const d3 = await deployCmd(broker.sock, ['--log', log, '--', process.execPath, GEN_APP], { FDBROKER_SOCK: broker.sock, CRASH_BEFORE_READY: '1' });
    expect(d3.code).toBe(DEPLOY_EXIT.rolledBack);
    expect(d3.verdict).toMatchObject({ verdict: 'rolled_back', wait: { result: 'gone' } });
    expect(d3.stderr).toMatch(new RegExp(`\\| crashing ${d3.verdict.pid} gen \\d+`));
    const results = await load.stop();
    expect(failuresByKind(results)).toEqual({});
    expect((await get(broker.ports.http!)).body).toMatch(new RegExp(`^${d2.verdict.pid} gen`));
    process.kill(d2.verdict.pid, 'SIGTERM');
  });

  it('with a command whose descendant joins (a wrapper such as npx or sh): the verdict names the generation\'s own pid and the one started', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    // sh stays the parent (two commands, no exec): the generation is its child, fdbroker exec.
    const cmd = `"${process.execPath}" "${CLI}" exec "${broker.sock}" --ready immediate -- "${process.execPath}" "${path.join(FIXTURES, 'exec-listen-fds.js')}"; true`;
    const d = await deployCmd(broker.sock, ['--', 'sh', '-c', cmd]);
    expect(d.code, d.stderr).toBe(DEPLOY_EXIT.deployed);
    const gen = d.verdict.wait!.pid!;
    expect(gen).not.toBe(d.verdict.pid);
    expect(d.stderr).toMatch(new RegExp(`deployed in \\d+ ms: pid ${gen} \\(generation \\d+, started as pid ${d.verdict.pid}\\) serves`));
    process.kill(-d.verdict.pid, 'SIGTERM');
  });

  it('with a command: a new version that dies right after ready is rolled back after ready (exit 5); the old one serves again', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', '5000']);
    const v1 = run(process.execPath, [GEN_APP], { env: { FDBROKER_SOCK: broker.sock } });
    await v1.waitFor(/^ready/m);
    const log = path.join(tmpDir(), 'app.log');
    const d = run(process.execPath, [CLI, 'deploy', broker.sock, '--timeout', '15000', '--log', log, '--', process.execPath, GEN_APP], { env: { FDBROKER_SOCK: broker.sock } });
    // The new version says ready; then it dies, within v1's standby window.
    const line = await waitText(() => { try { return fs.readFileSync(log, 'utf8'); } catch { return ''; } }, /^ready (\d+) gen/m, 15_000);
    // Once deploy has seen it ready (it polls status): a version that is ready and gone between two polls
    // looks to deploy like one that never joined (exit 1), a limit of polling the broker's table.
    await waitText(d.stderr, /generation \d+ ready after/, 15_000);
    process.kill(Number(line[1]), 'SIGKILL');
    const ex = await d.exited;
    expect(ex.code, d.stderr()).toBe(DEPLOY_EXIT.rolledBackAfterReady);
    expect(JSON.parse(d.stdout().trim())).toMatchObject({ verdict: 'rolled_back_after_ready', wait: { result: 'rolledBack' } });
    await v1.waitFor(/^resume \d+/m);
    expect((await get(broker.ports.http!)).body).toMatch(new RegExp(`^${v1.pid} gen`));
  });

  it('without a command on a plain broker: exit 4, saying to give the command', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const d = await deployCmd(broker.sock, []);
    expect(d.code).toBe(DEPLOY_EXIT.error);
    expect(d.stderr).toMatch(/no `fdbroker run` on .*give the command/);
  });

  it('at a path where nothing is: exit 4, saying nothing runs there and how to start one', async () => {
    const d = await deployCmd(path.join(tmpDir(), 'nope.sock'), []);
    expect(d.code).toBe(DEPLOY_EXIT.error);
    expect(d.stderr).toMatch(/nothing at .*nope\.sock: no broker runs there; start one \(`fdbroker run /);
  });
});
