// The per-name grants as a pure policy (src/broker/grants.ts): who may do
// what, which names each peer gets and sees, what a refusal names, and the
// reload summary's rule changes. The broker's use of them, with other uids,
// is in test/broker/grants-uids.test.ts.
import { describe, expect, it } from 'vitest';
import { adoptScope, decideHandout, formatRule, grantPolicy, inScope, mayDo, mayDoAnything, ruleChanges, statusScope, type GrantRule } from '../../src/broker/grants';
import { makePolicy } from '../../src/broker/access';
import { scopeStatus } from '../../src/broker/status-scope';
import type { StatusMessage } from '../../src/protocol/messages';

const BROKER = 1000;
const WEB = { uid: 33, gid: 33 };
const MON = { uid: 65533, gid: 65533 };
const NOBODY = { uid: 65534, gid: 65534 };
const EXISTING = ['http', 'metrics', 'admin'];

const rules: GrantRule[] = [
  { uid: 33, adopt: ['http', 'metrics'], deploy: true },
  { gid: 65533, status: true, adopt: ['metrics'] },
  { uid: 65533, status: ['admin'] },
];
const pol = grantPolicy(BROKER, rules);

describe('grants: who may do what', () => {
  it('root and the broker\'s own uid may do everything, with or without rules', () => {
    for (const p of [grantPolicy(BROKER, []), pol]) {
      for (const who of [{ uid: 0, gid: 0 }, { uid: BROKER, gid: 5 }]) {
        for (const op of ['adopt', 'status', 'deploy', 'reload', 'takeover'] as const) expect(mayDo(p, who, op)).toBe(true);
        expect(adoptScope(p, who)).toEqual({ all: true });
        expect(decideHandout(p, who, null, EXISTING, 'adopt')).toEqual({ ok: true, names: null });
      }
    }
  });

  it('anything not granted is refused; a peer no rule matches may do nothing (dropped at accept)', () => {
    expect(mayDoAnything(pol, NOBODY)).toBe(false);
    expect(mayDo(pol, WEB, 'adopt')).toBe(true);
    expect(mayDo(pol, WEB, 'deploy')).toBe(true);
    expect(mayDo(pol, WEB, 'status')).toBe(false);
    expect(mayDo(pol, WEB, 'reload')).toBe(false);
    expect(mayDo(pol, WEB, 'takeover')).toBe(false);
  });

  it('unknown credentials (-1) match no rule, not even a rule for the broker\'s uid', () => {
    expect(mayDoAnything(grantPolicy(BROKER, [{ uid: 33, adopt: ['*'] }]), { uid: -1, gid: 33 })).toBe(false);
    expect(mayDoAnything(pol, { uid: BROKER, gid: -1 })).toBe(false);
  });

  it('rules for a uid and for its primary gid add up', () => {
    // uid 65533 (gid 65533): status from both, adopt "metrics" from the gid rule, status names "admin" from the uid rule.
    expect(mayDo(pol, MON, 'status')).toBe(true);
    expect(adoptScope(pol, MON)).toEqual({ all: false, names: new Set(['metrics']) });
    const seen = statusScope(pol, MON);
    expect(['metrics', 'admin'].map((n) => inScope(seen, n))).toEqual([true, true]);
    expect(inScope(seen, 'http')).toBe(false);
    // Another uid in that group: only the gid rule.
    const s2 = statusScope(pol, { uid: 4242, gid: 65533 });
    expect(['metrics', 'admin', 'http'].map((n) => inScope(s2, n))).toEqual([true, false, false]);
  });

  it('status without a status grant shows nothing; with one, the adopt names and the status names', () => {
    expect(statusScope(pol, WEB)).toEqual({ all: false, names: new Set() });
    expect(statusScope(grantPolicy(BROKER, [{ uid: 33, status: ['*'] }]), WEB)).toEqual({ all: true });
  });

  it('the --allow-* lists are rules over every name: --allow-uid adopts all, deploys, reads all; --allow-status-uid reads all only; neither reloads or takes over', () => {
    const p = makePolicy(BROKER, { allowUids: [33], statusGids: [65533] });
    expect(adoptScope(p, WEB)).toEqual({ all: true });
    expect(statusScope(p, WEB)).toEqual({ all: true });
    expect(mayDo(p, WEB, 'deploy')).toBe(true);
    expect(mayDo(p, WEB, 'reload')).toBe(false);
    expect(mayDo(p, WEB, 'takeover')).toBe(false);
    expect(mayDo(p, MON, 'adopt')).toBe(false);
    expect(statusScope(p, MON)).toEqual({ all: true });
  });
});

