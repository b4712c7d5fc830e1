// The README is a front door: short, and every relative link in it and in
// docs/ leads to a file that exists (and to a heading that exists, for
// links with a #fragment into a markdown file). User-facing text carries no
// development notes.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../helpers';

/** The README's length budget: read in about five minutes. */
const MAX_README_LINES = 300;

/** Every markdown file a user reads: the README, PROTOCOL.md, and docs/ (recursively). */
function userDocs(): string[] {
  const out = ['README.md', 'PROTOCOL.md'];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
      const p = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.md')) out.push(p);
    }
  };
  walk('docs');
  return out;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes. */
function anchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
}

function anchorsOf(file: string): Set<string> {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8').replace(/```[\s\S]*?```/g, '');
  return new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchor(m[1]!)));
}

/** Markdown links [text](target) outside code blocks and code spans. */
function linksOf(file: string): string[] {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8').replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
}

describe('README and docs', () => {
  it(`the README is at most ${MAX_README_LINES} lines`, () => {
    const lines = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n').length;
    expect(lines).toBeLessThanOrEqual(MAX_README_LINES);
  });

  it('finds the docs it checks (the check cannot pass on nothing)', () => {
    const files = userDocs();
    expect(files).toContain('docs/guides/systemd.md');
    expect(files).toContain('docs/reference/cli.md');
    expect(files.flatMap(linksOf).length).toBeGreaterThan(50);
  });

  it('every relative link leads to a file that exists, and every #fragment to a heading', () => {
    const broken: string[] = [];
    for (const file of userDocs()) {
      for (const link of linksOf(file)) {
        if (/^[a-z]+:/i.test(link)) continue;   // https:, mailto:
        const [target, fragment] = link.split('#') as [string, string | undefined];
        const resolved = target === '' ? file : path.posix.normalize(path.posix.join(path.posix.dirname(file), target));
        if (!fs.existsSync(path.join(ROOT, resolved))) {
          broken.push(`${file}: ${link} (no ${resolved})`);
          continue;
        }
        if (fragment && resolved.endsWith('.md') && !anchorsOf(resolved).has(fragment)) {
          broken.push(`${file}: ${link} (no heading #${fragment} in ${resolved})`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('no development notes in user-facing text (issue numbers, "this branch", commit hashes, sessions)', () => {
    const found: string[] = [];
    for (const file of [...userDocs(), 'examples/systemd/fdbroker.service']) {
      const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
      for (const re of [/\bissue \d+/i, /\bthis branch\b/i, /`main` at `?[0-9a-f]{7}/, /\bsession \d+\b/i, /\bby a session\b/i]) {
        const m = re.exec(text);
        if (m) found.push(`${file}: "${m[0]}"`);
      }
    }
    expect(found).toEqual([]);
  });
});
