// The Node-version smoke test: .ci/run runs it (with a few integration files)
// under each supported Node from the registry, so it checks that the Node
// running vitest is the one that serves and adopts.
import { afterEach, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { CLI, ROOT, cleanup, tmpDir } from '../helpers';
import { smoke } from './smoke';

afterEach(cleanup);

describe(`smoke on Node ${process.version}`, () => {
  it('serve, adopt, and HTTP on the adopted fd, all on this Node', async () => {
    const r = await smoke({ node: [process.execPath], cli: CLI, dir: tmpDir(), module: path.join(ROOT, 'dist') });
    expect(r.body).toBe(`served by ${r.appPid}\n`);
    expect(r.appNode).toBe(process.version);
    expect(r.appArch).toBe(process.arch);
  });
});
