// `fdbroker serve --config FILE`: the configuration file (TOML, parsed by
// smol-toml) and how it combines with the command line. Pure but for
// loadConfig()'s one read of the file: no sockets, no broker.
//
//   backlog = 1024                # as --backlog
//   mode = "0660"                 # as --mode (a string, octal)
//   group = 1000                  # as --group
//   [listeners]                   # as --listen NAME=SPEC, one key per listener
//   http = "tcp://0.0.0.0:8080?backlog=1024"
//   admin = "unix:admin.sock"     # relative paths: against the file's directory
//   [access]                      # as --allow-uid, --allow-gid, --allow-status-uid, --allow-status-gid
//   allow-uid = [1000]
//   [[grants]]                    # as --grant, one table per rule (grant-rule.ts)
//   uid = "www-data"
//   adopt = ["http"]
//   [limits]                      # as --max-clients, --max-clients-per-uid
//   max-clients = 1024
//   [timeouts]                    # ms, as --handshake-timeout, --ready-timeout, --retire-timeout, --stall-timeout, --standby
//   ready = 60000
//   [exec]                        # read by `fdbroker exec --config` only: inherit, retire-signal, ready (exec-config.ts)
//   inherit = ["nginx"]
//
// Combination: the file is the base; a flag given on the command line
// overrides the same setting (a list flag replaces the file's list); a
// --listen NAME=SPEC replaces the file's listener NAME, and adds one
// otherwise. A reload re-reads the file and applies the same flags on top.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as SmolToml from 'smol-toml';
import { FdbrokerError } from '../protocol/errors';
import { parseListenerSpec, type ListenerSpec } from '../broker/spec';
import type { AccessOptions } from '../broker/access';
import type { GrantRule } from '../broker/grants';
import type { ReloadResult, ReloadSettings } from '../broker/reload';
import { MAX_ID, MAX_TIMER_MS } from './args';
import { MAX_BACKLOG, MAX_CLIENTS_LIMIT } from './defaults';
import { execSettingsOf, type ExecSettings } from './exec-config';
import { grantFromTable, GrantRuleError } from './grant-rule';
import { systemIds, type IdResolver } from './user-ids';

/** Everything `serve` takes from flags or the file; an absent field is "not set" (the broker's default applies). */
export interface ServeSettings {
  listeners: ListenerSpec[];
  access: AccessOptions;
  maxClients?: number;
  maxClientsPerUid?: number;
  backlog?: number;
  mode?: number;
  group?: number;
  handshakeTimeoutMs?: number;
  readyTimeoutMs?: number;
  retireTimeoutMs?: number;
  stallTimeoutMs?: number;
  standbyMs?: number;
  /** The [exec] table: read by `fdbroker exec --config` (exec-config.ts), checked and otherwise ignored by serve. */
  exec?: ExecSettings;
}

type ScalarField = Exclude<keyof ServeSettings, 'listeners' | 'access' | 'exec'>;
type AccessField = Exclude<keyof AccessOptions, 'grants'>;

/** A configuration file that cannot be read or is not valid. `key`: the key path at fault (absent for a syntax error). */
export class ConfigError extends FdbrokerError {
  readonly file: string;
  readonly key: string | undefined;
  readonly reason: string;
  constructor(file: string, key: string | undefined, reason: string, options?: { cause?: unknown }) {
    super('ERR_FDBROKER_INVALID_CONFIG', `${file}: ${key !== undefined ? `${key}: ` : ''}${reason}`, options);
    this.file = file;
    this.key = key;
    this.reason = reason;
  }
}

interface Scalar { field: ScalarField; kind: 'int' | 'ms' | 'mode'; min: number; max: number; startOnly: boolean }

