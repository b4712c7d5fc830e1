// `fdbroker serve`: run a broker that owns the listeners until SIGTERM/SIGINT.
// With --config FILE, SIGHUP (or `fdbroker reload`) re-reads FILE (config.ts).
import * as nodePath from 'node:path';
import { Broker, type BrokerOptions } from '../broker/broker';
import { parseListenerSpec, type ListenerSpec } from '../broker/spec';
import { BrokerConnection } from '../client/connection';
import { FdbrokerError } from '../protocol/errors';
import type { ListenerInfo } from '../protocol/messages';
import { idListOption, intOption, MAX_ID, modeOption, msOption, parseCommand, controlPathOf, UsageError, type OptionValues } from './args';
import type { Io } from './io';
import { metricsOption, prepareMetrics, readMetricsToken } from './metrics';
import { describeListener } from './status';
import { printable } from './printable';
import { configReloader, describeReload, loadConfig, mergeSettings, type ServeSettings } from './config';
import { MAX_BACKLOG, MAX_CLIENTS_LIMIT } from './defaults';
import { GrantRuleError, parseGrantFlag } from './grant-rule';
import { systemIds } from './user-ids';
import type { GrantRule } from '../broker/grants';
import { inheritForServe, linkSystemd, systemdFromEnv } from './serve-systemd';
import type { SystemdLink } from '../systemd/systemd-link';
import type { InheritedPlan } from '../systemd/inherited';
import type { MetricsServer } from '../metrics/server';
import { native } from '../native/binding';
import { metricsAfterTakeover, takeOverBroker, watchTakeover } from './takeover';

export const SERVE_OPTIONS = {
  'config': { type: 'string' },
  'listen': { type: 'string', multiple: true },
  'backlog': { type: 'string' },
  'mode': { type: 'string' },
  'group': { type: 'string' },
  'handshake-timeout': { type: 'string' },
  'ready-timeout': { type: 'string' },
  'retire-timeout': { type: 'string' },
  'standby': { type: 'string' },
  'stall-timeout': { type: 'string' },
  'allow-uid': { type: 'string', multiple: true },
  'allow-gid': { type: 'string', multiple: true },
  'allow-status-uid': { type: 'string', multiple: true },
  'allow-status-gid': { type: 'string', multiple: true },
  'grant': { type: 'string', multiple: true },
  'max-clients': { type: 'string' },
  'max-clients-per-uid': { type: 'string' },
  'max-fds-in-flight-per-uid': { type: 'string' },
  'adopt-from': { type: 'string' },
  'takeover': { type: 'boolean' },
  'no-inherit': { type: 'boolean' },
  'quiet': { type: 'boolean' },
  'insecure-dir': { type: 'boolean' },
  'notify-abstract-fdstore': { type: 'boolean' },
  'metrics': { type: 'string' },
  'metrics-token-file': { type: 'string' },
  'metrics-public': { type: 'boolean' },
} as const;

/** Specs from --listen; a bad spec or two --listen with one name is a usage error. */
function listenSpecs(texts: string[]): ListenerSpec[] {
  const specs = texts.map((text) => {
    try {
      return parseListenerSpec(text);
    } catch (err) {
      if ((err as FdbrokerError).code !== 'ERR_FDBROKER_INVALID_SPEC') throw err;
      throw new UsageError((err as Error).message, 'ERR_FDBROKER_INVALID_SPEC');
    }
  });
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.name)) throw new UsageError(`two --listen are named "${s.name}"`, 'ERR_FDBROKER_DUPLICATE_NAME');
    seen.add(s.name);
  }
  return specs;
}

/** Rules from --grant (grant-rule.ts); a bad one is a usage error. Absent: undefined (the file's [[grants]] stand). */
function grantFlags(texts: string[] | undefined): GrantRule[] | undefined {
  if (texts === undefined) return undefined;
  return texts.map((t) => {
    try {
      return parseGrantFlag(t, systemIds);
    } catch (err) {
      if (!(err instanceof GrantRuleError)) throw err;
      throw new UsageError(`--grant '${t}': ${err.message}`, 'ERR_FDBROKER_INVALID_ARGUMENT');
    }
  });
}

/** Listeners taken from another broker (e.g. a running app that serves its own), for recovery. */
async function adoptFrom(path: string): Promise<Array<{ info: ListenerInfo; fd: number }>> {
  const conn = await BrokerConnection.connect(path);
  try {
    return await conn.adopt(undefined);
  } finally {
    conn.close();
  }
}

