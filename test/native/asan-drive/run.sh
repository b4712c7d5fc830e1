#!/usr/bin/env bash
# Builds the native addon with AddressSanitizer in a temp dir (the repo's own
# build/ is left alone) and runs test/native/asan-drive/drive.js against that build, with
# the compiler's libasan preloaded into node. Exits non-zero on any ASan report
# or failed check. Needs g++ and node's headers (the same as `npm install`).
#
#   test/native/asan-drive/run.sh            # build + drive
#   FDBROKER_ASAN_KEEP=1 ...    # keep the temp dir (printed) for inspection
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
CXX="${CXX:-g++}"
LIBASAN="$("$CXX" -print-file-name=libasan.so)"
if [[ "$LIBASAN" != /* || ! -e "$LIBASAN" ]]; then
  echo "asan: $CXX has no libasan.so ($LIBASAN)" >&2
  exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fdb-asan-XXXXXX")"
if [[ -z "${FDBROKER_ASAN_KEEP:-}" ]]; then trap 'rm -rf "$WORK"' EXIT; else echo "asan: keeping $WORK"; fi

cp -r "$ROOT/native" "$WORK/native"
# The copied binding.gyp: node-addon-api resolved from the repo (the temp dir
# has no node_modules), and -fsanitize=address on compile and link.
node - "$ROOT" "$WORK" <<'JS'
const fs = require('node:fs');
const path = require('node:path');
const [root, work] = process.argv.slice(2);
const gyp = JSON.parse(fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8'));
// include_dir is relative to the cwd; use the package's absolute directory.
const addonApi = path.dirname(require.resolve('node-addon-api/package.json', { paths: [root] }));
const asan = ['-fsanitize=address', '-fno-omit-frame-pointer', '-g', '-O1'];
for (const t of gyp.targets) {
  t.include_dirs = [addonApi];
  t.cflags = [...(t.cflags ?? []), ...asan];
  t.cflags_cc = [...(t.cflags_cc ?? []), ...asan];
  t.ldflags = [...(t.ldflags ?? []), '-fsanitize=address'];
}
fs.writeFileSync(path.join(work, 'binding.gyp'), JSON.stringify(gyp, null, 2));
JS

NODE_GYP="$ROOT/node_modules/.bin/node-gyp"
# Build against the running node's own headers when it has them (no download):
# npm passes its nodedir setting as npm_config_nodedir; otherwise use the
# prefix of this node when <prefix>/include/node/node_api.h exists.
GYP_ARGS=(rebuild --loglevel=warn)
if [[ -z "${npm_config_nodedir:-}" ]]; then
  PREFIX="$(dirname "$(dirname "$(command -v node)")")"
  if [[ -e "$PREFIX/include/node/node_api.h" ]]; then GYP_ARGS+=("--nodedir=$PREFIX"); fi
fi
(cd "$WORK" && "$NODE_GYP" "${GYP_ARGS[@]}" >"$WORK/build.log" 2>&1) || {
  cat "$WORK/build.log" >&2
  echo "asan: build failed" >&2
  exit 2
}
ADDON="$WORK/build/Release/fdbroker.node"
# (grep without -q: with pipefail, -q's early exit would fail nm with SIGPIPE)
if ! nm -D "$ADDON" 2>/dev/null | grep '__asan_' >/dev/null; then
  echo "asan: $ADDON is not instrumented" >&2
  exit 2
fi

# detect_leaks=0: node itself does not free everything at exit.
# abort_on_error=0 + exitcode: a report makes node exit 99, not dump core.
export ASAN_OPTIONS="detect_leaks=0:exitcode=99:abort_on_error=0:halt_on_error=1:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
set +e
LD_PRELOAD="$LIBASAN" FDBROKER_ASAN_ADDON="$ADDON" node --expose-gc "$ROOT/test/native/asan-drive/drive.js"
rc=$?
set -e
exit $rc
