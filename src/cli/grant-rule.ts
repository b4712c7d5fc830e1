// The two spellings of a per-name grant (src/broker/grants.ts), checked the
// same way: the --grant flag, words separated by spaces,
//
//   --grant 'uid=www-data adopt=http,metrics status deploy'
//   --grant 'gid=monitoring status=*'
//
// and a [[grants]] table of the configuration file,
//
//   [[grants]]
//   uid = "www-data"            # or a number; or gid = ...
//   adopt = ["http", "metrics"] # "*": every listener
//   status = true               # or names: ["*"]
//   deploy = true
//   reload = false
//   takeover = false
//
// User and group names are resolved to ids here (user-ids.ts). Errors are
// plain texts the callers wrap (UsageError, ConfigError with the key).
import { ALL_NAMES, type GrantRule } from '../broker/grants';
import { isValidName } from '../protocol/messages';
import { MAX_ID } from './args';
import type { IdKind, IdResolver } from './user-ids';

/** A mistake in one rule; `key`: the field at fault, if one is. */
export class GrantRuleError extends Error {
  constructor(readonly key: string | undefined, message: string) {
    super(message);
    this.name = 'GrantRuleError';
  }
}

const FLAGS = ['deploy', 'reload', 'takeover'] as const;
export const GRANT_KEYS = ['uid', 'gid', 'adopt', 'status', ...FLAGS] as const;

function id(kind: IdKind, v: string | number, resolve: IdResolver): number {
  if (typeof v === 'number' || /^\d+$/.test(v)) {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0 || n > MAX_ID) throw new GrantRuleError(kind, `must be a numeric id from 0 to ${MAX_ID}, or a ${kind === 'uid' ? 'user' : 'group'} name, not ${v}`);
    return n;
  }
  if (v === '') throw new GrantRuleError(kind, `needs a ${kind === 'uid' ? 'user' : 'group'} name or number`);
  const found = resolve(kind, v);
  if (found === undefined) throw new GrantRuleError(kind, `no ${kind === 'uid' ? 'user' : 'group'} is named "${v}" (give the number instead)`);
  return found;
}

function names(key: string, list: readonly string[]): string[] {
  for (const n of list) {
    if (n !== ALL_NAMES && !isValidName(n)) throw new GrantRuleError(key, `"${n}" is not a listener name (1-128 letters, digits and . _ - : @) nor "*"`);
  }
  return [...new Set(list)];
}

/** Checks a rule's shape: one of uid, gid, and something granted. */
function finish(r: GrantRule): GrantRule {
  if ((r.uid === undefined) === (r.gid === undefined)) throw new GrantRuleError(undefined, 'needs exactly one of uid and gid (who the rule is for)');
  const grants = (r.adopt?.length ?? 0) > 0 || r.status === true || (Array.isArray(r.status) && r.status.length > 0) || FLAGS.some((f) => r[f] === true);
  if (!grants) throw new GrantRuleError(undefined, `grants nothing: give adopt, status, ${FLAGS.join(', ')}`);
  return r;
}

/** A --grant value: "uid=NAME|ID adopt=NAME[,NAME] status[=NAME,...] deploy reload takeover". */
export function parseGrantFlag(text: string, resolve: IdResolver): GrantRule {
  const r: GrantRule = {};
  const seen = new Set<string>();
  for (const word of text.trim().split(/\s+/).filter(Boolean)) {
    const eq = word.indexOf('=');
    const key = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? undefined : word.slice(eq + 1);
    if (!(GRANT_KEYS as readonly string[]).includes(key)) throw new GrantRuleError(key, `unknown word "${word}" (a rule has ${GRANT_KEYS.join(', ')})`);
    if (seen.has(key)) throw new GrantRuleError(key, `"${key}" is given twice`);
    seen.add(key);
    if (key === 'uid' || key === 'gid') {
      if (value === undefined) throw new GrantRuleError(key, `needs a value: ${key}=NAME or ${key}=NUMBER`);
      r[key] = id(key, value, resolve);
    } else if (key === 'adopt') {
      if (!value) throw new GrantRuleError(key, 'needs names: adopt=NAME[,NAME...] or adopt=*');
      r.adopt = names(key, value.split(','));
    } else if (key === 'status') {
      r.status = value === undefined ? true : names(key, value.split(','));
    } else {
      if (value !== undefined) throw new GrantRuleError(key, `takes no value ("${key}", not "${word}")`);
      r[key as typeof FLAGS[number]] = true;
    }
  }
  return finish(r);
}

const describe = (v: unknown) => (Array.isArray(v) ? 'an array' : typeof v === 'bigint' ? `the integer ${v}` : typeof v === 'string' ? `the string ${JSON.stringify(v).slice(0, 60)}` : `a ${typeof v}`);

/** One [[grants]] table (smol-toml's value, integers as BigInt). */
export function grantFromTable(t: Record<string, unknown>, resolve: IdResolver): GrantRule {
  const r: GrantRule = {};
  for (const [key, v] of Object.entries(t)) {
    if (!(GRANT_KEYS as readonly string[]).includes(key)) throw new GrantRuleError(key, `unknown key (allowed in [[grants]]: ${GRANT_KEYS.join(', ')})`);
    const list = (): string[] => {
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new GrantRuleError(key, `must be an array of listener names, like ["http"] or ["*"], not ${describe(v)}`);
      return names(key, v as string[]);
    };
    if (key === 'uid' || key === 'gid') {
      if (typeof v !== 'string' && typeof v !== 'bigint') throw new GrantRuleError(key, `must be a numeric id or a name, not ${describe(v)}`);
      if (typeof v === 'bigint' && (v < 0n || v > BigInt(MAX_ID))) throw new GrantRuleError(key, `must be a numeric id from 0 to ${MAX_ID}, not ${v}`);
      r[key] = id(key, typeof v === 'bigint' ? Number(v) : v, resolve);
    } else if (key === 'adopt') {
      r.adopt = list();
    } else if (key === 'status') {
      if (typeof v === 'boolean') r.status = v;
      else r.status = list();
    } else {
      if (typeof v !== 'boolean') throw new GrantRuleError(key, `must be true or false, not ${describe(v)}`);
      r[key as typeof FLAGS[number]] = v;
    }
  }
  return finish(r);
}
