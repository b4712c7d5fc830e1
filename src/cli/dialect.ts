// Inheritance dialects of `fdbroker exec` (--inherit NAME): how the program
// is told which of its fds (3, 4, ..., in the order of the listeners) are
// the listeners. Every dialect hands over the same fds; they differ only in
// the environment variables the program reads. Several may be given at once
// (their variables do not collide); the default is systemd's.
//
//   systemd   LISTEN_FDS=2 LISTEN_FDNAMES=http:admin, and LISTEN_PID (the
//             program's own pid) and LISTEN_PIDFDID (the inode of a pidfd
//             for it, where the kernel gives pidfds their own inodes), both
//             set by exec's startup script (exec-program.ts): sd_listen_fds(3)
//   nginx     NGINX=3;4;             (nginx matches each fd to a `listen` by address)
//   haproxy   FDBROKER_FD_<NAME>=3   (one per listener: `bind "fd@${FDBROKER_FD_HTTP}"`)
//   puma      PUMA_INHERIT_0=3:tcp://127.0.0.1:8080 (one per listener, Puma's own restart
//             variables: a `--bind` of that URL takes the fd). Not with systemd: Puma
//             would open the same fd twice (it also reads LISTEN_FDS when LISTEN_PID is its pid)
//   unicorn   UNICORN_FD=3,4         (matched to `listen` addresses in the config)
//   gunicorn  GUNICORN_FD=3,4 and the systemd variables (gunicorn 20.1 reads LISTEN_FDS)
//   einhorn   EINHORN_FD_COUNT=2 EINHORN_FD_0=3 EINHORN_FD_1=4 (and EINHORN_FDS="3 4", older readers)
//   uvicorn   UVICORN_FD=3           (uvicorn's --fd, from its environment; one listener only)
//
// Pure: no I/O. FDBROKER_FD_<NAME> is set by every dialect but systemd's, so a
// command line or a configuration can name the fd of a listener by its name.
import { FdbrokerError } from '../protocol/errors';
import type { ListenerInfo } from '../protocol/messages';

export const DIALECTS = ['systemd', 'nginx', 'haproxy', 'puma', 'unicorn', 'gunicorn', 'einhorn', 'uvicorn'] as const;
export type Dialect = typeof DIALECTS[number];

/** exec's dialect when none is given: systemd socket activation. */
export const DEFAULT_DIALECTS: readonly Dialect[] = ['systemd'];

/** The first fd a listener gets in the program (SD_LISTEN_FDS_START). */
export const FIRST_LISTENER_FD = 3;

/** Variables exec sets for one dialect or another: removed from the inherited environment first, so none is stale. */
export const DIALECT_VARIABLES = [
  'LISTEN_FDS', 'LISTEN_FDNAMES', 'LISTEN_PID', 'LISTEN_PIDFDID', 'NGINX', 'UNICORN_FD', 'GUNICORN_FD',
  'EINHORN_FD_COUNT', 'EINHORN_FDS', 'UVICORN_FD',
] as const;
/** Prefixes of the per-listener variables (also removed from the inherited environment). */
export const DIALECT_PREFIXES = ['FDBROKER_FD_', 'PUMA_INHERIT_', 'EINHORN_FD_'] as const;

/**
 * What a server of the dialect needs from exec unless told otherwise: its
 * graceful stop as the retire signal (SIGTERM is nginx's and Unicorn's fast
 * one, HAProxy's hard one), and `--ready immediate` for servers that never
 * send READY=1.
 */
export const DIALECT_DEFAULTS: Readonly<Partial<Record<Dialect, { retireSignal?: NodeJS.Signals; ready?: 'immediate' }>>> = {
  nginx: { retireSignal: 'SIGQUIT', ready: 'immediate' },
  haproxy: { retireSignal: 'SIGUSR1', ready: 'immediate' },
  unicorn: { retireSignal: 'SIGQUIT', ready: 'immediate' },
  puma: { ready: 'immediate' },
};

/** The defaults `dialects` agree on (a setting they disagree on, or one only some give, is left to exec's own default). */
export function dialectDefaults(dialects: readonly Dialect[]): { retireSignal?: NodeJS.Signals; ready?: 'immediate' } {
  const all = dialects.map((d) => DIALECT_DEFAULTS[d] ?? {});
  const agreed = <K extends 'retireSignal' | 'ready'>(k: K) => {
    const v = all[0]?.[k];
    return v !== undefined && all.every((x) => x[k] === v) ? v : undefined;
  };
  const out: { retireSignal?: NodeJS.Signals; ready?: 'immediate' } = {};
  const sig = agreed('retireSignal');
  if (sig !== undefined) out.retireSignal = sig;
  const ready = agreed('ready');
  if (ready !== undefined) out.ready = ready;
  return out;
}

