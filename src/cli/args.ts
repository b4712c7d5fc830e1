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
    if (!spec) return `unknown option ${t.rawName} for ${command}`;
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
