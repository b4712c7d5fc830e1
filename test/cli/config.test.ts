// The configuration file: strict parsing (every error names the file, the key
// and the reason, with one code), and how it combines with the command line.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, configReloader, describeReload, loadConfig, mergeSettings, parseConfig, startOnlyChanges, type ServeSettings } from '../../src/cli/config';
import { parseListenerSpec } from '../../src/broker/spec';
import { grantChanges } from '../../src/broker/reload';
import { cleanup, tmpDir } from '../helpers';

afterEach(cleanup);

const FULL = `
backlog = 1024
mode = "0660"
group = 1000

[listeners]
http = "tcp://0.0.0.0:8080?backlog=2048"
admin = "unix:admin.sock"
stats = "udp://[::1]:8125"

[access]
allow-uid = [1000, 1001]
allow-gid = [50]
allow-status-uid = [2000]
allow-status-gid = []

[limits]
max-clients = 10
max-clients-per-uid = 2

[timeouts]
handshake = 1000
ready = 2000
retire = 3000
stall = 0
standby = 0
`;

/** The error parseConfig throws for `text` (fails the test if it does not throw). */
function errorOf(text: string): ConfigError {
  try {
    parseConfig(text, '/etc/fdbroker.toml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`no error for:\n${text}`);
}

describe('parseConfig', () => {
  it('reads every setting; unix paths are relative to the file', () => {
    const s = parseConfig(FULL, '/etc/fdb/broker.toml');
    expect(s.listeners).toEqual([
      { name: 'http', kind: 'tcp', host: '0.0.0.0', port: 8080, backlog: 2048, nodelay: true },
      { name: 'admin', kind: 'unix', path: '/etc/fdb/admin.sock', mode: undefined, backlog: undefined },
      { name: 'stats', kind: 'udp', host: '::1', port: 8125, backlog: undefined },
    ]);
    expect(s.access).toEqual({ allowUids: [1000, 1001], allowGids: [50], statusUids: [2000], statusGids: [] });
    expect(s).toMatchObject({
      backlog: 1024, mode: 0o660, group: 1000, maxClients: 10, maxClientsPerUid: 2,
      handshakeTimeoutMs: 1000, readyTimeoutMs: 2000, retireTimeoutMs: 3000, stallTimeoutMs: 0, standbyMs: 0,
    });
  });

  it('[exec] (read by `fdbroker exec --config`): its dialects, retire signal and ready mode; each value checked', () => {
    expect(parseConfig('[exec]\ninherit = ["nginx", "Einhorn"]\nretire-signal = "SIGQUIT"\nready = "immediate"\n', 'x.toml').exec)
      .toEqual({ inherit: ['nginx', 'einhorn'], retireSignal: 'SIGQUIT', ready: 'immediate' });
    expect(errorOf('[exec]\ninherit = ["apache"]').key).toBe('exec.inherit[0]');
    expect(errorOf('[exec]\ninherit = []').key).toBe('exec.inherit');
    expect(errorOf('[exec]\ninherit = "nginx"').key).toBe('exec.inherit');
    expect(errorOf('[exec]\nready = "later"').key).toBe('exec.ready');
    expect(errorOf('[exec]\nnames = ["http"]').key).toBe('exec.names');
  });

  it('an empty file sets nothing', () => {
    expect(parseConfig('', 'x.toml')).toEqual({ listeners: [], access: {} });
  });

  it.each([
    ['an unknown top-level key', 'listen = 1', 'listen', /unknown key/],
    ['an unknown table', '[server]\nport = 1', 'server', /unknown key/],
    ['an unknown key in a table', '[limits]\nmax-client = 3', 'limits.max-client', /unknown key \(allowed in \[limits\]: max-clients, max-clients-per-uid\)/],
    ['an unknown timeout', '[timeouts]\nidle = 3', 'timeouts.idle', /unknown key/],
    ['a listener that is not a string', '[listeners]\nhttp = 8080', 'listeners.http', /SPEC string/],
    ['a bad listener spec', '[listeners]\nhttp = "tcp://example.com:80"', 'listeners.http', /not an IPv4 address/],
    ['a bad listener name', '[listeners]\n"a b" = "tcp://127.0.0.1:0"', 'listeners.a b', /a name is/],
    ['a float timeout', '[timeouts]\nready = 5000.0', 'timeouts.ready', /whole number of milliseconds .* not the float 5000/],
    ['a negative limit', '[limits]\nmax-clients = -1', 'limits.max-clients', /from 1 to/],
    ['a zero ready timeout', '[timeouts]\nready = 0', 'timeouts.ready', /from 1 to 2147483647/],
    ['a timeout past setTimeout', '[timeouts]\nretire = 2147483648', 'timeouts.retire', /from 1 to 2147483647/],
    ['a string timeout', '[timeouts]\nstall = "2s"', 'timeouts.stall', /not the string "2s"/],
    ['a mode as a number', 'mode = 0o660', 'mode', /octal mode as a string/],
    ['a bad mode', 'mode = "0999"', 'mode', /octal mode/],
    ['a backlog too large', 'backlog = 70000', 'backlog', /from 1 to 65535/],
    ['an id list that is a number', '[access]\nallow-uid = 1000', 'access.allow-uid', /array of numeric ids/],
    ['an id that is a string', '[access]\nallow-gid = [1, "wheel"]', 'access.allow-gid[1]', /numeric id/],
    ['an id too large', '[access]\nallow-status-uid = [4294967295]', 'access.allow-status-uid[0]', /from 0 to 4294967294/],
    ['listeners as a value', 'listeners = "http"', 'listeners', /must be a table/],
  ])('%s is an error naming its key', (_what, text, key, reason) => {
    const e = errorOf(text);
    expect(e.code).toBe('ERR_FDBROKER_INVALID_CONFIG');
    expect(e.file).toBe('/etc/fdbroker.toml');
    expect(e.key).toBe(key);
    expect(e.reason).toMatch(reason);
    expect(e.message).toBe(`/etc/fdbroker.toml: ${key}: ${e.reason}`);
  });

  it('a TOML syntax error names the line and column', () => {
    const e = errorOf('[listeners]\nhttp = "tcp://127.0.0.1:0\n');
    expect(e.code).toBe('ERR_FDBROKER_INVALID_CONFIG');
    expect(e.key).toBeUndefined();
    expect(e.file).toMatch(/^\/etc\/fdbroker\.toml:2:\d+$/);
    expect(e.reason).toMatch(/^not valid TOML/);
    expect(e.cause).toBeInstanceOf(Error);
  });

  it('a key given twice is a TOML error, not a silent override', () => {
    expect(errorOf('[listeners]\nhttp = "tcp://127.0.0.1:1"\nhttp = "tcp://127.0.0.1:2"').reason).toMatch(/not valid TOML/);
  });

  it('an unreadable file is the same error, with the system error as cause', () => {
    const f = path.join(tmpDir(), 'missing.toml');
    let err: ConfigError | undefined;
    try { loadConfig(f); } catch (e) { err = e as ConfigError; }
    expect(err?.code).toBe('ERR_FDBROKER_INVALID_CONFIG');
    expect(err?.reason).toMatch(/cannot be read \(ENOENT\)/);
    expect((err?.cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });
});

describe('the file is checked as sshd checks its own (a FIFO never hangs the broker)', () => {
  const reasonOf = (f: string) => {
    try { loadConfig(f); } catch (e) { return (e as ConfigError).reason; }
    return 'loaded';
  };

  it('writable by its group or by others: refused', () => {
    const f = path.join(tmpDir(), 'c.toml');
    fs.writeFileSync(f, FULL);
    fs.chmodSync(f, 0o644);
    expect(reasonOf(f)).toBe('loaded');
    fs.chmodSync(f, 0o664);
    expect(reasonOf(f)).toMatch(/writable by its group \(mode 0664\).*chmod go-w/);
    fs.chmodSync(f, 0o646);
    expect(reasonOf(f)).toMatch(/writable by others \(mode 0646\)/);
  });

  it.runIf(process.getuid?.() === 0)('owned by another user than root or the broker\'s: refused (as root)', () => {
    const f = path.join(tmpDir(), 'c.toml');
    fs.writeFileSync(f, FULL, { mode: 0o644 });
    fs.chownSync(f, 65534, 65534);
    expect(reasonOf(f)).toMatch(/belongs to uid 65534/);
  });

  it('a FIFO (or a directory) at the path is refused at once, not read', () => {
    const dir = tmpDir();
    const fifo = path.join(dir, 'c.toml');
    execFileSync('mkfifo', ['-m', '0644', fifo]);
    const t0 = Date.now();
    expect(reasonOf(fifo)).toMatch(/is not a regular file/);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(reasonOf(dir)).toMatch(/is not a regular file|EISDIR/);
  });
});

describe('mergeSettings: the file is the base, flags override', () => {
  const file = parseConfig(FULL, '/etc/fdb/broker.toml');
  const none: ServeSettings = { listeners: [], access: {} };

  it('no flags: the file as it is', () => {
    expect(mergeSettings(file, none)).toEqual(file);
  });

  it('a flag overrides its setting only; a list flag replaces the whole list', () => {
    const m = mergeSettings(file, { listeners: [], access: { allowUids: [7] }, readyTimeoutMs: 99, maxClients: 5 });
    expect(m.readyTimeoutMs).toBe(99);
    expect(m.maxClients).toBe(5);
    expect(m.retireTimeoutMs).toBe(3000);
    expect(m.access).toEqual({ allowUids: [7], allowGids: [50], statusUids: [2000], statusGids: [] });
  });

  it('--listen NAME replaces the file listener of that name in place; other names are added after', () => {
    const m = mergeSettings(file, { listeners: [parseListenerSpec('http=tcp://127.0.0.1:9000'), parseListenerSpec('extra=tcp://127.0.0.1:0')], access: {} });
    expect(m.listeners.map((l) => `${l.name}:${l.port ?? l.path}`)).toEqual(['http:9000', 'admin:/etc/fdb/admin.sock', 'stats:8125', 'extra:0']);
  });

  it('without a file: the flags alone', () => {
    const flags: ServeSettings = { listeners: [parseListenerSpec('a=tcp://127.0.0.1:0')], access: {}, backlog: 9 };
    expect(mergeSettings(undefined, flags)).toEqual(flags);
  });
});

describe('reload of the file', () => {
  it('startOnlyChanges names the settings read at start whose value in force changed', () => {
    const a = parseConfig('backlog = 10\n[timeouts]\nready = 5\n[limits]\nmax-clients = 3', 'x');
    const b = parseConfig('backlog = 10\n[timeouts]\nready = 6\nstall = 1\n[limits]\nmax-clients = 4', 'x');
    expect(startOnlyChanges(a, b)).toEqual(['timeouts.ready', 'timeouts.stall']);
    expect(startOnlyChanges(a, a)).toEqual([]);
  });

  it('configReloader re-reads the file with the flags over it; a changed start-only setting is refused unless a flag fixes it', () => {
    const f = path.join(tmpDir(), 'broker.toml');
    fs.writeFileSync(f, '[listeners]\na = "tcp://127.0.0.1:0"\n[timeouts]\nready = 100\n[limits]\nmax-clients = 3\n');
    const flags: ServeSettings = { listeners: [parseListenerSpec('a=tcp://127.0.0.1:1')], access: {}, retireTimeoutMs: 50 };
    const started = mergeSettings(loadConfig(f), flags);
    const reload = configReloader(f, started, flags);
    fs.writeFileSync(f, '[listeners]\na = "tcp://127.0.0.1:0"\nb = "tcp://127.0.0.1:0"\n[timeouts]\nready = 100\nretire = 7\n[access]\nallow-uid = [5]\n');
    const r = reload();
    // The flag's "a" wins over the file's; the file's retire timeout is overridden by the flag, so it is no change.
    expect(r.listeners.map((l) => `${l.name}:${l.port}`)).toEqual(['a:1', 'b:0']);
    expect(r.access).toEqual({ allowUids: [5] });
    expect(r.limits).toEqual({});
    fs.writeFileSync(f, '[listeners]\na = "tcp://127.0.0.1:0"\n[timeouts]\nready = 200\n');
    let err: ConfigError | undefined;
    try { reload(); } catch (e) { err = e as ConfigError; }
    expect(err?.code).toBe('ERR_FDBROKER_INVALID_CONFIG');
    expect(err?.key).toBe('timeouts.ready');
    expect(err?.reason).toMatch(/read at start only/);
  });

  it('describeReload is one line', () => {
    expect(describeReload({ added: ['b', 'c'], removed: [], changed: ['d'] })).toBe('added b, c; removed -; changed d');
    expect(describeReload({ added: [], removed: [], changed: [], grants: ['allow-uid +7'] })).toBe('added -; removed -; changed -; grants allow-uid +7');
    expect(describeReload({ added: [], removed: [], changed: [], grants: [] })).toBe('added -; removed -; changed -; grants -');
  });

  it('grantChanges lists each uid/gid given or taken, per flag', () => {
    expect(grantChanges({ allowUids: [1, 2], statusGids: [5] }, { allowUids: [2, 3], allowGids: [9] }))
      .toEqual(['allow-uid +3', 'allow-uid -1', 'allow-gid +9', 'allow-status-gid -5']);
    expect(grantChanges({ allowUids: [1] }, { allowUids: [1] })).toEqual([]);
  });
});