/** A broker started from serve's flags (and --config): what `serve` and `run` share. */
export interface ServeSession {
  broker: Broker;
  controlPath: string;
  /** The listeners as the ready line names them: "http=tcp://127.0.0.1:8080 ...". */
  list: string;
  metrics: MetricsServer | undefined;
  systemd: SystemdLink | undefined;
  /** The file SIGHUP and `fdbroker reload` re-read, if any. */
  reloadPath: string | undefined;
  quiet: boolean;
  /** Tells the service manager STOPPING=1, closes the metrics server and the broker. */
  close(): void;
}

export interface OpenServeOptions {
  /** run --instances N: tcp listeners are SO_REUSEPORT groups of N sockets (BrokerOptions.instances). */
  instances?: number;
  /** Printed after a rollback when no generation stood by (serve: "start a new version"); a function returning undefined: no line (run, while it stops everything). */
  noStandbyHint?: string | (() => string | undefined);
}

/**
 * Starts a broker from serve's option values (every option checked first,
 * then --config, LISTEN_FDS, --adopt-from or --takeover, --metrics and the
 * systemd link), with its events printed on `io`. Installs no signal handler:
 * the caller does, before calling this. Throws UsageError or the start's error;
 * nothing is left open then.
 */
export async function openServe(v: OptionValues<typeof SERVE_OPTIONS>, controlPath: string, io: Io, opts: OpenServeOptions = {}): Promise<ServeSession> {
  // Every option is checked before anything is created or adopted.
  const specs = listenSpecs(v.listen ?? []);
  const backlog = intOption('backlog', v.backlog, 1, MAX_BACKLOG);
  const mode = modeOption('mode', v.mode);
  const group = intOption('group', v.group, 0, MAX_ID);
  const handshakeTimeoutMs = msOption('handshake-timeout', v['handshake-timeout']);
  const readyTimeoutMs = msOption('ready-timeout', v['ready-timeout']);
  const retireTimeoutMs = msOption('retire-timeout', v['retire-timeout']);
  const standbyMs = msOption('standby', v.standby, 0);
  const stallTimeoutMs = msOption('stall-timeout', v['stall-timeout'], 0);
  const maxClients = intOption('max-clients', v['max-clients'], 1, MAX_CLIENTS_LIMIT);
  const maxClientsPerUid = intOption('max-clients-per-uid', v['max-clients-per-uid'], 1, MAX_CLIENTS_LIMIT);
  const maxFdsInFlightPerUid = intOption('max-fds-in-flight-per-uid', v['max-fds-in-flight-per-uid'], 1, Number.MAX_SAFE_INTEGER);
  // Only the flags given: they override the same settings of --config FILE.
  const ids = (name: string, vs: string[] | undefined) => (vs === undefined ? undefined : idListOption(name, vs));
  const flags: ServeSettings = {
    listeners: specs, backlog, mode, group, handshakeTimeoutMs, readyTimeoutMs, retireTimeoutMs, standbyMs, stallTimeoutMs, maxClients, maxClientsPerUid,
    access: {
      allowUids: ids('allow-uid', v['allow-uid']), allowGids: ids('allow-gid', v['allow-gid']),
      statusUids: ids('allow-status-uid', v['allow-status-uid']), statusGids: ids('allow-status-gid', v['allow-status-gid']),
      grants: grantFlags(v.grant),
    },
  };
  const configPath = v.config !== undefined ? nodePath.resolve(v.config) : undefined;
  let settings = mergeSettings(configPath !== undefined ? loadConfig(configPath) : undefined, flags);
  // The file reloads re-read: --config, or after a takeover without it the old broker's.
  let reloadPath = configPath;
  const quiet = v.quiet === true;
  const metricsAddress = metricsOption(v.metrics, v['metrics-token-file'], v['metrics-public'] === true);
  const metricsToken = metricsAddress && v['metrics-token-file'] !== undefined ? readMetricsToken(v['metrics-token-file']) : undefined;
  // NOTIFY_SOCKET and WATCHDOG_USEC too: after a takeover, failing on them would leave the path with no broker.
  const sd = systemdFromEnv(process.env, { allowAbstractFds: v['notify-abstract-fdstore'] === true });
  let broker: Broker;
  let inherited: InheritedPlan;
  // Owns the inherited fds until Broker.start takes them.
  let pending: InheritedPlan | undefined;
  try {
    if (v.takeover === true) {
      // The running broker's listeners, options and generations; flags (and --config) given here override.
      // No LISTEN_FDS: the listeners are the running broker's.
      inherited = { create: [], adopt: [], replaced: [] };
      const optionsOf = (s: ServeSettings): BrokerOptions => {
        const { access, ...rest } = s;
        return {
          controlPath, ...rest, access: access && Object.values(access).some((a) => a !== undefined) ? access : undefined,
          insecureDir: v['insecure-dir'] === true ? true : undefined, inherit: false, maxFdsInFlightPerUid,
        };
      };
      // Without --config, the file the old broker names is read as if given (unreadable: a warning, no reloads).
      const configure = configPath !== undefined ? undefined : (from: { pid: number; config?: string }) => {
        if (from.config === undefined) return undefined;
        let file: ServeSettings;
        try {
          file = loadConfig(from.config);
        } catch (err) {
          io.err(`fdbroker: warning: ${(err as Error).message}`);
          return undefined;
        }
        reloadPath = from.config;
        settings = mergeSettings(file, flags);
        return optionsOf(settings);
      };
      broker = await takeOverBroker(optionsOf(settings), v['adopt-from'], configure, () => reloadPath, io, quiet);
      if (reloadPath !== configPath) io.out(`fdbroker: read ${reloadPath}, the old broker's configuration (not given here): reloads re-read it`);
    } else {
      const { listeners, ...rest } = settings;
      // LISTEN_FDS (socket units, the fd store) first: a listener spec whose name came back adopts that socket.
      inherited = pending = inheritForServe(listeners ?? [], v['no-inherit'] !== true, rest.backlog, io);
      const adopted = v['adopt-from'] !== undefined ? await adoptFrom(v['adopt-from']) : [];
      // From here on Broker.start owns the adopted and inherited fds.
      pending = undefined;
      broker = Broker.startInternal({
        controlPath, listeners: inherited.create, listenerFds: [...adopted, ...inherited.adopt], ...rest,
        insecureDir: v['insecure-dir'] === true,
        inherit: false, maxFdsInFlightPerUid, ...(opts.instances !== undefined ? { instances: opts.instances } : {}),
      });
    }
    // After a takeover this broker serves the path already: closing it now would leave nobody on it.
    if (v.takeover !== true && broker.listenerInfos().length === 0) {
      broker.close();
      throw new UsageError('no listeners: give at least one --listen NAME=SPEC (or [listeners] in --config), --adopt-from PATH, or start under systemd socket activation');
    }
  } catch (err) {
    // Inherited fds not yet handed to Broker.start (--adopt-from failed) are closed here.
    for (const l of pending?.adopt ?? []) native().close(l.fd);
    sd?.notifier.close();
    throw err;
  }
  let metrics: MetricsServer | undefined;
  try {
    // A metrics socket taken over while this broker serves none is closed: never a port that accepts and never answers.
    if (!metricsAddress) broker.holdMetricsSocket(undefined);
    const listen = metricsAddress ? await prepareMetrics(broker, metricsAddress, io, metricsToken) : undefined;
    if (listen && v.takeover === true) {
      metrics = await metricsAfterTakeover(listen, io);
      // No endpoint after all: the socket handed over must not accept and never answer.
      if (!metrics) broker.holdMetricsSocket(undefined);
    }
    else if (listen) metrics = await listen();
  } catch (err) {
    broker.close();
    sd?.notifier.close();
    throw err;
  }
  // Said even with --quiet: this start took sockets from running processes instead of binding.
  for (const r of broker.recovered) {
    io.out(`fdbroker: listener "${r.listener.name}" (${describeListener(r.listener)}) was still held by pid ${r.from.pid} (${printable(r.from.comm)}) `
      + 'after a broker stopped: this broker took a copy of that socket back, so nothing was closed and no connection was refused; its generations rejoin');
  }
  if (!quiet) {
    broker.on('audit', (e) => io.out(`fdbroker: audit op=${e.op} pid=${e.pid} uid=${e.uid} gid=${e.gid}`
      + ` names=${e.names ? e.names.join(',') || '-' : '*'} generation=${e.generation ?? '-'} result=${e.result}`));
    broker.on('ready', (g, retire) => io.out(`fdbroker: generation ${g.number} (pid ${g.pid}) ready${retire.length ? `; retiring ${retire.join(', ')}` : ''}`));
    broker.on('leave', (g) => io.out(`fdbroker: generation ${g.number} (pid ${g.pid}) left (${g.state})`));
  }
  broker.on('overdue', (g, what) => io.err(what === 'ready'
    ? `fdbroker: generation ${g.number} (pid ${g.pid}) not ready in time; it will not retire anyone`
    : `fdbroker: generation ${g.number} (pid ${g.pid}) told to retire at ${g.retiringSince} and still connected`));
  broker.on('paused', (names) => io.err(`fdbroker: paused ${names.join(', ')}: connections wait in the queue until \`fdbroker resume\` or the deadline`));
  broker.on('unpaused', (names, byDeadline) => io.err(`fdbroker: ${names.join(', ')} accept${names.length === 1 ? 's' : ''} again${byDeadline ? ' (the pause reached its deadline)' : ''}`));
  broker.on('notHolding', (g, missing) => io.err(`fdbroker: REFUSED: generation ${g.number} (pid ${g.pid}) said ready but holds no copy of `
    + `${missing.map((m) => `"${m}"`).join(', ')} (it serves on a socket of its own, or on none): ERR_FDBROKER_NOT_HOLDING; it was told to retire, the older generation serves on`));
  broker.on('rollback', (e) => {
    const hint = e.resumed !== undefined ? `generation ${e.resumed} resumes serving`
      : typeof opts.noStandbyHint === 'function' ? opts.noStandbyHint() : (opts.noStandbyHint ?? 'no generation stood by: nobody may be accepting now; start a new version');
    if (hint === undefined) return;
    // A rollback only when someone resumed; otherwise what served failed and nothing stood by to take over.
    io.err(`fdbroker: ${e.resumed !== undefined ? 'ROLLBACK' : 'FAILED'}: generation ${e.failed.number} (pid ${e.failed.pid}) `
      + `${e.reason === 'left' ? 'left without being retired (exited or crashed; a planned stop calls gen.close())' : e.reason === 'hung' ? 'stopped answering (hung)' : 'stopped accepting (its accept queue stalled)'}; ${hint}`);
  });
  // A planned stop is not a rollback (no ROLLBACK line, no rollbacks_total): said once, even with --quiet.
  broker.on('stop', (e) => io.out(`fdbroker: generation ${e.generation.number} (pid ${e.generation.pid}) stopped on purpose; `
    + (e.resumed !== undefined ? `generation ${e.resumed} resumes serving` : 'no generation stood by: nobody serves until the next one is ready')));
  broker.on('resume', (n) => io.err(`fdbroker: generation ${n} stood by and nobody ready came back after the broker started: it resumes serving`));
  broker.on('stall', (e) => io.err(`fdbroker: listener "${e.listener.name}" stalled: ${e.queued} connections wait since ${e.since.toISOString()}`
    + ` and nobody accepts${e.generation !== undefined ? ` (generation ${e.generation} should)` : ''}`));
  if (!quiet) broker.on('release', (n) => io.out(`fdbroker: generation ${n}: standby over, draining`));
  broker.on('listenerBroken', (l) => io.err(`fdbroker: listener "${l.name}" (${describeListener(l)}) no longer listens: a holder shut it down; restart the broker to recreate it`));
  broker.on('clientError', (c, err) => {
    const code: string = (err as FdbrokerError).code ?? '';
    // The broker's user has too many fds in flight: every handout fails until clients read theirs. Always printed.
    if (code === 'ETOOMANYREFS') {
      io.err(`fdbroker: warning: client pid ${c.pid} (uid ${c.uid}): listeners not handed out (ETOOMANYREFS): this user has more fds in unread `
        + 'handouts than its RLIMIT_NOFILE; lower --max-fds-in-flight-per-uid, or raise the broker\'s LimitNOFILE=');
      return;
    }
    // Refusals are always logged; other client errors unless --quiet.
    if (!quiet || code === 'ERR_FDBROKER_ACCESS_DENIED' || code === 'ERR_FDBROKER_NOT_PERMITTED') io.err(`fdbroker: client pid ${c.pid} (uid ${c.uid}): ${code} ${err.message}`);
  });
  // Refusals at connect after the first of a uid: one line per uid and reason per interval, even with --quiet.
  broker.on('refusals', (r) => io.err(`fdbroker: refused uid ${r.uid} (gid ${r.gid}) ${r.count} more time${r.count === 1 ? '' : 's'}`
    + ` in the last ${Math.round(r.intervalMs / 1000)} s: ${r.code}${r.what ? ` (${r.what})` : ''} (last pid ${r.lastPid})`));
  broker.on('warning', (err) => io.err(`fdbroker: warning: ${err.message}`));
  for (const err of broker.takeStartWarnings()) io.err(`fdbroker: warning: ${err.message}`);
  if (reloadPath !== undefined) {
    broker.reloadSource = configReloader(reloadPath, settings, flags);
    broker.configPath = reloadPath;
  }
  // Like the ready line, a reload's outcome is printed even with --quiet.
  broker.on('reloaded', (r) => io.out(`fdbroker: reloaded ${reloadPath}: ${describeReload(r)}`));
  if (!quiet) {
    broker.on('listenerAdded', (l) => io.out(`fdbroker: listener ${l.name}=${describeListener(l)} added`));
    broker.on('listenerRemoved', (l) => io.out(`fdbroker: listener ${l.name}=${describeListener(l)} removed: no longer handed out; its holders keep it until they retire`));
  }
  broker.on('reloadFailed', (err) => io.err(`fdbroker: reload failed, nothing changed, the previous configuration serves: ${(err as FdbrokerError).code ?? ''} ${err.message}`));
  // Under systemd (NOTIFY_SOCKET): READY=1 once the control socket answers, the fd store, STATUS=, WATCHDOG=1, RELOADING=1.
  let systemd: SystemdLink | undefined;
  try {
    systemd = await linkSystemd(broker, inherited, sd, io);
  } catch (err) {
    if (v.takeover === true) {
      // This broker serves the path and has the generations: never stop it over the service manager.
      io.err(`fdbroker: warning: not linked to the service manager: ${(err as Error).message}; this broker serves on`);
    } else {
      void metrics?.close();
      broker.close();
      throw err;
    }
  }
  return {
    broker, controlPath, list: broker.listenerInfos().map((l) => `${l.name}=${describeListener(l)}`).join(' '), metrics, systemd, reloadPath, quiet,
    close: () => {
      systemd?.stopping();
      void metrics?.close();
      broker.close();
    },
  };
}

