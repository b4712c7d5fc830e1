#!/usr/bin/env node
'use strict';
// Prints the sha256 of everything a prebuilt binary is built from (the native
// sources, binding.gyp, the build script, the node-addon-api version), so a
// test can tell when prebuilds/ is stale: `npm run prebuild` writes it to
// prebuilds/SOURCE_HASH.
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const inputs = [
  'binding.gyp',
  'scripts/prebuilds.sh',
  ...fs.readdirSync(path.join(root, 'native')).sort().map((f) => `native/${f}`),
];
const hash = crypto.createHash('sha256');
for (const file of inputs) {
  hash.update(`${file}\0`);
  hash.update(fs.readFileSync(path.join(root, file)));
  hash.update('\0');
}
hash.update(`node-addon-api@${require('node-addon-api/package.json').version}`);
process.stdout.write(`${hash.digest('hex')}\n`);
