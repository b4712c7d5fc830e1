// Argument parsing shared by the commands: Node's util.parseArgs in strict
// mode, with its errors turned into one-line usage errors, and the checks
// for numbers, milliseconds and id lists.
import { parseArgs } from 'node:util';
import type { FdbrokerError } from '../protocol/errors';

/** Largest ms value setTimeout() honours (2^31 - 1); larger ones fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;
/** Largest uid/gid (2^32 - 2; 2^32 - 1 is the "no id" value of chown). */
export const MAX_ID = 2 ** 32 - 2;

/** A mistake in the command line: exit 2, one line, and a hint to --help. `code` when a library check found it. */
export class UsageError extends Error {
  readonly code: FdbrokerError['code'] | undefined;
  constructor(message: string, code?: FdbrokerError['code']) {
    super(message);
    this.name = 'UsageError';
    this.code = code;
  }
}

/** One option as util.parseArgs takes it (only what the commands use). */
export interface OptionSpec { type: 'string' | 'boolean'; multiple?: boolean }
export type Options = Record<string, OptionSpec>;
/** What parseArgs returns for `O`: a string or boolean per option, arrays for `multiple`. */
export type OptionValues<O extends Options> = {
  [K in keyof O]?: O[K] extends { type: 'boolean' }
    ? (O[K] extends { multiple: true } ? boolean[] : boolean)
    : (O[K] extends { multiple: true } ? string[] : string);
};
export interface ParsedCommand<O extends Options> {
  values: OptionValues<O>;
  /** Positional arguments (before `--`). */
  positionals: string[];
  /** The arguments after `--`, verbatim; undefined without `--`. */
  rest: string[] | undefined;
}

/**
 * Parses one command's arguments. `rest` is what follows `--` (only when
 * `terminator` is set; otherwise `--` is refused). Throws UsageError.
 */
export function parseCommand<const O extends Options>(command: string, args: string[], options: O, terminator = false): ParsedCommand<O> {
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true, tokens: true });
  } catch (err) {
    throw new UsageError(describeParseError(command, args, options, err as Error));
  }
  const end = parsed.tokens.find((t) => t.kind === 'option-terminator');
  const before = end ? parsed.tokens.filter((t) => t.kind === 'positional' && t.index < end.index).length : parsed.positionals.length;
  if (end && !terminator) throw new UsageError(`${command} takes no "--"`);
  return { values: parsed.values as OptionValues<O>, positionals: parsed.positionals.slice(0, before), rest: end ? parsed.positionals.slice(before) : undefined };
}

/**
 * Node's parseArgs messages are several lines and suggest `--` for unknown
 * options; parse again leniently to find the offending argument and say it in one line.
 */
function describeParseError(command: string, args: string[], options: Options, err: Error): string {
  const { tokens } = parseArgs({ args, options, strict: false, allowPositionals: true, tokens: true });
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    const spec = options[t.name];
    if (!spec) {
      const guess = t.rawName.startsWith('--') ? nearest(t.name, Object.keys(options)) : undefined;
      return `unknown option ${t.rawName} for ${command}${guess ? `: did you mean --${guess}?` : ''}`;
    }
    if (spec.type === 'boolean' && t.inlineValue) return `${t.rawName} takes no value`;
    if (spec.type === 'string' && t.value === undefined) return `${t.rawName} needs a value`;
    if (spec.type === 'string' && !t.inlineValue && t.value!.startsWith('-')) {
      return `${t.rawName} needs a value, not "${t.value}" (write ${t.rawName}=${t.value} if that is the value)`;
    }
  }
  return (err.message.split('\n')[0] ?? err.message).trim();
}

/** Exactly one positional, the control socket path. */
export function controlPathOf(command: string, positionals: string[], where = ''): string {
  if (positionals.length === 0) throw new UsageError(`${command} needs a control socket path${where}`);
  if (positionals.length > 1) throw new UsageError(`${command} takes one control socket path${where}, got ${positionals.length}: ${positionals.join(' ')}`);
  return positionals[0]!;
}

/** A whole number from `min` to `max`, or undefined when the option is absent. */
export function intOption(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, not "${v}"`);
  return n;
}

/** A whole number of milliseconds (1 to MAX_TIMER_MS), or undefined. */
export function msOption(name: string, v: string | undefined, min = 1): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min || n > MAX_TIMER_MS) {
    throw new UsageError(`--${name} must be a whole number of milliseconds, ${min}-${MAX_TIMER_MS}, not "${v}"`);
  }
  return n;
}

/** Numeric ids from every occurrence of a repeated option, each comma-separated. */
export function idListOption(name: string, vs: string[] | undefined): number[] {
  const out: number[] = [];
  for (const v of vs ?? []) {
    for (const part of v.split(',')) {
      if (!/^\d+$/.test(part) || Number(part) > MAX_ID) throw new UsageError(`--${name} takes numeric ids (comma-separated), not "${part}"`);
      out.push(Number(part));
    }
  }
  return out;
}

/** An octal file mode like 0600, or undefined. */
export function modeOption(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^0?[0-7]{3}$/.test(v)) throw new UsageError(`--${name} must be octal, like 0600, not "${v}"`);
  return parseInt(v, 8);
}

/** One of `choices`, or `fallback` when absent. */
export function choiceOption<const C extends string>(name: string, v: string | undefined, choices: readonly C[], fallback: C): C {
  if (v === undefined) return fallback;
  if (!(choices as readonly string[]).includes(v)) throw new UsageError(`--${name} is ${choices.map((c) => `"${c}"`).join(' or ')}, not "${v}"`);
  return v as C;
}

/** Edit distance with adjacent transpositions (optimal string alignment): "sevre" is 1 from "serve". */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** Most edits a word may be from a candidate to be suggested: 1 for short words, 2 from 5 letters on. */
const MAX_SUGGEST_DISTANCE = (word: string): number => (word.length >= 5 ? 2 : 1);

/** The candidate nearest to `word` (did you mean), if one is near enough and no other is as near; a prefix of one candidate counts as near. */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  const prefixed = candidates.filter((c) => w.length >= 3 && c.startsWith(w));
  if (prefixed.length === 1) return prefixed[0];
  const scored = candidates.map((c) => ({ c, d: editDistance(w, c) })).sort((x, y) => x.d - y.d);
  const best = scored[0];
  if (!best || best.d > MAX_SUGGEST_DISTANCE(w) || scored[1]?.d === best.d) return undefined;
  return best.c;
}
