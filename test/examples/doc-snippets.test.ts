// Code the guides show inline is run as shown: the Python server of
// docs/guides/other-languages.md ("## Python", its first ```python block),
// extracted from the page itself, is swapped under `fdbroker exec` twice under
// load on new connections: 0 failed, every version exits 0 once retired.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, CLI, get, loadLoop, ROOT, run, sleep, startBroker, tmpDir } from '../helpers';
import { SYSTEM_PYTHON } from '../other-user';
import { execReady, SWAP_BROKER_FLAGS } from '../swap-helpers';

afterEach(cleanup);

/** The first fenced block of `lang` after the heading `heading` in the Markdown file `file`. */
export function codeBlock(file: string, heading: string, lang: string): string {
  const text = fs.readFileSync(file, 'utf8');
  const at = text.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`${file} has no heading "${heading}"`);
  const m = text.slice(at).match(new RegExp('```' + lang + '\\n([\\s\\S]*?)\\n```'));
  if (!m) throw new Error(`${file}: no \`\`\`${lang} block after "${heading}"`);
  return m[1]!;
}

describe('docs/guides/other-languages.md', () => {
  it('the inline Python server: swapped twice under load with 0 failed requests; each old version exits 0', async () => {
    const dir = tmpDir();
    const server = path.join(dir, 'server.py');
    fs.writeFileSync(server, codeBlock(path.join(ROOT, 'docs', 'guides', 'other-languages.md'), '## Python', 'python'));
    const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0'], SWAP_BROKER_FLAGS);
    const start = () => run(process.execPath, [CLI, 'exec', broker.sock, '--', SYSTEM_PYTHON, server]);
    let cur = start();
    await execReady(broker.sock, cur);
    expect((await get(broker.ports.http!)).body).toMatch(/^hello from \d+\n$/);
    const load = loadLoop(broker.ports.http!, { concurrency: 6 });
    await sleep(300);
    for (let i = 0; i < 2; i++) {
      const next = start();
      await execReady(broker.sock, next);
      expect((await cur.exited).code, cur.stderr()).toBe(0);
      cur = next;
      await sleep(300);
    }
    const stats = await load.stop();
    expect(stats.failed, JSON.stringify(stats.byKind)).toBe(0);
    expect(stats.ok).toBeGreaterThan(50);
  });
});
