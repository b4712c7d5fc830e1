// The two spellings of a per-name grant (src/cli/grant-rule.ts): --grant and
// [[grants]] in the configuration file, names resolved to ids, mistakes named.
import { describe, expect, it } from 'vitest';
import { grantFromTable, GrantRuleError, parseGrantFlag } from '../../src/cli/grant-rule';
import { idFromDatabase, systemIds, type IdResolver } from '../../src/cli/user-ids';
import { parseConfig, mergeSettings } from '../../src/cli/config';

const ids: IdResolver = (kind, name) => ({ 'uid:www-data': 33, 'gid:monitoring': 4000 } as Record<string, number>)[`${kind}:${name}`];

function refusal(f: () => unknown): GrantRuleError {
  try {
    f();
  } catch (err) {
    if (err instanceof GrantRuleError) return err;
    throw err;
  }
  throw new Error('accepted');
}

describe('--grant', () => {
  it('parses every word, names and numbers', () => {
    expect(parseGrantFlag('uid=www-data adopt=http,metrics status deploy', ids)).toEqual({ uid: 33, adopt: ['http', 'metrics'], status: true, deploy: true });
    expect(parseGrantFlag('  gid=monitoring   status=*  ', ids)).toEqual({ gid: 4000, status: ['*'] });
    expect(parseGrantFlag('uid=65534 reload takeover', ids)).toEqual({ uid: 65534, reload: true, takeover: true });
  });

  it('refuses with the word at fault: unknown words, both or neither of uid and gid, unknown names, bad listener names, a rule granting nothing', () => {
    expect(refusal(() => parseGrantFlag('uid=1 adopt=http stauts', ids)).key).toBe('stauts');
    expect(refusal(() => parseGrantFlag('uid=1 gid=2 status', ids)).message).toMatch(/exactly one of uid and gid/);
    expect(refusal(() => parseGrantFlag('status', ids)).message).toMatch(/exactly one of uid and gid/);
    expect(refusal(() => parseGrantFlag('uid=nosuchuser status', ids)).message).toMatch(/no user is named "nosuchuser"/);
    expect(refusal(() => parseGrantFlag('uid=1 adopt=a/b', ids)).key).toBe('adopt');
    expect(refusal(() => parseGrantFlag('uid=1 adopt=', ids)).key).toBe('adopt');
    expect(refusal(() => parseGrantFlag('uid=1', ids)).message).toMatch(/grants nothing/);
    expect(refusal(() => parseGrantFlag('uid=1 deploy=yes', ids)).key).toBe('deploy');
    expect(refusal(() => parseGrantFlag('uid=1 status status', ids)).message).toMatch(/twice/);
    expect(refusal(() => parseGrantFlag('uid=4294967295 status', ids)).key).toBe('uid');
  });
});

describe('[[grants]] in the configuration file', () => {
  it('one table per rule, merged into access; --grant replaces the file\'s rules', () => {
    const s = parseConfig(`
[listeners]
http = "tcp://127.0.0.1:0"
[[grants]]
uid = "www-data"
adopt = ["http"]
deploy = true
[[grants]]
gid = 4000
status = ["*"]
`, 'f.toml', '/', ids);
    expect(s.access.grants).toEqual([{ uid: 33, adopt: ['http'], deploy: true }, { gid: 4000, status: ['*'] }]);
    const flags = { listeners: [], access: { grants: [{ uid: 1, status: true }] } };
    expect(mergeSettings(s, flags).access.grants).toEqual([{ uid: 1, status: true }]);
    expect(mergeSettings(s, { listeners: [], access: {} }).access.grants).toEqual(s.access.grants);
  });

  it('errors name the file and the key (grants[i].field)', () => {
    const bad = (text: string) => {
      try {
        parseConfig(text, 'f.toml', '/', ids);
      } catch (err) {
        return (err as { code: string; key: string }).key;
      }
      throw new Error('accepted');
    };
    expect(bad('[[grants]]\nuid = 1\nadopt = "http"\n')).toBe('grants[0].adopt');
    expect(bad('[[grants]]\nuid = 1\nstatus = true\n[[grants]]\nuid = 2\ndeploy = 1\n')).toBe('grants[1].deploy');
    expect(bad('[[grants]]\nuid = 1\nsatus = true\n')).toBe('grants[0].satus');
    expect(bad('[[grants]]\nadopt = ["x"]\n')).toBe('grants[0]');
    expect(bad('grants = 1\n')).toBe('grants');
    expect(bad('[[grants]]\nuid = 1.5\nstatus = true\n')).toBe('grants[0].uid');
  });

  it('grantFromTable takes TOML integers as BigInt', () => {
    expect(grantFromTable({ uid: 33n, takeover: true }, ids)).toEqual({ uid: 33, takeover: true });
  });
});

describe('user and group names', () => {
  it('reads the id from passwd/group-format lines', () => {
    expect(idFromDatabase('root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n', 'nobody')).toBe(65534);
    expect(idFromDatabase('nogroup:x:65534:\n', 'nogroup')).toBe(65534);
    expect(idFromDatabase('root:x:0:0::/root:/bin/sh\n', 'nobody')).toBeUndefined();
  });

  it('resolves this system\'s root and nobody, and no unknown name', () => {
    expect(systemIds('uid', 'root')).toBe(0);
    expect(systemIds('gid', 'root')).toBe(0);
    expect(systemIds('uid', 'nobody')).toBe(65534);
    expect(systemIds('uid', 'no-such-user-fdbroker')).toBeUndefined();
  });
});
