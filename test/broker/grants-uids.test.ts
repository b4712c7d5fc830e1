// Per-name grants (src/broker/grants.ts) against a real broker, with clients
// running as other users (setpriv --reuid --regid --clear-groups, from a
// world-readable copy of the package: test/other-user.ts): a uid granted one
// listener gets that one only and learns no other name; a uid with no grant is
// refused at connect; status, deploy, reload and takeover are separate
// grants; a reload changes the rules and the summary says how, while a
// process that adopted before keeps its listener; refusals are audited and
// counted per uid and request.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker';
import type { RefusalSummary } from '../../src/broker/refusal-tally';
import type { AuditEvent } from '../../src/broker/audit';
import { cleanup, CLI, run, startBroker, statusOf, tmpDir, waitText, type BrokerProc, type Proc } from '../helpers';
import { runAs, secClient as secRun, sharedCopy, NOBODY, type SecResult, type SharedCopy, sharedDir } from '../other-user';
import { describeWith, root, setpriv } from '../requirements';

afterEach(cleanup);

/** A second unprivileged user besides nobody. */
const OTHER = 65533;
const AS_ROOT = [root('to run clients as other uids with setpriv'), setpriv()];

let shared: SharedCopy;
beforeAll(() => { shared = sharedCopy(); });
afterAll(() => shared?.remove());


const LISTEN = ['http=tcp://127.0.0.1:0', 'metrics=tcp://127.0.0.1:0', 'admin=tcp://127.0.0.1:0'];

function brokerFor(extra: string[], dir = sharedDir()): Promise<BrokerProc> {
  return startBroker(dir, LISTEN, ['--mode', '0666', ...extra]);
}

/** sec-client.js as uid/gid (other-user.ts), from this file's shared copy. */
const secClient = (sock: string, args: string[], uid = NOBODY, gid = uid): Promise<SecResult> => secRun(shared, sock, args, uid, gid);