export async function serve(args: string[], io: Io): Promise<number> {
  const { values: v, positionals } = parseCommand('serve', args, SERVE_OPTIONS);
  const controlPath = controlPathOf('serve', positionals);
  const configPath = v.config;
  // Handlers first: a supervisor may signal as soon as it reads the ready
  // line, and SIGHUP (a closed terminal) must not kill the sockets' owner.
  let stopped: NodeJS.Signals | undefined;
  let onStop: (sig: NodeJS.Signals) => void = (sig) => { stopped = sig; };
  const stopHandler = (sig: NodeJS.Signals) => onStop(sig);
  let onHup = () => io.err(configPath !== undefined ? 'fdbroker: SIGHUP ignored: not serving yet'
    : 'fdbroker: SIGHUP ignored: no --config to reload (stop with SIGTERM or SIGINT)');
  const hup = () => onHup();
  process.on('SIGTERM', stopHandler);
  process.on('SIGINT', stopHandler);
  process.on('SIGHUP', hup);
  const unhook = () => {
    process.off('SIGTERM', stopHandler);
    process.off('SIGINT', stopHandler);
    process.off('SIGHUP', hup);
  };
  let session: ServeSession;
  try {
    session = await openServe(v, controlPath, io);
  } catch (err) {
    unhook();
    throw err;
  }
  const { broker, metrics, systemd, list, quiet } = session;
  // Errors are printed by the reloadFailed handler: SIGHUP has nobody else to tell.
  // (A takeover without the old broker's --config set a source that refuses, saying why.)
  if (broker.reloadSource !== undefined) onHup = () => { try { broker.reload(); } catch { /* reported */ } };
  return new Promise((resolve) => {
    watchTakeover(broker, io, quiet, () => {
      unhook();
      systemd?.stopping();
      void metrics?.close();
      resolve(0);
    });
    onStop = (sig) => {
      unhook();
      session.close();
      if (!quiet) io.out(`fdbroker: ${sig}: stopped${broker.pathRemoved ? `, removed ${controlPath}` : `; ${controlPath} no longer named this broker, left as is`}`);
      resolve(0);
    };
    if (stopped) {
      onStop(stopped);
      return;
    }
    io.out(`fdbroker: ready on ${controlPath} (pid ${process.pid}): ${list}${metrics ? `; metrics on ${metrics.url}` : ''}`);
  });
}
