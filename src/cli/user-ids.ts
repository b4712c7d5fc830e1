// User and group names to numeric ids, for grants written with names
// ("uid = \"www-data\""). Read from /etc/passwd and /etc/group, then from
// `getent` (NSS: LDAP, sssd) for a name those files lack. Resolved when the
// configuration is read (at start and at each reload), never per connection.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

/** How long one `getent` lookup may take before the name counts as unknown. */
export const GETENT_TIMEOUT_MS = 2000;

export type IdKind = 'uid' | 'gid';

export interface IdResolver { (kind: IdKind, name: string): number | undefined }

/** The id in the third field of the `name` line of a passwd/group-format text. */
export function idFromDatabase(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 3 && /^\d+$/.test(f[2]!)) return Number(f[2]);
  }
  return undefined;
}

/** The system's resolver: the local files first, then getent. */
export const systemIds: IdResolver = (kind, name) => {
  const db = kind === 'uid' ? 'passwd' : 'group';
  try {
    const id = idFromDatabase(fs.readFileSync(`/etc/${db}`, 'utf8'), name);
    if (id !== undefined) return id;
  } catch { /* no such file: ask getent */ }
  try {
    return idFromDatabase(execFileSync('getent', [db, name], { encoding: 'utf8', timeout: GETENT_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'ignore'] }), name);
  } catch {
    return undefined; // unknown name (exit 2), no getent, or too slow
  }
};