describe('grants: handouts', () => {
  it('a scoped peer asking for all gets its names that exist, in the broker\'s order', () => {
    expect(decideHandout(pol, WEB, null, ['admin', 'metrics', 'http'], 'adopt')).toEqual({ ok: true, names: ['metrics', 'http'] });
    expect(decideHandout(pol, MON, null, EXISTING, 'adopt')).toEqual({ ok: true, names: ['metrics'] });
  });

  it('asking for a name outside its grant is NOT_PERMITTED whether or not it exists, and the text names only what was asked', () => {
    const existing = decideHandout(pol, MON, ['admin'], EXISTING, 'adopt');
    const missing = decideHandout(pol, MON, ['nosuch'], EXISTING, 'adopt');
    expect(existing).toMatchObject({ ok: false, code: 'ERR_FDBROKER_NOT_PERMITTED', names: ['admin'] });
    expect(missing).toMatchObject({ ok: false, code: 'ERR_FDBROKER_NOT_PERMITTED', names: ['nosuch'] });
    // Same answer shape either way; no other listener is named.
    for (const d of [existing, missing]) {
      if (d.ok) throw new Error('granted');
      for (const other of ['http', 'metrics']) expect(d.message).not.toContain(other);
    }
    expect((existing as { message: string }).message.replace('admin', 'nosuch')).toBe((missing as { message: string }).message);
  });

  it('an unknown name inside its grant is UNKNOWN_LISTENER, hinting only its own names', () => {
    const d = decideHandout(grantPolicy(BROKER, [{ uid: 33, adopt: ['http', 'later'] }]), WEB, ['later'], EXISTING, 'adopt');
    expect(d).toMatchObject({ ok: false, code: 'ERR_FDBROKER_UNKNOWN_LISTENER', names: ['later'] });
    expect((d as { message: string }).message).toContain('"http"');
    expect((d as { message: string }).message).not.toContain('metrics');
    expect((d as { message: string }).message).not.toContain('admin');
  });

  it('a peer that may adopt no name is refused without any name, even asking for all', () => {
    const d = decideHandout(grantPolicy(BROKER, [{ uid: 33, status: true }]), WEB, null, EXISTING, 'join');
    expect(d).toMatchObject({ ok: false, code: 'ERR_FDBROKER_NOT_PERMITTED' });
    for (const n of EXISTING) expect((d as { message: string }).message).not.toContain(n);
  });

  it('"*" grants every name, later ones included', () => {
    const p = grantPolicy(BROKER, [{ uid: 33, adopt: ['*'] }]);
    expect(decideHandout(p, WEB, ['admin'], EXISTING, 'adopt')).toEqual({ ok: true, names: ['admin'] });
    expect(decideHandout(p, WEB, null, [...EXISTING, 'new'], 'adopt')).toEqual({ ok: true, names: null });
  });

  it('duplicates asked for are handed once', () => {
    expect(decideHandout(pol, WEB, ['http', 'http'], EXISTING, 'adopt')).toEqual({ ok: true, names: ['http'] });
  });
});

describe('grants: status as a scoped peer sees it', () => {
  const status = {
    type: 'status', id: 1,
    broker: { pid: 1, software: 'fdbroker/0', protocol: 1, controlPath: '/x', startedAt: '' },
    listeners: EXISTING.map((name) => ({ name, kind: 'tcp', address: '127.0.0.1', port: 1 })),
    clients: [{ id: 1, pid: 2, uid: 33, gid: 33, connectedAt: '', adopted: ['http', 'admin'] }],
    generations: [{ number: 1, clientId: 1, pid: 2, uid: 33, state: 'ready', adopted: ['admin', 'metrics'], joinedAt: '', standbyMs: 0, readyOverdue: false, retireOverdue: false }],
  } as unknown as StatusMessage;

  it('no listener name outside its scope appears anywhere in the answer', () => {
    const seen = scopeStatus(status, statusScope(pol, { uid: 4242, gid: 65533 }));
    expect(seen.listeners.map((l) => l.name)).toEqual(['metrics']);
    expect(seen.clients[0]!.adopted).toEqual([]);
    expect(seen.generations[0]!.adopted).toEqual(['metrics']);
    const text = JSON.stringify(seen);
    expect(text).not.toContain('"admin"');
    expect(text).not.toContain('"http"');
  });

  it('the owner sees the answer unchanged', () => {
    expect(scopeStatus(status, statusScope(pol, { uid: BROKER, gid: 1 }))).toBe(status);
  });
});

describe('grants: rules as text and what a reload changes', () => {
  it('formats a rule as --grant spells it, with numeric ids', () => {
    expect(formatRule({ uid: 33, adopt: ['http', 'metrics'], status: true, deploy: true })).toBe('uid=33 adopt=http,metrics status deploy');
    expect(formatRule({ gid: 50, status: ['*'], reload: true, takeover: true })).toBe('gid=50 status=* reload takeover');
  });

  it('lists rules given and taken; an unchanged rule is not listed', () => {
    expect(ruleChanges(rules, [rules[0]!, { uid: 33, adopt: ['http'] }])).toEqual([
      'grant +uid=33 adopt=http',
      'grant -gid=65533 adopt=metrics status',
      'grant -uid=65533 status=admin',
    ]);
    expect(ruleChanges(rules, rules)).toEqual([]);
  });
});
