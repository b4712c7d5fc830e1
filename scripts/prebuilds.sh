#!/usr/bin/env bash
# Regenerates prebuilds/: one Node-API binary per platform (any Node >= 20
# loads it), found at run time by node-gyp-build. linux-x64 is built with the
# host compiler, linux-arm64 with Debian's cross compiler:
#   apt-get install g++ make python3 g++-aarch64-linux-gnu
# Both are tagged `glibc`, so on musl (Alpine) node-gyp-build skips them and
# the install builds from source. test/prebuilds.test.ts checks the result
# (architecture, highest glibc/GLIBCXX symbol versions, source hash).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in g++ make python3 aarch64-linux-gnu-g++ aarch64-linux-gnu-strip; do
  command -v "$tool" >/dev/null || { echo "prebuild: $tool is missing (apt-get install g++ make python3 g++-aarch64-linux-gnu)" >&2; exit 1; }
done

rm -rf prebuilds
# --strip: no debug symbols (a tenth of the size); --tag-libc: name the libc.
npx prebuildify --napi --strip --tag-libc
CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ \
  npx prebuildify --napi --strip --tag-libc --arch arm64 --strip-bin aarch64-linux-gnu-strip
# prebuildify builds in build/, leaving the arm64 binary there, which
# node-gyp-build would prefer: remove it, so the host prebuild is loaded.
rm -rf build
node scripts/source-hash.js > prebuilds/SOURCE_HASH
find prebuilds -type f | sort | xargs ls -l
