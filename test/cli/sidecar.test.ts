// The sidecar shape of a Kubernetes pod, simulated: the broker and the app in
// separate mount namespaces (each with a private /tmp), sharing the network
// namespace and one directory for the control socket (an emptyDir). A
// container restart is a new process in a new mount namespace. The PID
// namespace is shared (the pod's shareProcessNamespace: true): the broker
// identifies generations by the pid SO_PEERCRED gives, which is 0 for a peer
// in a PID namespace it cannot see (docs/guides/run.md).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, expect } from 'vitest';
import { CLI, cleanup, FIXTURES, get, ROOT, run, sleep, waitText, type Proc } from '../helpers';
import { failuresByKind, KILLED_PROCESS_KINDS, timedLoad } from '../run-helpers';
import { describeWith, itWith, root, tool } from '../requirements';
import { DEPLOY_EXIT } from '../../src/cli/deploy';

const GEN_APP = path.join(FIXTURES, 'gen-app.js');
const unshare = tool('unshare', ['--version'], 'unshare (util-linux)', 'apt-get install util-linux');
const shared: string[] = [];

afterEach(async () => {
  await cleanup();
  for (const d of shared.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/**
 * argv for `cmd` in a container of its own: a new mount namespace with an
 * empty private /tmp. The checkout (the image's files) stays visible, also
 * when it lives under /tmp (a CI clone): it is bound aside first and back
 * over the fresh tmpfs.
 */
function container(cmd: string[]): string[] {
  const script = 'set -e; tmp=$0; root=$1; shift; aside=/run/fdb-image-$$; '
    + 'case "$root/" in "$tmp"/*) mkdir -p "$aside"; mount --bind "$root" "$aside"; mount -t tmpfs tmpfs "$tmp"; '
    + 'mkdir -p "$root"; mount --bind "$aside" "$root";; *) mount -t tmpfs tmpfs "$tmp";; esac; exec "$@"';
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, os.tmpdir(), ROOT, ...cmd];
}

function startContainer(cmd: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const [file, ...args] = container(cmd);
  return run(file!, args, { env });
}

describeWith([root('mount namespaces'), unshare], 'sidecar: broker and app in separate mount namespaces of one pod', () => {
  itWith([], 'an app container restart after a SIGKILL and a deploy, under load: 0 refused, only the killed process\'s accepted requests fail', async () => {
    // The emptyDir: outside every container's private /tmp.
    const dir = fs.mkdtempSync('/var/tmp/fdb-pod-');
    fs.chmodSync(dir, 0o755);
    shared.push(dir);
    const sock = path.join(dir, 'control.sock');
    const broker = startContainer([process.execPath, CLI, 'serve', sock, '--listen', 'http=tcp://127.0.0.1:0', '--quiet', '--standby', '1000']);
    const port = Number((await broker.waitFor(/http=tcp:\/\/127\.0\.0\.1:(\d+)/))[1]);
    // The broker's /tmp is not the test's: its files are invisible here.
    const app1 = startContainer([process.execPath, GEN_APP], { FDBROKER_SOCK: sock });
    await app1.waitFor(/^ready \d+/m, 15_000);
    const loads = [timedLoad(port, { concurrency: 4 }), timedLoad(port, { concurrency: 4, keepAlive: true })];
    await sleep(300);

    // The app container dies; the kubelet starts it again: a new process in a new mount namespace.
    app1.kill('SIGKILL');
    await app1.exited;
    const app2 = startContainer([process.execPath, GEN_APP], { FDBROKER_SOCK: sock });
    await app2.waitFor(/^ready \d+/m, 15_000);

    // A deploy from yet another container (kubectl exec): the new version starts beside app2.
    const d = run(process.execPath, [CLI, 'deploy', sock, '--timeout', '15000', '--', ...container([process.execPath, GEN_APP])], { env: { FDBROKER_SOCK: sock } });
    expect((await d.exited).code, d.stderr()).toBe(DEPLOY_EXIT.deployed);
    await waitText(app2.stdout, /^drained \d+/m, 15_000);
    await sleep(300);
    const results = (await Promise.all(loads.map((l) => l.stop()))).flat();
    const failed = failuresByKind(results);
    for (const kind of Object.keys(failed)) expect(KILLED_PROCESS_KINDS.has(kind), JSON.stringify(failed)).toBe(true);
    expect(Object.values(failed).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(8);
    expect(failed.ECONNREFUSED ?? 0).toBe(0);
    const pid = JSON.parse(d.stdout().trim()).pid as number;
    expect((await get(port)).body).toMatch(new RegExp(`^${pid} gen`));
    process.kill(pid, 'SIGTERM');
  }, 60_000);
});