/** Top-level scalars and the [limits]/[timeouts] tables: key path -> setting. */
const SCALARS: Record<string, Scalar> = {
  'backlog': { field: 'backlog', kind: 'int', min: 1, max: MAX_BACKLOG, startOnly: true },
  'mode': { field: 'mode', kind: 'mode', min: 0, max: 0o777, startOnly: true },
  'group': { field: 'group', kind: 'int', min: 0, max: MAX_ID, startOnly: true },
  'limits.max-clients': { field: 'maxClients', kind: 'int', min: 1, max: MAX_CLIENTS_LIMIT, startOnly: false },
  'limits.max-clients-per-uid': { field: 'maxClientsPerUid', kind: 'int', min: 1, max: MAX_CLIENTS_LIMIT, startOnly: false },
  'timeouts.handshake': { field: 'handshakeTimeoutMs', kind: 'ms', min: 1, max: MAX_TIMER_MS, startOnly: true },
  'timeouts.ready': { field: 'readyTimeoutMs', kind: 'ms', min: 1, max: MAX_TIMER_MS, startOnly: true },
  'timeouts.retire': { field: 'retireTimeoutMs', kind: 'ms', min: 1, max: MAX_TIMER_MS, startOnly: true },
  'timeouts.stall': { field: 'stallTimeoutMs', kind: 'ms', min: 0, max: MAX_TIMER_MS, startOnly: true },
  'timeouts.standby': { field: 'standbyMs', kind: 'ms', min: 0, max: MAX_TIMER_MS, startOnly: true },
};

const ACCESS: Record<string, AccessField> = {
  'access.allow-uid': 'allowUids',
  'access.allow-gid': 'allowGids',
  'access.allow-status-uid': 'statusUids',
  'access.allow-status-gid': 'statusGids',
};

const TABLES = ['listeners', 'access', 'limits', 'timeouts', 'exec'] as const;

