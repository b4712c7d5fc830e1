// Against a broker without the optional features (test/fixtures/old_broker.py,
// protocol v1 as it was before them): the client never sends what it did not
// announce ("leaving"), and heartbeat is asked only by the process that
// serves (the library), never by the `fdbroker exec` wrapper.
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, CLI, FIXTURES, run, tmpDir } from '../helpers';
import { python3Command } from '../requirements';

afterEach(cleanup);

function oldBroker(): { sock: string; fake: ReturnType<typeof run> } {
  const sock = path.join(tmpDir(), 'old.sock');
  // Never retires on its own within these tests.
  const fake = run(python3Command(), [path.join(FIXTURES, 'old_broker.py'), sock], { env: { RETIRE_AFTER_MS: '60000' } });
  return { sock, fake };
}

describe('heartbeat: asked by the process that serves, not by a wrapper', () => {
  it('the library joins with heartbeat', async () => {
    const { sock, fake } = oldBroker();
    await fake.waitFor(/^ready \d+/m);
    const app = run(process.execPath, [path.join(FIXTURES, 'gen-app.js')], { env: { FDBROKER_SOCK: sock } });
    await app.waitFor(/^ready \d+ gen 1/m);
    expect(fake.stdout()).toMatch(/^join heartbeat=yes$/m);
  });

  it('fdbroker exec joins without heartbeat (a hung program must not pass on its wrapper\'s answers)', async () => {
    const { sock, fake } = oldBroker();
    await fake.waitFor(/^ready \d+/m);
    const w = run(process.execPath, [CLI, 'exec', sock, '--ready', 'immediate', '--', 'sleep', '30']);
    await fake.waitFor(/^join heartbeat=\w+$/m);
    expect(fake.stdout()).toMatch(/^join heartbeat=no$/m);
    w.kill('SIGTERM');
    await w.exited;
  });
});

describe('planned stop: no "leaving" to a broker that does not list it', () => {
  it('fdbroker exec passing on a SIGTERM from outside closes without sending "leaving"', async () => {
    const { sock, fake } = oldBroker();
    await fake.waitFor(/^ready \d+/m);
    const w = run(process.execPath, [CLI, 'exec', sock, '--ready', 'immediate', '--', 'sleep', '30']);
    // Its ready is acked: then stop it from outside.
    await fake.waitFor(/^acked ready$/m);
    w.kill('SIGTERM');
    await w.exited;
    await fake.exited;
    expect(fake.stdout()).toMatch(/^left hello,join,ready$/m);
    expect(fake.stdout()).not.toMatch(/unknown/);
  });
});
