// systemd socket activation, receiving side: the fds a service manager passed
// as LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES become named listeners. Rules from
// sd_listen_fds(3): fds start at 3, LISTEN_PID must be our pid, the variables
// are unset once read, and every inherited fd is made close-on-exec.
import * as fs from 'node:fs';
import { native } from '../native/binding';
import { check, FdbrokerError } from '../protocol/errors';
import { isValidName } from '../protocol/messages';
import type { OwnedListener } from '../broker/listeners';
import { describeSocket } from '../transport/socket-info';

export const SD_LISTEN_FDS_START = 3;

/** net.core.somaxconn: what systemd's default Backlog= is clamped to. */
export function somaxconn(): number {
  try {
    const n = Number(fs.readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : 4096;
  } catch {
    return 4096;
  }
}

/**
 * Takes the listeners a service manager passed to this process, or [] when
 * none were passed to it. The caller owns the returned fds. `backlog` is what
 * the manager's listen(2) used (systemd's default is net.core.somaxconn).
 */
export function takeInheritedListeners(env: NodeJS.ProcessEnv = process.env, backlog?: number): OwnedListener[] {
  const pid = env.LISTEN_PID;
  const count = env.LISTEN_FDS;
  if (pid === undefined || count === undefined) return [];
  const names = env.LISTEN_FDNAMES?.split(':') ?? [];
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (!/^\d+$/.test(pid) || Number(pid) !== process.pid) return [];
  if (!/^\d+$/.test(count) || Number(count) > 4096) {
    throw new FdbrokerError('ERR_FDBROKER_SYSTEMD', `LISTEN_FDS="${count}" is not a count of fds`);
  }
  const n = native();
  const out: OwnedListener[] = [];
  const seen = new Map<string, number>();
  const effectiveBacklog = backlog ?? somaxconn();
  try {
    collect();
  } catch (err) {
    // The caller gets none of them: every inherited fd is closed (none may leak into a later spawn or stay bound).
    for (let i = 0; i < Number(count); i++) n.close(SD_LISTEN_FDS_START + i);
    throw err;
  }
  return out;

  function collect(): void {
    for (let i = 0; i < Number(count); i++) {
      const fd = SD_LISTEN_FDS_START + i;
      check(n.setCloexec(fd, true), 'fcntl', `fd ${fd}`);
      const d = describeSocket(fd);
      if (d.kind === 'other' || (d.kind !== 'udp' && !d.listening)) {
        throw new FdbrokerError('ERR_FDBROKER_SYSTEMD',
          `inherited fd ${fd} is not a listening tcp/unix or a bound udp socket (Accept=yes is not supported)`);
      }
      let name = names[i];
      if (!isValidName(name) || name === 'unknown' || name === 'stored') name = `fd${fd}`;
      const k = seen.get(name) ?? 0;
      seen.set(name, k + 1);
      if (k > 0) name = `${name}.${k}`;
      out.push({
        fd,
        info: {
          name,
          kind: d.kind,
          family: d.family as 'IPv4' | 'IPv6' | 'unix',
          ...(d.kind === 'unix' ? { path: d.path ?? '' } : { address: d.address ?? '', port: d.port ?? 0 }),
          ...(d.kind === 'udp' ? {} : { backlog: effectiveBacklog }),
        },
      });
    }
  }
}
