// adoptListeners() with more listeners than fit in one message (SCM_MAX_FD =
// 253): the broker answers in several "listeners" parts, which reach the
// client's socket before it reads any of them. Every part must be collected
// (regression: parts read in the same turn as part 0 were once rejected as
// "unexpected listeners message").
import { afterEach, describe, expect, it } from 'vitest';
import { adoptListeners } from '../../src';
import { cleanup, fdCount, startBroker, tmpDir } from '../helpers';

afterEach(async () => { await cleanup(); });

describe('adopting more than 253 listeners', () => {
  it('collects every part, again and again, and leaks no fd', async () => {
    const n = 600;
    const listen = Array.from({ length: n }, (_, i) => `l${i}=tcp://127.0.0.1:0`);
    const broker = await startBroker(tmpDir(), listen);
    const before = fdCount(process.pid);
    for (let round = 0; round < 20; round++) {
      const got = await adoptListeners(broker.sock);
      expect(Object.keys(got)).toHaveLength(n);
      for (const l of Object.values(got)) {
        expect(l.port).toBeGreaterThan(0);
        l.close();
      }
    }
    const some = await adoptListeners(broker.sock, { names: ['l0', 'l300', 'l599'] });
    expect(Object.keys(some).sort()).toEqual(['l0', 'l300', 'l599']);
    for (const l of Object.values(some)) l.close();
    await new Promise((r) => setTimeout(r, 20));
    expect(fdCount(process.pid)).toBe(before);
  }, 60_000);
});