const isTable = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (isTable(v)) return 'a table';
  if (typeof v === 'bigint') return `the integer ${v}`;
  if (typeof v === 'number') return `the float ${v}`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v).slice(0, 60)}`;
  return typeof v === 'object' ? 'a date' : `a ${typeof v}`;
}

function integer(file: string, key: string, v: unknown, min: number, max: number, what: string): number {
  if (typeof v !== 'bigint' || v < BigInt(min) || v > BigInt(max)) {
    throw new ConfigError(file, key, `must be ${what} from ${min} to ${max}, not ${describe(v)}`);
  }
  return Number(v);
}

/**
 * Parses the text of a configuration file. `file` names it in errors; relative
 * unix listener paths are resolved against `baseDir` (the file's directory).
 * Throws ConfigError.
 */
export function parseConfig(text: string, file: string, baseDir = path.dirname(path.resolve(file)), ids: IdResolver = systemIds): ServeSettings {
  let doc: Record<string, unknown>;
  // Loaded here, not at start: a broker without --config never carries the parser.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { parse, TomlError } = require('smol-toml') as typeof SmolToml;
  try {
    // Integers as BigInt: a float (5000.0) is then told apart from an integer and refused.
    doc = parse(text, { integersAsBigInt: true, unsafeKeyBehaviour: 'throw' }) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      const first = err.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
      throw new ConfigError(`${file}:${err.line}:${err.column}`, undefined, `not valid TOML: ${first}`, { cause: err });
    }
    throw new ConfigError(file, undefined, `not valid TOML: ${(err as Error).message}`, { cause: err });
  }
  const out: ServeSettings = { listeners: [], access: {} };
  const allowedTop = [...TABLES, 'grants', ...Object.keys(SCALARS).filter((k) => !k.includes('.'))];
  for (const [key, value] of Object.entries(doc)) {
    if (!allowedTop.includes(key)) throw new ConfigError(file, key, `unknown key (allowed at the top: ${allowedTop.join(', ')})`);
    if (key === 'grants') {
      out.access.grants = grantsOf(file, value, ids);
      continue;
    }
    if ((TABLES as readonly string[]).includes(key)) {
      if (!isTable(value)) throw new ConfigError(file, key, `must be a table ([${key}]), not ${describe(value)}`);
      if (key === 'listeners') out.listeners = listenersOf(file, value, baseDir);
      else if (key === 'exec') out.exec = execSettingsOf(value, (k, reason) => { throw new ConfigError(file, k, reason); });
      else tableOf(file, key, value, out);
      continue;
    }
    scalar(file, key, value, out);
  }
  return out;
}

function listenersOf(file: string, table: Record<string, unknown>, baseDir: string): ListenerSpec[] {
  return Object.entries(table).map(([name, value]) => {
    const key = `listeners.${name}`;
    if (typeof value !== 'string') throw new ConfigError(file, key, `must be a listener SPEC string like "tcp://0.0.0.0:8080", not ${describe(value)}`);
    try {
      return parseListenerSpec(`${name}=${value}`, baseDir);
    } catch (err) {
      if ((err as FdbrokerError).code !== 'ERR_FDBROKER_INVALID_SPEC') throw err;
      throw new ConfigError(file, key, (err as Error).message, { cause: err });
    }
  });
}

/** [[grants]]: an array of tables, one rule each (grant-rule.ts); errors name the key as grants[i].field. */
function grantsOf(file: string, value: unknown, ids: IdResolver): GrantRule[] {
  if (!Array.isArray(value) || !value.every(isTable)) throw new ConfigError(file, 'grants', `must be tables ([[grants]], one per rule), not ${describe(value)}`);
  return value.map((t, i) => {
    try {
      return grantFromTable(t, ids);
    } catch (err) {
      if (!(err instanceof GrantRuleError)) throw err;
      throw new ConfigError(file, `grants[${i}]${err.key !== undefined ? `.${err.key}` : ''}`, err.message, { cause: err });
    }
  });
}

function tableOf(file: string, table: string, value: Record<string, unknown>, out: ServeSettings): void {
  const known = [...Object.keys(SCALARS), ...Object.keys(ACCESS)].filter((k) => k.startsWith(`${table}.`));
  for (const [k, v] of Object.entries(value)) {
    const key = `${table}.${k}`;
    if (!known.includes(key)) throw new ConfigError(file, key, `unknown key (allowed in [${table}]: ${known.map((x) => x.slice(table.length + 1)).join(', ')})`);
    const field = ACCESS[key];
    if (field) {
      if (!Array.isArray(v)) throw new ConfigError(file, key, `must be an array of numeric ids, like [1000, 1001], not ${describe(v)}`);
      out.access[field] = v.map((id, i) => integer(file, `${key}[${i}]`, id, 0, MAX_ID, 'a numeric id'));
    } else {
      scalar(file, key, v, out);
    }
  }
}

function scalar(file: string, key: string, v: unknown, out: ServeSettings): void {
  const s = SCALARS[key]!;
  if (s.kind === 'mode') {
    if (typeof v !== 'string' || !/^0?[0-7]{3}$/.test(v)) throw new ConfigError(file, key, `must be an octal mode as a string, like "0660", not ${describe(v)}`);
    out[s.field] = parseInt(v, 8);
    return;
  }
  out[s.field] = integer(file, key, v, s.min, s.max, s.kind === 'ms' ? 'a whole number of milliseconds' : 'a whole number');
}

/** Reads and parses `file`; an unreadable file is a ConfigError too (with the system error as cause). */
export function loadConfig(file: string): ServeSettings {
  return parseConfig(readConfigFile(file), file);
}

/**
 * The file's text, checked as sshd checks its own files: whoever can write it
 * decides the broker's listeners and grants, so it must be a regular file,
 * owned by root or the broker's user, and not writable by group or others.
 * Opened O_NONBLOCK and checked with fstat before reading: a FIFO at the path
 * is refused, never waited on.
 */
function readConfigFile(file: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(file, undefined, `cannot be read (${e.code ?? e.message})`, { cause: err });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new ConfigError(file, undefined, 'is not a regular file: give the path of a TOML file');
    const me = process.geteuid?.() ?? 0;
    if (st.uid !== 0 && st.uid !== me) {
      throw new ConfigError(file, undefined, `belongs to uid ${st.uid}, neither root nor this user (${me}): its owner could change `
        + 'the listeners and grants; chown it to root or to this user');
    }
    if ((st.mode & 0o022) !== 0) {
      const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
      throw new ConfigError(file, undefined, `is writable by ${st.mode & 0o020 ? 'its group' : 'others'} (mode ${mode}): whoever can `
        + `write it could grant itself the listeners; chmod go-w ${file}`);
    }
    return fs.readFileSync(fd, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(file, undefined, `cannot be read (${e.code ?? e.message})`, { cause: err });
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The settings in force: `file` (if any) as the base, every setting given in
 * `flags` over it. Listeners: `flags`' replace the file's of the same name
 * (in the file's order), the others follow.
 */
export function mergeSettings(file: ServeSettings | undefined, flags: ServeSettings): ServeSettings {
  const base = file ?? { listeners: [], access: {} };
  const out: ServeSettings = { listeners: [], access: { ...base.access } };
  for (const s of Object.values(SCALARS)) {
    const v = flags[s.field] ?? base[s.field];
    if (v !== undefined) out[s.field] = v;
  }
  for (const f of Object.values(ACCESS)) {
    const v = flags.access[f] ?? base.access[f];
    if (v !== undefined) out.access[f] = v;
  }
  // --grant replaces the file's [[grants]], like any list flag.
  const grants = flags.access.grants ?? base.access.grants;
  if (grants !== undefined) out.access.grants = grants;
  const byFlag = new Map(flags.listeners.map((l) => [l.name, l]));
  out.listeners = base.listeners.map((l) => byFlag.get(l.name) ?? l);
  const inFile = new Set(base.listeners.map((l) => l.name));
  out.listeners.push(...flags.listeners.filter((l) => !inFile.has(l.name)));
  return out;
}

/**
 * The key paths of settings a reload cannot change (read at start: the
 * backlog default, the control socket's mode and group, the timeouts) whose
 * value in force differs between `before` and `after`.
 */
export function startOnlyChanges(before: ServeSettings, after: ServeSettings): string[] {
  return Object.entries(SCALARS).filter(([, s]) => s.startOnly && before[s.field] !== after[s.field]).map(([k]) => k);
}

/** What a reload of `s` applies (the listeners, grants and limits; the rest is read at start). */
export function reloadSettingsOf(s: ServeSettings): ReloadSettings {
  return {
    listeners: s.listeners,
    access: s.access,
    limits: { ...(s.maxClients !== undefined ? { maxClients: s.maxClients } : {}), ...(s.maxClientsPerUid !== undefined ? { maxClientsPerUid: s.maxClientsPerUid } : {}) },
  };
}

/**
 * The broker's reload source for `serve --config FILE`: re-reads FILE, puts
 * the same `flags` over it, and refuses (ConfigError, nothing changes) a file
 * that changes a setting read at start only, relative to `started`.
 */
export function configReloader(file: string, started: ServeSettings, flags: ServeSettings): () => ReloadSettings {
  return () => {
    const next = mergeSettings(loadConfig(file), flags);
    const fixed = startOnlyChanges(started, next);
    if (fixed.length > 0) {
      throw new ConfigError(file, fixed.join(', '), 'read at start only, and this file changes it: put back the value in force, or restart the broker to change it');
    }
    return reloadSettingsOf(next);
  };
}

/** "added b; removed c; changed -; grants allow-uid +1001": one line for logs and `fdbroker reload`. */
export function describeReload(r: ReloadResult): string {
  const list = (names: string[]) => (names.length > 0 ? names.join(', ') : '-');
  return `added ${list(r.added)}; removed ${list(r.removed)}; changed ${list(r.changed)}`
    + `${r.grants !== undefined ? `; grants ${list(r.grants)}` : ''}`;
}
