// The [exec] table of the configuration file: what `fdbroker exec --config
// FILE` takes from it (the broker's own file, so one file describes the
// listeners and how programs are given them). `serve` checks the table too,
// and otherwise ignores it.
//
//   [exec]
//   inherit = ["nginx"]           # as --inherit, one or more dialects (dialect.ts)
//   retire-signal = "SIGQUIT"     # as --retire-signal
//   ready = "immediate"           # as --ready
//
// A flag on exec's command line overrides the same setting of the file
// (several --inherit replace the file's list).
import { parseDialect, type Dialect } from './dialect';

export interface ExecSettings {
  inherit?: Dialect[];
  retireSignal?: string;
  ready?: 'notify' | 'immediate';
}

/** The keys of [exec], for the error that names them. */
export const EXEC_KEYS = ['inherit', 'retire-signal', 'ready'] as const;

/**
 * The [exec] table as settings; `fail(key, reason)` throws the caller's
 * ConfigError (config.ts), with the key path relative to the file.
 */
export function execSettingsOf(table: Record<string, unknown>, fail: (key: string, reason: string) => never): ExecSettings {
  const out: ExecSettings = {};
  for (const [k, v] of Object.entries(table)) {
    const key = `exec.${k}`;
    switch (k) {
      case 'inherit': {
        if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== 'string')) {
          fail(key, 'must be a non-empty array of dialect names, like ["systemd", "nginx"]');
        }
        out.inherit = (v as string[]).map((name, i) => {
          try {
            return parseDialect(name);
          } catch (err) {
            return fail(`${key}[${i}]`, (err as Error).message.replace(/^--inherit /, ''));
          }
        });
        break;
      }
      case 'retire-signal':
        if (typeof v !== 'string' || v === '') fail(key, 'must be a signal name as a string, like "SIGQUIT"');
        out.retireSignal = v as string;
        break;
      case 'ready':
        if (v !== 'notify' && v !== 'immediate') fail(key, 'must be "notify" or "immediate"');
        out.ready = v as 'notify' | 'immediate';
        break;
      default:
        fail(key, `unknown key (allowed in [exec]: ${EXEC_KEYS.join(', ')})`);
    }
  }
  return out;
}
