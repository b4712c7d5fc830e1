// Client-side races of issue 18 on real processes: a real `fdbroker serve`,
// generations running the library (test/fixtures), and the broker paused
// (SIGSTOP) so that events meet in the same turn of its event loop.
// Defect 2: a retire that arrives while a standby generation re-adopts.
// Defect 6: ready() pending when the generation is closed.
// (Defect 5, requests in flight together, is test/client/pipelining.test.ts.)
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BrokerConnection } from '../../src/client/connection';
import { native } from '../../src/native/binding';
import { alive, cleanup, FIXTURES, run, sleep, startApp, startBroker, statusOf, tmpDir, waitText } from '../helpers';

afterEach(cleanup);

/**
 * Broker standby window of these tests (ms): long enough for the steps below
 * while A is paused (A's own window timer must not end its standby first,
 * also on a loaded machine), short enough to wait out once.
 */
const WINDOW_MS = 10_000;

describe('defect 2: a notice that arrives while a standby generation resumes is not dropped', () => {
  it('A standing by, B ready; B dies and C says ready before A reads its resume: A resumes, is retired again, and ends retiring (never serves beside C)', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet', '--standby', String(WINDOW_MS)]);
    const a = await startApp(broker.sock, { STANDBY: String(WINDOW_MS), LABEL: 'A' }, 'gen-app.js');
    const b = await startApp(broker.sock, { STANDBY: String(WINDOW_MS), LABEL: 'B' }, 'gen-app.js');
    await waitText(a.stdout, /^retire \d+ by \d+/m, 5000);
    // C: a generation run from this test, so its ready goes out at a chosen moment.
    const c = await BrokerConnection.connect(broker.sock, { timeout: 5000 });
    try {
      const j = await c.join(['http']);
      for (const l of j.listeners) native().close(l.fd);
      // A is paused: the broker's resume (B left) and retire (C ready) wait in its socket and are read together.
      a.kill('SIGSTOP');
      try {
        b.kill('SIGKILL');
        await b.exited;
        await until(async () => (await statusOf(broker.sock)).generations.find((g) => g.label === 'A')?.state === 'ready', 5000);
        await c.ready();
        const s = await statusOf(broker.sock);
        expect(s.generations.find((g) => g.label === 'A')?.state).toBe('standby');
      } finally {
        a.kill('SIGCONT');
      }
      await waitText(a.stdout, /^resume \d+ failed \d+/m, 5000);
      // A ends retiring within the window C's ready gave it (plus grace): it must not serve on beside C.
      const exited = await Promise.race([a.exited.then(() => 'exited'), sleep(WINDOW_MS + 6000).then(() => 'still running')]);
      expect(exited, `A's output:\n${a.stdout()}`).toBe('exited');
      expect(a.stdout()).toMatch(/^drained \d+/m);
      // Both retires were applied: the one before B died, and C's, which came during the resume.
      expect(a.stdout().match(/^retire \d+ by \d+$/gm)).toHaveLength(2);
      expect((await statusOf(broker.sock)).generations.map((g) => g.number)).toEqual([j.generation]);
    } finally {
      c.close();
    }
  }, 60_000);
});

/** Polls `check` until it holds, or fails after `timeoutMs`. */
async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe('defect 6: ready() settles when the generation is closed while its answer is pending', () => {
  it('broker paused, ready() asked, close(): ready() rejects with ERR_FDBROKER_CLOSED', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const app = run(process.execPath, [path.join(FIXTURES, 'ready-close-app.js')], { env: { FDBROKER_SOCK: broker.sock } });
    await app.waitFor(/^joined \d+ gen \d+/m);
    broker.kill('SIGSTOP');
    try {
      app.kill('SIGUSR2');
      await app.waitFor(/^ready-(ok|rejected \S+|unsettled)$/m, 8000);
    } finally {
      broker.kill('SIGCONT');
    }
    expect(app.stdout()).toMatch(/^ready-rejected ERR_FDBROKER_CLOSED$/m);
    expect((await app.exited).code).toBe(0);
  }, 20_000);

  it('broker gone (killed) while ready() waits for the rejoin, then close(): ready() rejects with ERR_FDBROKER_CLOSED', async () => {
    const broker = await startBroker(tmpDir(), ['http=tcp://127.0.0.1:0'], ['--quiet']);
    const app = run(process.execPath, [path.join(FIXTURES, 'ready-close-app.js')], { env: { FDBROKER_SOCK: broker.sock, CLOSE_AFTER_MS: '600' } });
    await app.waitFor(/^joined \d+ gen \d+/m);
    broker.kill('SIGSTOP');
    app.kill('SIGUSR2');
    await app.waitFor(/^ready-asked$/m);
    broker.kill('SIGKILL');
    await app.waitFor(/^ready-(ok|rejected \S+|unsettled)$/m, 8000);
    expect(app.stdout()).toMatch(/^ready-rejected ERR_FDBROKER_CLOSED$/m);
    expect(alive(broker.pid)).toBe(false);
  }, 20_000);
});