/** Runs the CLI as `uid`. */
async function cliAs(uid: number, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = runAs(uid, uid, shared.root, process.execPath, [shared.cli, ...args]);
  const { code } = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** Nothing in `texts` names a listener (or a port) of `hidden`. */
function expectNoneNamed(texts: string[], broker: BrokerProc, hidden: string[]): void {
  for (const t of texts) {
    for (const n of hidden) {
      expect(t).not.toContain(`"${n}"`);
      expect(t).not.toMatch(new RegExp(`\\b${n}\\b`));
      expect(t).not.toContain(String(broker.ports[n]));
    }
  }
}

const get = (port: number) => new Promise<string>((resolve, reject) => {
  http.get({ host: '127.0.0.1', port, agent: false }, (res) => {
    let body = '';
    res.on('data', (d: Buffer) => { body += d.toString(); });
    res.on('end', () => resolve(body));
  }).on('error', reject);
});

describeWith(AS_ROOT, 'per-name grants, with other uids', () => {
  it('a uid granted only "metrics" gets that listener only, and no other name in any reply; a uid with no grant gets ERR_FDBROKER_ACCESS_DENIED and no name', async () => {
    const broker = await brokerFor(['--grant', `uid=${NOBODY} adopt=metrics`]);
    // Asking for all: only metrics, the broker's own socket (same port).
    expect(await secClient(broker.sock, ['adopt'])).toMatchObject({ ok: true, names: ['metrics'], ports: [broker.ports.metrics] });
    expect(await secClient(broker.sock, ['adopt', 'metrics'])).toMatchObject({ ok: true, names: ['metrics'] });
    // Asking for one it was not granted, existing or not: the same refusal, naming only what it asked.
    const http_ = await secClient(broker.sock, ['adopt', 'http']);
    const nosuch = await secClient(broker.sock, ['adopt', 'nosuch']);
    expect(http_).toMatchObject({ code: 'ERR_FDBROKER_NOT_PERMITTED', names: ['http'] });
    expect(nosuch).toMatchObject({ code: 'ERR_FDBROKER_NOT_PERMITTED', names: ['nosuch'] });
    expect(http_.message!.replace('http', 'nosuch')).toBe(nosuch.message);
    // No status and no deploy grant.
    const status = await secClient(broker.sock, ['status']);
    const join = await secClient(broker.sock, ['join']);
    expect(status.code).toBe('ERR_FDBROKER_NOT_PERMITTED');
    expect(join.code).toBe('ERR_FDBROKER_NOT_PERMITTED');
    // Raw: hello, adopt (all), status, join: one fd (metrics), two refusals.
    const raw = await secClient(broker.sock, ['raw']);
    const msgs = raw.messages!.map((m) => JSON.parse(m as string) as { type: string; id?: number; code?: string; listeners?: Array<{ name: string }> });
    expect(msgs.map((m) => [m.type, m.id, m.code])).toEqual([
      ['welcome', undefined, undefined], ['listeners', 1, undefined], ['error', 2, 'ERR_FDBROKER_NOT_PERMITTED'], ['error', 3, 'ERR_FDBROKER_NOT_PERMITTED'],
    ]);
    expect(msgs[1]!.listeners!.map((l) => l.name)).toEqual(['metrics']);
    expect(raw.fds).toBe(1);
    expectNoneNamed([...(raw.messages as string[]), nosuch.message!, status.message!, join.message!], broker, ['http', 'admin']);
    expectNoneNamed([http_.message!], broker, ['admin']);

    // Another uid, no rule: refused at connect, nothing named.
    const other = await secClient(broker.sock, ['raw'], OTHER);
    expect(other.fds).toBe(0);
    expect(other.messages).toHaveLength(1);
    expect(JSON.parse(other.messages![0] as string)).toMatchObject({ type: 'error', code: 'ERR_FDBROKER_ACCESS_DENIED' });
    expectNoneNamed(other.messages as string[], broker, ['http', 'admin', 'metrics']);
    expect((await secClient(broker.sock, ['adopt', 'metrics'], OTHER)).code).toBe('ERR_FDBROKER_ACCESS_DENIED');

    // Audited: the handout with its names, and the refusals.
    await waitText(broker.stdout, new RegExp(`^fdbroker: audit op=adopt pid=\\d+ uid=${NOBODY} gid=${NOBODY} names=metrics generation=- result=ok$`, 'm'));
    await waitText(broker.stdout, new RegExp(`^fdbroker: audit op=adopt pid=${http_.pid} uid=${NOBODY} .*names=http .*result=ERR_FDBROKER_NOT_PERMITTED$`, 'm'));
    await waitText(broker.stdout, new RegExp(`^fdbroker: audit op=status pid=${status.pid} uid=${NOBODY} .*result=ERR_FDBROKER_NOT_PERMITTED$`, 'm'));
    await waitText(broker.stdout, new RegExp(`^fdbroker: audit op=connect pid=\\d+ uid=${OTHER} .*result=ERR_FDBROKER_ACCESS_DENIED$`, 'm'));
  });

  it('status is its own grant: a status-only uid reads status (showing only the names it is granted) and adopts nothing; an adopt-only uid cannot read status', async () => {
    const broker = await brokerFor([
      '--grant', `uid=${OTHER} status`,
      '--grant', `uid=${NOBODY} adopt=metrics`,
      '--grant', `gid=${NOBODY} status=admin`,
    ]);
    // status with no names: the broker, no listener.
    expect(await secClient(broker.sock, ['status'], OTHER)).toMatchObject({ ok: true, listeners: [] });
    expect((await secClient(broker.sock, ['adopt'], OTHER)).code).toBe('ERR_FDBROKER_NOT_PERMITTED');
    // uid 65534 with gid 65534: adopt metrics (uid rule), and status showing admin (gid rule) and metrics (its adopt).
    const s = await secClient(broker.sock, ['status'], NOBODY);
    expect(s).toMatchObject({ ok: true });
    expect(s.listeners!.sort()).toEqual(['admin', 'metrics']);
    // Same uid in another group: the gid rule no longer matches.
    expect((await secClient(broker.sock, ['status'], NOBODY, OTHER)).code).toBe('ERR_FDBROKER_NOT_PERMITTED');
    expect(await secClient(broker.sock, ['adopt'], NOBODY, OTHER)).toMatchObject({ ok: true, names: ['metrics'] });
    // `fdbroker status` as OTHER: the broker's line, no listener name.
    const text = await cliAs(OTHER, ['status', broker.sock]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^listeners \(0\):$/m);
    // (Its last line is the handover counters, labelled "metrics:" whatever the listeners are called.)
    expectNoneNamed([text.stdout.replace(/^metrics: handovers.*$/m, '')], broker, ['http', 'admin', 'metrics']);
    // The owner (root here) sees everything.
    expect((await statusOf(broker.sock)).listeners.map((l) => l.name)).toEqual(['http', 'metrics', 'admin']);
  });

  it('deploy is its own grant: with it, a uid joins as a generation with its names only; without it, join is refused', async () => {
    const broker = await brokerFor(['--grant', `uid=${NOBODY} adopt=http deploy`, '--grant', `uid=${OTHER} adopt=http`]);
    expect(await secClient(broker.sock, ['join'])).toMatchObject({ ok: true, generation: 1 });
    await waitText(broker.stdout, new RegExp(`^fdbroker: audit op=join pid=\\d+ uid=${NOBODY} .*names=http generation=1 result=ok$`, 'm'));
    expect((await secClient(broker.sock, ['join'], OTHER)).code).toBe('ERR_FDBROKER_NOT_PERMITTED');
    expect(await secClient(broker.sock, ['adopt'], OTHER)).toMatchObject({ ok: true, names: ['http'] });
  });

  it('a reload changes the rules (the summary lists each rule given and taken); a process that adopted before keeps its listener', async () => {
    const dir = path.join(shared.root, `sock-${process.pid}`);
    fs.mkdirSync(dir, { mode: 0o755 });
    const cfg = path.join(dir, 'broker.toml');
    const write = (grants: string) => fs.writeFileSync(cfg, `mode = "0666"\n[timeouts]\nstandby = 0\n[listeners]\n${LISTEN.map((l) => l.replace('=', ' = "')).join('"\n')}"\n${grants}`);
    write(`[[grants]]\nuid = "nobody"\nadopt = ["metrics"]\n`);
    const broker = await startBroker(dir, [], ['--config', cfg]);
    // An app of uid 65534 adopts metrics and serves on it.
    const app: Proc = runAs(NOBODY, NOBODY, shared.root, process.execPath, [path.join(shared.fixtures, 'http-app.js')],
      { ...process.env, FDBROKER_SOCK: broker.sock, NAMES: 'metrics' });
    await app.waitFor(/^ready \d+/m);
    expect(await get(broker.ports.metrics!)).toBe(`${app.pid} ok\n`);
    expect((await secClient(broker.sock, ['adopt', 'http'])).code).toBe('ERR_FDBROKER_NOT_PERMITTED');
    expect((await cliAs(NOBODY, ['reload', broker.sock])).stderr).toMatch(/ERR_FDBROKER_NOT_PERMITTED/);

    write(`[[grants]]\nuid = ${NOBODY}\nadopt = ["http"]\nstatus = true\nreload = true\n`);
    const r = await cliAs(0, ['reload', broker.sock]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`grants grant \\+uid=${NOBODY} adopt=http status reload, grant -uid=${NOBODY} adopt=metrics$`, 'm'));
    await waitText(broker.stdout, /^fdbroker: reloaded .*grant \+uid=65534 adopt=http status reload, grant -uid=65534 adopt=metrics$/m);
    // From now on: http only; status shows http only; metrics refused.
    expect(await secClient(broker.sock, ['adopt'])).toMatchObject({ ok: true, names: ['http'], ports: [broker.ports.http] });
    expect(await secClient(broker.sock, ['status'])).toMatchObject({ ok: true, listeners: ['http'] });
    expect((await secClient(broker.sock, ['adopt', 'metrics'])).code).toBe('ERR_FDBROKER_NOT_PERMITTED');
    // The app adopted metrics before: it keeps it and serves on.
    expect(await get(broker.ports.metrics!)).toBe(`${app.pid} ok\n`);
    // Granted reload now: uid 65534 may reload (the --json answer lists no change).
    const own = await cliAs(NOBODY, ['reload', broker.sock, '--json']);
    expect(own.code, own.stderr).toBe(0);
    expect(JSON.parse(own.stdout)).toEqual({ added: [], removed: [], changed: [], grants: [] });
    app.kill('SIGTERM');
    await app.exited;
  });

  it('takeover is its own grant: a uid without it is refused (nothing handed over); with it, the broker hands it the handoff and every listener', async () => {
    let broker = await brokerFor(['--grant', `uid=${NOBODY} adopt=* status deploy reload`]);
    const refused = await secClient(broker.sock, ['takeover']);
    expect(refused.fds).toBe(0);
    expect(refused.messages!.map((m) => (m as { type: string; code?: string }).code ?? (m as { type: string }).type)).toEqual(['welcome', 'ERR_FDBROKER_NOT_PERMITTED']);
    await waitText(broker.stdout, new RegExp(`^fdbroker: audit op=takeover pid=${refused.pid} uid=${NOBODY} .*result=ERR_FDBROKER_NOT_PERMITTED$`, 'm'));
    // Through the CLI as well: exit 1, the broker serves on.
    const cli = await cliAs(NOBODY, ['serve', broker.sock, '--takeover']);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/ERR_FDBROKER_NOT_PERMITTED: uid 65534 may not take over this broker/);
    expect((await statusOf(broker.sock)).broker.pid).toBe(broker.pid);
    broker.kill();
    await broker.exited;

    broker = await brokerFor(['--grant', `uid=${OTHER} takeover`]);
    const granted = await secClient(broker.sock, ['takeover'], OTHER);
    const types = granted.messages!.map((m) => (m as { type: string }).type);
    expect(types[0]).toBe('welcome');
    expect(types).toContain('handoff');
    expect(types[types.length - 1]).toBe('listeners');
    expect(granted.fds).toBe(3);
    await waitText(broker.stdout, new RegExp(`^fdbroker: audit op=takeover pid=${granted.pid} uid=${OTHER} .*names=http,metrics,admin .*result=ok$`, 'm'));
    // It hung up without committing: the takeover is off and this broker serves on.
    expect((await statusOf(broker.sock)).broker.pid).toBe(broker.pid);
    // The takeover grant alone is no adopt or status grant.
    expect((await secClient(broker.sock, ['adopt'], OTHER)).code).toBe('ERR_FDBROKER_NOT_PERMITTED');
  });
});

