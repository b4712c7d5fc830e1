// The smallest end-to-end check of an fdbroker installation: `fdbroker serve`
// creates a listener, an app adopts it, and an HTTP request on 127.0.0.1 is
// answered on the adopted fd. Run on every Node version in CI, on the arm64
// prebuild under qemu, and on the package installed from its tarball.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { get, run } from '../helpers';

export interface SmokeOptions {
  /** The command that runs Node: [process.execPath], or qemu and an arm64 node. */
  node: string[];
  /** The fdbroker bin script to serve with. */
  cli: string;
  /** A fresh directory: the control socket and the app go here; the app runs from it. */
  dir: string;
  /** What the app requires: 'fdbroker' (installed), or a path to the repo's dist. */
  module: string;
  env?: NodeJS.ProcessEnv;
  /** For each step (broker ready, app ready); qemu needs longer. */
  stepTimeoutMs?: number;
}

export interface SmokeResult {
  body: string;
  brokerPid: number;
  appPid: number;
  /** What the app reported: process.arch, process.version. */
  appArch: string;
  appNode: string;
}

const DEFAULT_STEP_TIMEOUT_MS = 10_000;

const APP = `'use strict';
const http = require('node:http');
const { adoptListeners } = require(process.env.SMOKE_MODULE);
adoptListeners(process.env.SMOKE_SOCK, { names: ['http'] }).then(({ http: listener }) => {
  const server = http.createServer((req, res) => res.end('served by ' + process.pid + '\\n'));
  listener.attach(server, () => console.log('ready ' + process.pid + ' ' + process.arch + ' ' + process.version));
}).catch((err) => { console.error(err.code, err.message); process.exit(1); });
`;

/** Serve, adopt, one request. Processes are ended by helpers' cleanup(). */
export async function smoke(o: SmokeOptions): Promise<SmokeResult> {
  const timeout = o.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS;
  const sock = path.join(o.dir, 'app.sock');
  const [cmd, ...pre] = o.node as [string, ...string[]];
  const broker = run(cmd, [...pre, o.cli, 'serve', sock, '--listen', 'http=tcp://127.0.0.1:0'], { env: o.env, cwd: o.dir });
  const ready = await broker.waitFor(/fdbroker: ready on .* http=tcp:\/\/127\.0\.0\.1:(\d+)/, timeout);
  const port = Number(ready[1]);
  const appFile = path.join(o.dir, 'smoke-app.js');
  fs.writeFileSync(appFile, APP);
  const app = run(cmd, [...pre, appFile], { env: { ...o.env, SMOKE_SOCK: sock, SMOKE_MODULE: o.module }, cwd: o.dir });
  const m = await app.waitFor(/^ready (\d+) (\S+) (\S+)$/m, timeout);
  const res = await get(port);
  if (res.status !== 200) throw new Error(`smoke: HTTP ${res.status}: ${res.body}`);
  return { body: res.body, brokerPid: broker.pid, appPid: app.pid, appArch: m[2]!, appNode: m[3]! };
}