/** Whether `name` is a dialect; the error names them all. */
export function parseDialect(name: string): Dialect {
  const d = name.trim().toLowerCase();
  if ((DIALECTS as readonly string[]).includes(d)) return d as Dialect;
  throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `--inherit ${name}: unknown dialect (known: ${DIALECTS.join(', ')})`);
}

/** The dialects of `--inherit` flags (repeatable, comma-separated); empty when none is given. */
export function parseInheritFlags(values: readonly string[] | undefined): Dialect[] {
  return (values ?? []).flatMap((x) => x.split(',')).filter((x) => x !== '').map(parseDialect);
}

/** FDBROKER_FD_<NAME>: the name upper-cased, every character but A-Z, 0-9 as "_". */
export function fdVariable(listener: string): string {
  return `FDBROKER_FD_${listener.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/** A listener's address as a URL Puma's binder matches (`tcp://host:port`, `unix://path`); undefined for others. */
function listenerUrl(l: ListenerInfo): string | undefined {
  if (l.kind === 'tcp' && l.port !== undefined) {
    const host = l.address ?? '0.0.0.0';
    return `tcp://${host.includes(':') ? `[${host}]` : host}:${l.port}`;
  }
  if (l.kind === 'unix' && l.path !== undefined) return `unix://${l.path}`;
  return undefined;
}

/**
 * The environment variables `dialects` give a program whose fds 3, 4, ... are
 * `listeners` in that order. LISTEN_PID and LISTEN_PIDFDID are not here: only
 * the program's own process knows them before it runs (exec-program.ts).
 * Throws ERR_FDBROKER_INVALID_ARGUMENT when a dialect cannot carry them
 * (a ":" in a systemd name, more than one listener for uvicorn).
 */
export function dialectEnv(dialects: readonly Dialect[], listeners: readonly ListenerInfo[]): Record<string, string> {
  const env: Record<string, string> = {};
  const fds = listeners.map((_, i) => FIRST_LISTENER_FD + i);
  const set = new Set(dialects);
  const systemd = set.has('systemd') || set.has('gunicorn');
  if (set.has('puma') && systemd) {
    throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', '--inherit puma cannot be combined with systemd or gunicorn: Puma would take each fd twice (PUMA_INHERIT_<n> and LISTEN_FDS)');
  }
  if (systemd) {
    const bad = listeners.find((l) => l.name.includes(':'));
    if (bad) {
      throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT',
        `listener "${bad.name}" contains ":", which LISTEN_FDNAMES cannot carry; choose others with --names`);
    }
    env.LISTEN_FDS = String(listeners.length);
    env.LISTEN_FDNAMES = listeners.map((l) => l.name).join(':');
  }
  if ([...set].some((d) => d !== 'systemd')) {
    const seen = new Map<string, string>();
    listeners.forEach((l, i) => {
      const v = fdVariable(l.name);
      const other = seen.get(v);
      if (other !== undefined) {
        throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `listeners "${other}" and "${l.name}" would both be ${v}; choose others with --names`);
      }
      seen.set(v, l.name);
      env[v] = String(fds[i]);
    });
  }
  if (set.has('nginx')) env.NGINX = fds.map((fd) => `${fd};`).join('');
  if (set.has('unicorn')) env.UNICORN_FD = fds.join(',');
  if (set.has('gunicorn')) env.GUNICORN_FD = fds.join(',');
  if (set.has('einhorn')) {
    env.EINHORN_FD_COUNT = String(fds.length);
    env.EINHORN_FDS = fds.join(' ');
    fds.forEach((fd, i) => { env[`EINHORN_FD_${i}`] = String(fd); });
  }
  if (set.has('puma')) {
    listeners.forEach((l, i) => {
      const url = listenerUrl(l);
      if (url !== undefined) env[`PUMA_INHERIT_${i}`] = `${fds[i]}:${url}`;
    });
  }
  if (set.has('uvicorn')) {
    if (listeners.length !== 1) {
      throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT',
        `--inherit uvicorn: uvicorn serves one fd (--fd), and ${listeners.length} listeners were adopted; choose one with --names`);
    }
    env.UVICORN_FD = String(fds[0]);
  }
  return env;
}

/** `env` without any variable a dialect sets (so that one the caller inherited is never passed on stale). */
export function withoutDialectVariables(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) {
    if ((DIALECT_VARIABLES as readonly string[]).includes(k) || DIALECT_PREFIXES.some((p) => k.startsWith(p))) continue;
    out[k] = v;
  }
  return out;
}

/** Whether the program's startup script sets LISTEN_PID (and LISTEN_PIDFDID): with any dialect that sets LISTEN_FDS. */
export function wantsListenPid(dialects: readonly Dialect[]): boolean {
  return dialects.some((d) => d === 'systemd' || d === 'gunicorn');
}
