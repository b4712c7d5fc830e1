// `fdbroker status` prints what clients chose (a generation's label) and what
// processes named themselves (a holder's comm): neither may drive the
// operator's terminal (escape sequences, a forged line).
import { describe, expect, it } from 'vitest';
import { formatStatus } from '../../src/cli/status';
import { printable } from '../../src/cli/printable';
import type { StatusMessage } from '../../src/protocol/messages';

const EVIL = '\x1b]0;owned\x07\x1b[2J\rgeneration 9 ready\n#9 pid 1 \u009b31m\u202e';

describe('status text escapes what others chose', () => {
  it('printable() escapes C0/C1 controls, DEL, backslash and bidi overrides; plain text is unchanged', () => {
    expect(printable('web v2 (blue)')).toBe('web v2 (blue)');
    expect(printable('a\x1b[2Jb\nc\\d\x7f\u009b\u202e')).toBe('a\\x1b[2Jb\\nc\\\\d\\x7f\\u009b\\u202e');
  });

  it('a label and a holder\'s comm with escape sequences and newlines come out as one inert line each', () => {
    const s = {
      type: 'status', id: 1,
      broker: { pid: 1, controlPath: '/run/b.sock', software: 'x', protocol: 1, startedAt: 't' },
      listeners: [{ name: 'http', kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: 80, holders: [{ pid: 7, comm: EVIL }] }],
      clients: [],
      generations: [{ number: 1, state: 'starting', pid: 7, clientId: 1, uid: 0, adopted: ['http'], joinedAt: 't', standbyMs: 0, readyOverdue: false, retireOverdue: false, label: EVIL }],
    } as unknown as StatusMessage;
    const text = formatStatus(s);
    expect(text).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f\u0080-\u009f\u202e]/);
    // Six lines, and a seventh naming the holder that is no generation (its comm escaped as well).
    expect(text.split('\n')).toHaveLength(7);
    expect(text.split('\n')[6]).toMatch(/^not generations: pid 7 \(\\x1b\]0;owned/);
    expect(text).toContain('\\x1b]0;owned\\x07');
  });
});
