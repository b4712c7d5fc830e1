#!/usr/bin/env node
'use strict';
// The package's install script: node-gyp-build uses a prebuilt binary from
// prebuilds/ when one loads on this machine, and otherwise builds from source
// with node-gyp. When that build fails, say what to install instead of
// leaving the user with a compiler log.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const result = spawnSync(process.execPath, [require.resolve('node-gyp-build/bin.js')], { cwd: root, stdio: 'inherit' });
if (result.status === 0) process.exit(0);

const which = (cmd) => (process.env.PATH || '').split(path.delimiter)
  .some((dir) => dir && fs.existsSync(path.join(dir, cmd)));
const missing = ['c++', 'make', 'python3'].filter((cmd) => !which(cmd));
let prebuilt = [];
try { prebuilt = fs.readdirSync(path.join(root, 'prebuilds')).filter((d) => d.startsWith('linux-')); } catch { /* none shipped */ }
// The same test node-gyp-build makes (LIBC overrides it).
const musl = (process.env.LIBC || (fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc')) === 'musl';
const target = `${process.platform}-${os.arch()}${musl ? ' (musl)' : ''}`;

process.stderr.write([
  '',
  `fdbroker: ERR_FDBROKER_NO_NATIVE_BINARY: no prebuilt binary fits ${target} (prebuilt: ${prebuilt.join(', ') || 'none'}, glibc only),`,
  '  and building the native addon from source failed' +
    (missing.length ? `: ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not on PATH.` : ' (see the node-gyp output above).'),
  '  Install a C++ compiler, make and Python 3, then run `npm rebuild fdbroker`:',
  '    Debian/Ubuntu: apt-get install g++ make python3',
  '    Alpine:        apk add g++ make python3',
  '    Fedora/RHEL:   dnf install gcc-c++ make python3',
  '  node-gyp also needs the Node.js headers: it downloads them, or set npm_config_nodedir',
  '  to an unpacked Node source/headers directory when offline.',
  '',
].join('\n'));
process.exit(result.status ?? 1);
