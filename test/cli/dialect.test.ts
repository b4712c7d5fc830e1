// dialect.ts, pure: the variables each dialect gives and the defaults it implies.
import { describe, expect, it } from 'vitest';
import { dialectDefaults, dialectEnv, fdVariable, parseDialect, withoutDialectVariables } from '../../src/cli/dialect';
import type { ListenerInfo } from '../../src/protocol/messages';

const tcp = (name: string, port: number): ListenerInfo => ({ name, kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port });

describe('dialect.ts', () => {
  it('names: case-insensitive; an unknown one is ERR_FDBROKER_INVALID_ARGUMENT naming the known ones', () => {
    expect(parseDialect('NGINX')).toBe('nginx');
    expect(() => parseDialect('apache')).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_INVALID_ARGUMENT', message: expect.stringContaining('einhorn') }));
    expect(fdVariable('my-api.v2')).toBe('FDBROKER_FD_MY_API_V2');
  });

  it('two names that map to one FDBROKER_FD_ variable are refused', () => {
    expect(() => dialectEnv(['haproxy'], [tcp('a-b', 1), tcp('a_b', 2)])).toThrow(expect.objectContaining({ code: 'ERR_FDBROKER_INVALID_ARGUMENT' }));
  });

  it('puma: an IPv6 address in brackets', () => {
    expect(dialectEnv(['puma'], [{ name: 'h', kind: 'tcp', family: 'IPv6', address: '::1', port: 8080 }]))
      .toEqual({ PUMA_INHERIT_0: '3:tcp://[::1]:8080', FDBROKER_FD_H: '3' });
  });

  it('implied defaults: each server\'s graceful stop; dialects that disagree imply nothing', () => {
    expect(dialectDefaults(['nginx'])).toEqual({ retireSignal: 'SIGQUIT', ready: 'immediate' });
    expect(dialectDefaults(['haproxy'])).toEqual({ retireSignal: 'SIGUSR1', ready: 'immediate' });
    expect(dialectDefaults(['systemd'])).toEqual({});
    expect(dialectDefaults(['nginx', 'haproxy'])).toEqual({ ready: 'immediate' });
    expect(dialectDefaults(['nginx', 'einhorn'])).toEqual({});
    expect(dialectDefaults([])).toEqual({});
  });

  it('an inherited environment loses every dialect variable, and nothing else', () => {
    expect(withoutDialectVariables({ PATH: '/bin', LISTEN_FDS: '9', NGINX: '7;', EINHORN_FD_0: '5', FDBROKER_FD_X: '3', PUMA_INHERIT_0: '3:x', FDBROKER_SOCK: '/s' }))
      .toEqual({ PATH: '/bin', FDBROKER_SOCK: '/s' });
  });
});
