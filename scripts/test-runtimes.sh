#!/usr/bin/env bash
# The other JavaScript runtimes the tests drive (test/cli/runtimes.test.ts):
# Bun and Deno, from the npm registry, installed once into .test-runtimes/
# (git-ignored), pinned to the versions the docs' runtime table names. Kept
# out of devDependencies: `npm install` from a git URL installs those to run
# `prepare`, and every user would download both runtimes. Runs before
# `npm test` (npm's pretest); FDBROKER_SKIP_TEST_DEPS=1 skips it.
set -euo pipefail
if [ "${FDBROKER_SKIP_TEST_DEPS:-}" = 1 ]; then exit 0; fi
cd "$(dirname "$0")/.."
BUN_VERSION=1.4.5
DENO_VERSION=2.9.6
dir=.test-runtimes
if [ -x "$dir/node_modules/.bin/bun" ] && [ -x "$dir/node_modules/.bin/deno" ] \
  && [ "$("$dir/node_modules/.bin/bun" --version 2>/dev/null)" = "$BUN_VERSION" ]; then exit 0; fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{ "private": true }' > "$dir/package.json"
echo "test-runtimes: installing bun@$BUN_VERSION and deno@$DENO_VERSION into $dir" >&2
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "bun@$BUN_VERSION" "deno@$DENO_VERSION" >&2