describeWith(AS_ROOT, 'per-name grants: a takeover keeps them', () => {
  it('after `fdbroker serve --takeover` (root), the successor applies the same rules: uid 65534 still gets "metrics" only', async () => {
    const broker = await brokerFor(['--grant', `uid=${NOBODY} adopt=metrics`]);
    const next = run(process.execPath, [CLI, 'serve', broker.sock, '--takeover']);
    await next.waitFor(/^fdbroker: ready on /m);
    await broker.exited;
    expect((await statusOf(broker.sock)).broker.pid).toBe(next.pid);
    expect(await secClient(broker.sock, ['adopt'])).toMatchObject({ ok: true, names: ['metrics'], ports: [broker.ports.metrics] });
    expect((await secClient(broker.sock, ['adopt', 'http'])).code).toBe('ERR_FDBROKER_NOT_PERMITTED');
    expect((await secClient(broker.sock, ['status'], OTHER)).code).toBe('ERR_FDBROKER_ACCESS_DENIED');
    next.kill();
    await next.exited;
  });
});

describeWith(AS_ROOT, 'per-name grants: refusals counted', () => {
  it('repeated refusals of one uid and request give one audit event, then one count per interval', async () => {
    const dir = sharedDir();
    const broker = Broker.start({
      controlPath: path.join(dir, 'b.sock'), mode: 0o666, refusalSummaryIntervalMs: 300,
      listeners: [{ name: 'http', kind: 'tcp', host: '127.0.0.1', port: 0 }, { name: 'metrics', kind: 'tcp', host: '127.0.0.1', port: 0 }],
      access: { grants: [{ uid: NOBODY, adopt: ['metrics'] }] },
    });
    const audits: AuditEvent[] = [];
    const summaries: RefusalSummary[] = [];
    broker.on('audit', (e) => audits.push(e));
    broker.on('refusals', (s) => summaries.push(s));
    broker.on('clientError', () => {});
    try {
      const r = await secClient(broker.controlPath, ['repeat', '200', 'http']);
      expect(r.codes).toEqual({ ERR_FDBROKER_NOT_PERMITTED: 200 });
      expect(r.fds).toBe(0);
      const deadline = Date.now() + 3000;
      while (summaries.reduce((n, s) => n + s.count, 0) < 199 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
      const denied = audits.filter((a) => a.result === 'ERR_FDBROKER_NOT_PERMITTED');
      expect(denied).toHaveLength(1);
      expect(denied[0]).toMatchObject({ op: 'adopt', uid: NOBODY, names: ['http'] });
      expect(summaries.every((s) => s.uid === NOBODY && s.code === 'ERR_FDBROKER_NOT_PERMITTED' && s.what === 'adopt')).toBe(true);
      expect(summaries.reduce((n, s) => n + s.count, 0)).toBe(199);
    } finally {
      broker.close();
    }
  });
});

// The CLI accepts names for ids and refuses a bad rule before creating anything.
describeWith(AS_ROOT, 'per-name grants: --grant on the command line', () => {
  it('a bad --grant is a usage error (exit 2) naming the word; a user name works like its uid', async () => {
    const dir = tmpDir();
    const p = run(process.execPath, [CLI, 'serve', path.join(dir, 'b.sock'), '--listen', 'http=tcp://127.0.0.1:0', '--grant', 'uid=nobody adopt=http stauts']);
    const { code } = await p.exited;
    expect(code).toBe(2);
    expect(p.stderr()).toMatch(/--grant 'uid=nobody adopt=http stauts': unknown word "stauts"/);
    expect(fs.existsSync(path.join(dir, 'b.sock'))).toBe(false);
    const broker = await brokerFor(['--grant', 'uid=nobody adopt=metrics']);
    expect(await secClient(broker.sock, ['adopt'])).toMatchObject({ ok: true, names: ['metrics'] });
  });

  it('`fdbroker run` takes --grant like serve: a bad rule is a usage error before anything starts', async () => {
    const dir = tmpDir();
    const p = run(process.execPath, [CLI, 'run', path.join(dir, 'b.sock'), '--listen', 'http=tcp://127.0.0.1:0', '--grant', 'gid=65534 adopt=a/b', '--', 'true']);
    const { code } = await p.exited;
    expect(code).toBe(2);
    expect(p.stderr()).toMatch(/--grant 'gid=65534 adopt=a\/b': "a\/b" is not a listener name/);
    expect(fs.existsSync(path.join(dir, 'b.sock'))).toBe(false);
  });
});
