// Drives the native layer's receive/send paths and the Poller with hostile
// input, for a build of the addon under AddressSanitizer (test/native/asan-drive/run.sh
// builds one and sets FDBROKER_ASAN_ADDON; without it this uses build/Release,
// which checks the same invariants without ASan). Exits 0 when every check
// passed; ASan itself makes the process exit 99 with a report on stderr.
//
// Plain CommonJS, no TypeScript and no dependencies: it loads the .node file
// directly so that nothing but the instrumented addon is under test.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { Worker, isMainThread, workerData } = require('node:worker_threads');

const ADDON = process.env.FDBROKER_ASAN_ADDON || path.join(__dirname, '..', '..', 'build', 'Release', 'fdbroker.node');
const n = require(ADDON);
const c = n.constants;

const EAGAIN = -11;
const EBADF = -9;
const EPERM = -1;
const EMSGSIZE = -90;
const ENOTSOCK = -88;
const EINVAL = -22;
const ENAMETOOLONG = -36;
const SO_PASSCRED = 16;
const SO_TIMESTAMP_OLD = 29;
const SO_TIMESTAMPNS_OLD = 35;
const SO_PASSSEC = 34;

// ---------------------------------------------------------------- worker mode
if (!isMainThread) {
  // Pollers left open in a worker: the env cleanup hook must close them when
  // the worker ends (normally or by terminate()).
  const { sockPath, mode } = workerData;
  const fds = [];
  const pollers = [];
  // libuv allows one active poll handle per fd: one socket per poller.
  for (let i = 0; i < 4; i++) {
    const fd = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
    n.connect(fd, { family: 'unix', path: sockPath });
    fds.push(fd);
    const p = new n.Poller(fd, () => {});
    if (i !== 3) p.start(c.UV_READABLE | c.UV_WRITABLE);
    if (i === 1) p.unref();
    pollers.push(p);
  }
  const fd = fds;
  require('node:worker_threads').parentPort.postMessage({ fd });
  if (mode === 'exit') setTimeout(() => process.exit(0), 20);
  // mode 'terminate': wait for the parent to terminate() us (pollers keep the loop alive).
  return;
}

// --------------------------------------------------------------- bookkeeping
let checks = 0;
const failures = [];
function check(cond, what) {
  checks++;
  if (!cond) {
    failures.push(what);
    console.error(`FAIL: ${what}`);
  }
}
function throws(fn, re, what) {
  try {
    fn();
  } catch (e) {
    check(re.test(String(e && e.message)), `${what}: threw ${e && e.message}`);
    return;
  }
  check(false, `${what}: did not throw`);
}
const fdCount = () => fs.readdirSync('/proc/self/fd').length;
/** What each open fd is, for failure messages. */
const fdList = () => fs.readdirSync('/proc/self/fd').map((fd) => {
  try { return `${fd}:${fs.readlinkSync(`/proc/self/fd/${fd}`)}`; } catch { return `${fd}:?`; }
}).join(' ');
const counts = {};
const bump = (k) => { counts[k] = (counts[k] || 0) + 1; };

// Deterministic PRNG (mulberry32) so that a failure can be replayed with FDBROKER_ASAN_SEED.
let seed = Number(process.env.FDBROKER_ASAN_SEED || Date.now() % 2 ** 31) >>> 0;
const SEED = seed;
function rand() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randInt = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdb-asan-drive-'));
let pathSeq = 0;

/** A listening SOCK_SEQPACKET socket on a fresh path. */
function listener() {
  const p = path.join(dir, `s${pathSeq++}`);
  const l = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
  check(l >= 0, 'socket');
  check(n.bind(l, { family: 'unix', path: p }) === 0, 'bind');
  check(n.listen(l, 64) === 0, 'listen');
  return { fd: l, path: p };
}

/** A connected SOCK_SEQPACKET pair (no socketpair in the addon: connect + accept). */
function pair() {
  const l = listener();
  const a = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
  check(n.connect(a, { family: 'unix', path: l.path }) === 0, 'connect');
  const b = n.accept(l.fd);
  check(b >= 0, 'accept');
  n.close(l.fd);
  fs.unlinkSync(l.path);
  return [a, b];
}

/** `k` fresh fds to send (dups of one /dev/null fd), closed by the caller. */
function someFds(k) {
  if (k === 0) return [];
  const first = fs.openSync('/dev/null', 'r');
  const out = [first];
  for (let i = 1; i < k; i++) out.push(n.dup(first));
  return out;
}
/**
 * How many fds fit in the control buffer the native layer allocates for
 * `maxFds`: CMSG_SPACE(4 * max(maxFds, 1)) rounds up to 8 bytes on 64-bit
 * Linux, so an odd maxFds has room for one more.
 */
const fdSlots = (maxFds) => {
  const want = 4 * Math.max(maxFds, 1);
  return Math.floor((Math.ceil(want / 8) * 8) / 4);
};
const closeAll = (fds) => { for (const fd of fds) n.close(fd); };
/** O_CLOEXEC in the octal `flags:` of /proc/self/fdinfo/<fd> (x64 and arm64). */
const O_CLOEXEC = 0o2000000;
const isCloexec = (fd) => {
  const m = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return m !== null && (parseInt(m[1], 8) & O_CLOEXEC) !== 0;
};

/** Checks one recvmsg result's shape and closes what it returned. */
function settle(r, what) {
  if (typeof r === 'number') {
    check(Number.isInteger(r) && r < 0, `${what}: errno ${r}`);
    return r;
  }
  check(typeof r.bytes === 'number' && Array.isArray(r.fds) && typeof r.truncated === 'boolean'
    && typeof r.ctrunc === 'boolean' && typeof r.foreign === 'boolean' && typeof r.closed === 'number', `${what}: shape`);
  if (r.truncated) check(r.fds.length === 0, `${what}: truncated with fds`);
  for (const fd of r.fds) check(Number.isInteger(fd) && fd >= 0 && isCloexec(fd), `${what}: fd ${fd} cloexec`);
  closeAll(r.fds);
  return r;
}

console.log(`asan drive: addon ${ADDON}`); // (stdio set up before the fd baseline)
const base0 = fdCount();

// ---------------------------------------------------------------- recvmsg
function recvCases() {
  const [a, b] = pair();
  const before = fdCount();
  const small = Buffer.alloc(10);
  const big = Buffer.alloc(256 * 1024);

  // Nothing there: EAGAIN.
  check(n.recvmsg(b, big, 253) === EAGAIN, 'recv on empty socket: EAGAIN');

  // MSG_TRUNC: payload longer than the buffer, no fds.
  check(n.sendmsg(a, Buffer.alloc(100, 1), []) === 100, 'send 100');
  let r = settle(n.recvmsg(b, small, 4), 'MSG_TRUNC');
  check(r.truncated && !r.ctrunc && r.bytes === 10 && r.closed === 0, 'MSG_TRUNC flags');

  // MSG_TRUNC with fds: every fd that came is closed in the native layer.
  let fds = someFds(3);
  check(n.sendmsg(a, Buffer.alloc(100, 2), fds) === 100, 'send 100 + 3 fds');
  closeAll(fds);
  r = settle(n.recvmsg(b, small, 3), 'MSG_TRUNC + fds');
  check(r.truncated && r.closed === 3, `MSG_TRUNC + fds closed ${r.closed}`);
  check(fdCount() === before, 'MSG_TRUNC + fds: no fd left');

  // MSG_CTRUNC: more fds than room.
  for (const [sent, room] of [[10, 2], [5, 0], [1, 0], [253, 252], [253, 251], [252, 251], [253, 1], [2, 1], [3, 1], [253, 0], [3, 3]]) {
    fds = someFds(sent);
    check(n.sendmsg(a, Buffer.from('x'), fds) === 1, `send ${sent} fds`);
    closeAll(fds);
    r = settle(n.recvmsg(b, big, room), `CTRUNC ${sent}>${room}`);
    const slots = fdSlots(room);
    if (sent > room) {
      // More than maxFds: refused whole, whether the kernel cut the control
      // data (MSG_CTRUNC) or CMSG_SPACE rounding let one more through.
      check(r.truncated && r.ctrunc && r.closed === Math.min(sent, slots), `CTRUNC ${sent}>${room}: closed ${r.closed} of ${Math.min(sent, slots)}`);
      bump(sent > slots ? 'ctrunc-kernel' : 'ctrunc-exact-limit');
    } else {
      check(!r.truncated && r.fds.length === sent, `${sent} fds in room for ${room}: ${r.fds.length}`);
      bump('fds-fit');
    }
    check(fdCount() === before, `CTRUNC ${sent}>${room}: no fd left: ${fdList()}`);
  }

  // 253 fds with room for 253: all arrive.
  fds = someFds(253);
  check(n.sendmsg(a, Buffer.from('{}'), fds) === 2, 'send 253 fds');
  closeAll(fds);
  r = settle(n.recvmsg(b, big, 253), '253 fds');
  check(!r.truncated && r.fds.length === 253, `253 fds arrived: ${r.fds.length}`);
  check(fdCount() === before, '253 fds: all closed');

  // Zero-length messages, with and without fds, and a zero-length buffer.
  check(n.sendmsg(a, Buffer.alloc(0), []) === 0, 'send empty');
  r = settle(n.recvmsg(b, big, 253), 'empty');
  check(r.bytes === 0 && r.fds.length === 0 && !r.truncated, 'empty message reads as 0 bytes');
  fds = someFds(2);
  check(n.sendmsg(a, Buffer.alloc(0), fds) === 0, 'send empty + 2 fds');
  closeAll(fds);
  r = settle(n.recvmsg(b, big, 253), 'empty + fds');
  check(r.bytes === 0 && !r.truncated, 'empty + fds: 0 bytes');
  check(n.sendmsg(a, Buffer.from('hello'), []) === 5, 'send 5');
  r = settle(n.recvmsg(b, Buffer.alloc(0), 253), 'zero-length buffer');
  check(r.truncated && r.bytes === 0, 'zero-length buffer: truncated');
  fds = someFds(4);
  n.sendmsg(a, Buffer.from('hello'), fds);
  closeAll(fds);
  r = settle(n.recvmsg(b, Buffer.alloc(0), 253), 'zero-length buffer + fds');
  check(r.truncated && r.closed === 4, 'zero-length buffer + fds: closed 4');
  check(fdCount() === before, 'zero-length: no fd left');

  // Oversized (> 64 KiB) into a 64 KiB buffer.
  const huge = Buffer.alloc(150_000, 7);
  check(n.sendmsg(a, huge, []) === huge.length, 'send 150000');
  r = settle(n.recvmsg(b, Buffer.alloc(64 * 1024), 253), 'oversized');
  check(r.truncated && r.bytes === 64 * 1024, 'oversized: truncated at 64 KiB');

  // Buffers of other kinds: typed arrays, DataView, offset subarrays, shared memory.
  // A DataView passes the native IsBuffer() check but is no typed array:
  // node-addon-api throws "Invalid argument" and leaves data null, length 0,
  // so the call goes on with an empty buffer (the message is consumed, its fds
  // closed as truncated) and then throws. Memory-safe; recorded as an outcome.
  for (const call of ['recvmsg', 'sendmsg']) {
    const fds3 = someFds(3);
    n.sendmsg(a, Buffer.alloc(40, 3), fds3);
    closeAll(fds3);
    let outcome = 'returned';
    try {
      if (call === 'recvmsg') n.recvmsg(b, new DataView(new ArrayBuffer(64)), 3);
      else n.sendmsg(a, new DataView(new ArrayBuffer(64)), []);
    } catch (e) {
      outcome = `threw ${e.message}`;
    }
    bump(`dataview-${call}: ${outcome}`);
    for (;;) {
      const d = n.recvmsg(b, big, 253);
      if (typeof d === 'number') break;
      closeAll(d.fds);
    }
    check(fdCount() === before, `DataView ${call}: no fd left`);
  }
  const views = [
    new Uint8Array(64), new Float64Array(8), new Int32Array(new ArrayBuffer(64), 4, 2),
    Buffer.alloc(100).subarray(37, 50), new Uint8Array(new SharedArrayBuffer(64)),
    new Uint16Array(new ArrayBuffer(64), 2, 3),
  ];
  for (const v of views) {
    n.sendmsg(a, Buffer.alloc(40, 3), []);
    r = settle(n.recvmsg(b, v, 0), `recv into ${v.constructor.name}`);
    check(r.bytes === Math.min(40, v.byteLength), `recv into ${v.constructor.name}: ${r.bytes}`);
  }
  // A detached buffer is length 0.
  const ab = new ArrayBuffer(32);
  const detached = new Uint8Array(ab);
  structuredClone(ab, { transfer: [ab] });
  n.sendmsg(a, Buffer.alloc(8), []);
  r = settle(n.recvmsg(b, detached, 0), 'recv into detached');
  check(r.truncated && r.bytes === 0, 'detached: truncated');
  check(n.sendmsg(a, detached, []) === 0, 'send detached: 0 bytes');
  settle(n.recvmsg(b, big, 0), 'drain detached send');

  // Many control messages: credentials, timestamps, security label and fds.
  for (const opt of [SO_PASSCRED, SO_TIMESTAMP_OLD, SO_TIMESTAMPNS_OLD, SO_PASSSEC]) n.setsockoptInt(b, c.SOL_SOCKET, opt, 1);
  for (const [sent, room] of [[0, 0], [1, 0], [3, 3], [3, 1], [253, 253], [100, 253], [20, 8]]) {
    fds = someFds(sent);
    n.sendmsg(a, Buffer.from('cmsgs'), fds);
    closeAll(fds);
    r = settle(n.recvmsg(b, big, room), `cmsgs ${sent}/${room}`);
    check(r.foreign, `cmsgs ${sent}/${room}: foreign`);
    if (!r.truncated) check(r.fds.length === sent, `cmsgs ${sent}/${room}: ${r.fds.length} fds`);
    bump(r.truncated ? 'cmsgs-truncated' : 'cmsgs-whole');
    check(fdCount() === before, `cmsgs ${sent}/${room}: no fd left`);
  }
  for (const opt of [SO_PASSCRED, SO_TIMESTAMP_OLD, SO_TIMESTAMPNS_OLD, SO_PASSSEC]) n.setsockoptInt(b, c.SOL_SOCKET, opt, 0);

  // Bad arguments.
  throws(() => n.recvmsg(b, big, -1), /maxFds/, 'maxFds -1');
  throws(() => n.recvmsg(b, big, 254), /maxFds/, 'maxFds 254');
  throws(() => n.recvmsg(b, big, 2 ** 40), /maxFds/, 'maxFds 2^40 (no longer wraps to 0)');
  throws(() => n.recvmsg(b, big, 1.5), /maxFds/, 'maxFds 1.5');
  throws(() => n.recvmsg(b, 'not a buffer', 1), /recvmsg/, 'recv into a string');
  throws(() => n.recvmsg(b, big), /recvmsg/, 'recv without maxFds');
  throws(() => n.recvmsg(-1, big, 1), /fd/, 'recv fd -1');
  throws(() => n.recvmsg(), /fd/, 'recv no args');
  throws(() => n.recvmsg(b, big, NaN), /maxFds/, 'maxFds NaN');

  // Errors from the kernel.
  const dead = n.dup(b);
  n.close(dead);
  check(n.recvmsg(dead, big, 4) === EBADF, 'recv on a closed fd: EBADF');
  const file = fs.openSync('/dev/null', 'r');
  check(n.recvmsg(file, big, 4) === ENOTSOCK, 'recv on /dev/null: ENOTSOCK');
  check(n.sendmsg(file, Buffer.from('x'), []) === ENOTSOCK, 'send on /dev/null: ENOTSOCK');
  fs.closeSync(file);

  // Peer gone: 0 bytes (end of stream), then still 0.
  n.sendmsg(a, Buffer.from('last'), []);
  n.close(a);
  r = settle(n.recvmsg(b, big, 4), 'last message');
  check(r.bytes === 4, 'last message before EOF');
  r = settle(n.recvmsg(b, big, 4), 'EOF');
  check(r.bytes === 0 && r.fds.length === 0, 'EOF');
  n.close(b);
}

// ---------------------------------------------------------------- random receive loop
function randomRecv(iterations) {
  const [a, b] = pair();
  const before = fdCount();
  const bufs = [Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(100), Buffer.alloc(64 * 1024), Buffer.alloc(200 * 1024)];
  let passOpts = false;
  for (let i = 0; i < iterations; i++) {
    if (rand() < 0.1) {
      passOpts = !passOpts;
      for (const opt of [SO_PASSCRED, SO_TIMESTAMP_OLD]) n.setsockoptInt(b, c.SOL_SOCKET, opt, passOpts ? 1 : 0);
    }
    const size = rand() < 0.2 ? 0 : rand() < 0.1 ? randInt(60_000, 150_000) : randInt(1, 2000);
    const nf = rand() < 0.5 ? 0 : rand() < 0.1 ? randInt(200, 253) : randInt(1, 8);
    const payload = Buffer.alloc(size);
    for (let k = 0; k < Math.min(size, 64); k++) payload[k] = randInt(0, 255);
    const fds = someFds(nf);
    const s = n.sendmsg(a, payload, fds);
    closeAll(fds);
    check(s === size, `random send ${size}/${nf}: ${s}`);
    const buf = bufs[randInt(0, bufs.length - 1)];
    const room = rand() < 0.3 ? randInt(0, nf + 1) : randInt(0, 253);
    const r = settle(n.recvmsg(b, buf, Math.min(room, 253)), `random recv ${size}/${nf} into ${buf.length}/${room}`);
    if (typeof r === 'number') continue;
    const cut = size > buf.length;
    check(r.bytes === Math.min(size, buf.length), `random recv bytes ${r.bytes} of ${size}`);
    if (cut) check(r.truncated, 'random: MSG_TRUNC reported');
    if (!r.truncated) check(r.fds.length === nf, `random: ${r.fds.length} of ${nf} fds`);
    if (nf > Math.min(room, 253)) check(r.truncated && r.ctrunc, `random: ${nf} fds > maxFds ${room} not refused`);
    bump(r.truncated ? (r.ctrunc ? 'random-ctrunc' : 'random-trunc') : 'random-whole');
    check(fdCount() === before, `random ${i}: fd count ${fdCount()} != ${before}`);
  }
  n.close(a);
  n.close(b);
}

// ---------------------------------------------------------------- sendmsg
function sendCases() {
  const [a, b] = pair();
  const before = fdCount();
  const p = Buffer.from('x');
  throws(() => n.sendmsg(a, p, ['3']), /non-negative/, 'fd as a string');
  throws(() => n.sendmsg(a, p, [null]), /non-negative/, 'fd null');
  throws(() => n.sendmsg(a, p, [{}]), /non-negative/, 'fd object');
  throws(() => n.sendmsg(a, p, [-1]), /non-negative/, 'fd -1');
  throws(() => n.sendmsg(a, p, [2 ** 31]), /non-negative/, 'fd 2^31 (wraps negative)');
  throws(() => n.sendmsg(a, p, [1n]), /non-negative/, 'fd bigint');
  throws(() => n.sendmsg(a, p, new Array(3)), /non-negative/, 'sparse array');
  throws(() => n.sendmsg(a, p, new Array(254).fill(0)), /253/, '254 fds');
  throws(() => n.sendmsg(a, p, new Array(100000).fill(0)), /253/, '100000 fds');
  throws(() => n.sendmsg(a, p, { length: 2, 0: 0, 1: 1 }), /sendmsg/, 'array-like');
  throws(() => n.sendmsg(a, 'str', []), /sendmsg/, 'string payload');
  throws(() => n.sendmsg(a, p), /sendmsg/, 'no fds argument');
  throws(() => n.sendmsg(-5, p, []), /fd/, 'send fd -5');
  // An array whose length changes while it is read: the native side reads Length() once.
  const grow = [0];
  check(typeof n.sendmsg(a, p, grow) === 'number', 'send with fd 0');
  settle(n.recvmsg(b, Buffer.alloc(16), 4), 'drain fd 0');
  // Closed fds in the array, closed socket.
  const dead = n.dup(a);
  n.close(dead);
  check(n.sendmsg(a, p, [dead]) === EBADF, 'send a closed fd: EBADF');
  check(n.sendmsg(dead, p, []) === EBADF, 'send on a closed fd: EBADF');
  // Huge buffers.
  check(n.sendmsg(a, Buffer.alloc(16 * 1024 * 1024), []) === EMSGSIZE, 'send 16 MiB: EMSGSIZE');
  const fds = someFds(253);
  check(n.sendmsg(a, Buffer.alloc(16 * 1024 * 1024), fds) === EMSGSIZE, 'send 16 MiB + 253 fds: EMSGSIZE');
  closeAll(fds);
  // Fill the socket until EAGAIN.
  let sent = 0;
  let last = 0;
  for (let i = 0; i < 10_000; i++) {
    last = n.sendmsg(a, Buffer.alloc(60_000), []);
    if (last < 0) break;
    sent++;
  }
  check(last === EAGAIN, `send until full: ${last} after ${sent}`);
  // Sending a socket over itself, then closing both ends: the kernel's unix GC
  // reclaims the cycle; nothing here may leak.
  n.sendmsg(b, Buffer.from('self'), [a, b]);
  // SO_PASSRIGHTS=0 on the receiver: fds are refused with EPERM (Linux >= 6.16).
  const [x, y] = pair();
  const pr = n.setsockoptInt(y, c.SOL_SOCKET, c.SO_PASSRIGHTS, 0);
  const f1 = someFds(1);
  const s = n.sendmsg(x, Buffer.from('fd'), f1);
  closeAll(f1);
  if (pr === 0) {
    check(s === EPERM, `SO_PASSRIGHTS=0: sendmsg with fds gives ${s}`);
    bump('passrights-eperm');
  } else {
    bump('passrights-unsupported');
  }
  check(n.sendmsg(x, Buffer.from('nofd'), []) === 4, 'SO_PASSRIGHTS=0: plain message still goes');
  n.close(x);
  n.close(y);
  n.close(a);
  n.close(b);
  check(fdCount() === before - 2, `sendCases: fd count ${fdCount()} vs ${before - 2}`);
}

// ---------------------------------------------------------------- other calls with odd input
function miscCases() {
  const before = fdCount();
  const s = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
  check(n.bind(s, { family: 'unix', path: 'x'.repeat(108) }) === ENAMETOOLONG, 'bind 108-byte path');
  check(n.bind(s, { family: 'unix', path: '' }) === ENAMETOOLONG, 'bind empty path');
  check(n.bind(s, { family: 'unix', path: `\0fdb-asan-${process.pid}` }) === 0, 'bind abstract');
  const sn = n.sockname(s);
  check(sn.family === 'unix' && sn.path.startsWith('\0'), 'sockname abstract');
  n.close(s);
  const t = n.socket(c.AF_INET, c.SOCK_STREAM);
  check(n.bind(t, { family: 'inet', address: '127.0.0.1', port: 70000 }) === EINVAL, 'port 70000');
  check(n.bind(t, { family: 'inet', address: 'not an address', port: 0 }) === EINVAL, 'bad address');
  check(n.bind(t, { family: 'inet', address: '127.0.0.1\0junk', port: 0 }) === 0, 'address with NUL');
  check(n.bind(t, { family: 'inet9', address: '::', port: 0 }) === -97, 'unknown family: EAFNOSUPPORT');
  throws(() => n.bind(t, { family: 'inet' }), /address/, 'inet without address');
  throws(() => n.bind(t, null), /address/, 'address null');
  throws(() => n.connect(t, { family: 1 }), /family/, 'family not a string');
  bump(`peercred-on-tcp-${typeof n.peercred(t)}`);
  n.close(t);
  const dead = n.dup(0);
  n.close(dead);
  for (const [name, call] of [
    ['sockname', () => n.sockname(dead)], ['peercred', () => n.peercred(dead)],
    ['dup', () => n.dup(dead)], ['flock', () => n.flock(dead, c.LOCK_EX)],
    ['setCloexec', () => n.setCloexec(dead, true)], ['getsockoptInt', () => n.getsockoptInt(dead, c.SOL_SOCKET, c.SO_TYPE)],
    ['setsockoptInt', () => n.setsockoptInt(dead, c.SOL_SOCKET, c.SO_RCVBUF, 1)], ['listen', () => n.listen(dead, 1)],
    ['accept', () => n.accept(dead)], ['close', () => n.close(dead)],
    ['connect', () => n.connect(dead, { family: 'unix', path: '/nonexistent' })],
  ]) check(call() === EBADF, `${name} on a closed fd: EBADF`);
  throws(() => n.listen(3), /number/, 'listen without backlog');
  throws(() => n.socket('a', 'b'), /socket/, 'socket with strings');
  check(n.socket(12345, 1) < 0, 'socket with an unknown domain');
  check(fdCount() === before, `miscCases: fd count ${fdCount()} vs ${before}`);
}

// ---------------------------------------------------------------- accept queues
// The netlink (sock_diag) and TCP_INFO reader of native/accept_queue.cc: tcp,
// unix stream and seqpacket listeners with queued connections, sockets that do
// not listen, a file, bad fds and non-fd values in one batch, repeated.
function acceptQueueCases() {
  const before = fdCount();
  const sockPath = path.join(os.tmpdir(), `fdb-asan-aq-${process.pid}.sock`);
  fs.rmSync(sockPath, { force: true });
  const tcp = n.socket(c.AF_INET, c.SOCK_STREAM);
  check(n.bind(tcp, { family: 'inet', address: '127.0.0.1', port: 0 }) === 0 && n.listen(tcp, 5) === 0, 'aq: tcp listener');
  const seq = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
  check(n.bind(seq, { family: 'unix', path: sockPath }) === 0 && n.listen(seq, 3) === 0, 'aq: seqpacket listener');
  const abs = n.socket(c.AF_UNIX, c.SOCK_STREAM);
  check(n.bind(abs, { family: 'unix', path: `\0fdb-asan-aq-${process.pid}` }) === 0 && n.listen(abs, 9) === 0, 'aq: abstract listener');
  const clients = [];
  for (let i = 0; i < 2; i++) {
    const s = n.socket(c.AF_UNIX, c.SOCK_SEQPACKET);
    check(n.connect(s, { family: 'unix', path: sockPath }) === 0, `aq: connect ${i}`);
    clients.push(s);
  }
  const idle = n.socket(c.AF_INET, c.SOCK_STREAM);
  const file = fs.openSync(__filename, 'r');
  // Far above any open fd: a just-closed number could be the batch's own netlink socket.
  const dead = 2 ** 30;
  const fds = [tcp, seq, abs, idle, file, dead, -1, NaN, 2 ** 31, 'x', null, seq];
  for (let round = 0; round < 200; round++) {
    const r = Array.from(n.acceptQueues(fds));
    const want = [0, 0, 5, 1, 0, 2, 3, 2, 0, 0, 9, 2, EINVAL, 0, 0, 0, ENOTSOCK, 0, 0, 0, EBADF, 0, 0, 0,
      EBADF, 0, 0, 0, EBADF, 0, 0, 0, EBADF, 0, 0, 0, EBADF, 0, 0, 0, EBADF, 0, 0, 0, 0, 2, 3, 2];
    if (round === 0 || JSON.stringify(r) !== JSON.stringify(want)) check(JSON.stringify(r) === JSON.stringify(want), `aq round ${round}: ${r}`);
  }
  check(n.acceptQueues([]).length === 0, 'aq: empty batch');
  throws(() => n.acceptQueues(3), /acceptQueues/, 'aq: not an array');
  closeAll([...clients, tcp, seq, abs, idle]);
  fs.closeSync(file);
  fs.rmSync(sockPath, { force: true });
  check(fdCount() === before, `acceptQueueCases: fd count ${fdCount()} vs ${before}`);
}

// ---------------------------------------------------------------- Poller
async function pollerCases() {
  const before = fdCount();
  const [a, b] = pair();
  const R = c.UV_READABLE;
  const W = c.UV_WRITABLE;

  // Odd orders on one poller.
  const p1 = new n.Poller(b, () => {});
  check(p1.stop() === 0, 'stop before start');
  check(p1.start(R) === 0, 'start');
  check(p1.start(R | W) === 0, 'start again (modify)');
  check(p1.start(0) === 0, 'start with no events');
  check(p1.start(-1) === 0, 'start with every bit');
  check(p1.stop() === 0, 'stop');
  check(p1.stop() === 0, 'stop again');
  p1.unref(); p1.ref(); p1.unref();
  p1.close();
  p1.close();
  check(p1.start(R) === -9 || p1.start(R) < 0, 'start after close: an error');
  check(p1.stop() === 0, 'stop after close');
  p1.ref(); p1.unref();

  // Close while started (pinned), start + close + start.
  const p2 = new n.Poller(b, () => {});
  throws(() => p2.start(), /number/, 'start without events');
  p2.start(R); p2.close(); check(p2.start(R) < 0, 'start after close while started');

  // Many pollers on one fd (libuv allows one per fd; each extra one must fail cleanly or work).
  const many = [];
  for (let i = 0; i < 16; i++) {
    try {
      const p = new n.Poller(b, () => {});
      many.push(p);
    } catch (e) {
      bump(`poller-dup-${e.code || e.message}`);
    }
  }
  for (const p of many) p.close();

  // Bad constructor arguments and bad fds.
  throws(() => new n.Poller(-1, () => {}), /Poller/, 'Poller(-1)');
  throws(() => new n.Poller(b), /Poller/, 'Poller without callback');
  throws(() => new n.Poller(b, 'cb'), /Poller/, 'Poller with a string callback');
  const dead = n.dup(b);
  n.close(dead);
  throws(() => new n.Poller(dead, () => {}), /bad file descriptor|EBADF/i, 'Poller on a closed fd');
  const file = fs.openSync(__filename, 'r');
  throws(() => new n.Poller(file, () => {}), /not permitted|EPERM/i, 'Poller on a regular file');
  fs.closeSync(file);

  // Events: readable with data, a callback that closes its own poller, a
  // callback that throws, a disconnect while polled.
  stage("poll: readable");
  await new Promise((resolve) => {
    let calls = 0;
    const p = new n.Poller(b, (status, events) => {
      calls++;
      check(status === 0 && (events & R) !== 0, `readable event ${status}/${events}`);
      p.close();            // closes its own handle inside the callback
      p.close();
      check(p.start(R) < 0, 'start from inside the callback after close');
      setTimeout(() => { check(calls === 1, `callbacks after close: ${calls}`); resolve(); }, 30);
    });
    p.start(R);
    n.sendmsg(a, Buffer.from('wake'), []);
  });
  settle(n.recvmsg(b, Buffer.alloc(16), 0), 'drain wake');

  let uncaught = 0;
  const onUncaught = () => { uncaught++; };
  process.on('uncaughtException', onUncaught);
  stage("poll: throw");
  await new Promise((resolve) => {
    const p = new n.Poller(b, () => {
      p.stop();
      setTimeout(() => { p.close(); resolve(); }, 10);
      throw new Error('thrown from a poll callback');
    });
    p.start(R);
    n.sendmsg(a, Buffer.from('throw'), []);
  });
  process.off('uncaughtException', onUncaught);
  check(uncaught === 1, `a throwing callback reaches uncaughtException once (${uncaught})`);
  settle(n.recvmsg(b, Buffer.alloc(16), 0), 'drain throw');

  stage("poll: disconnect");
  await new Promise((resolve) => {
    const p = new n.Poller(b, (status, events) => {
      bump(`disconnect-events-${events & (R | c.UV_DISCONNECT)}-status-${status}`);
      p.stop(); p.start(R); p.stop(); p.close();
      resolve();
    });
    p.start(R | c.UV_DISCONNECT);
    n.close(a);
  });
  const eof = settle(n.recvmsg(b, Buffer.alloc(16), 0), 'EOF after disconnect');
  check(eof.bytes === 0, 'EOF after disconnect');

  // Pollers dropped without close(), unstarted and stopped, then collected.
  if (global.gc) {
    for (let i = 0; i < 200; i++) {
      const p = new n.Poller(b, () => {});
      if (i % 2) { p.start(R); p.stop(); }
      if (i % 3 === 0) p.unref();
    }
    for (let i = 0; i < 3; i++) {
      global.gc();
      await new Promise((r) => setImmediate(r));
    }
    bump('gc-pollers');
  }

  // Stress: start/stop/close in random orders with traffic on the socket.
  const [x, y] = pair();
  for (let round = 0; round < 200; round++) {
    const p = new n.Poller(y, () => {
      const r = n.recvmsg(y, Buffer.alloc(8), randInt(0, 3));
      if (typeof r !== 'number') closeAll(r.fds);
      if (rand() < 0.5) p.stop();
      if (rand() < 0.3) p.close();
    });
    for (let k = 0; k < 6; k++) {
      const op = randInt(0, 4);
      if (op === 0) p.start(R | (rand() < 0.5 ? W : 0));
      else if (op === 1) p.stop();
      else if (op === 2) p.unref();
      else if (op === 3) p.ref();
      else n.sendmsg(x, Buffer.from('poke'), []);
    }
    await new Promise((r) => setImmediate(r));
    p.close();
  }
  for (;;) {
    const r = n.recvmsg(y, Buffer.alloc(8), 0);
    if (typeof r === 'number') break;
  }
  n.close(x);
  n.close(y);
  n.close(b);
  check(fdCount() === before, `pollerCases: fd count ${fdCount()} vs ${before}`);
}

// ---------------------------------------------------------------- workers
async function workerCases() {
  const l = listener();
  for (const mode of ['exit', 'terminate', 'terminate', 'exit', 'terminate', 'terminate']) {
    const w = new Worker(__filename, { workerData: { sockPath: l.path, mode }, env: process.env });
    // 'exit' can follow the drained message in the same tick: listen from the start.
    const exited = new Promise((r) => w.once('exit', r));
    const got = await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    // The broker side of the worker's sockets: make them readable while the
    // worker's environment is torn down (its pollers then fire with JS gone).
    const conns = [];
    for (let k = 0; k < got.fd.length; k++) {
      const s = n.accept(l.fd);
      if (s >= 0) { conns.push(s); n.sendmsg(s, Buffer.from('wake'), []); }
    }
    if (mode === 'terminate') await w.terminate();
    else await exited;
    closeAll(got.fd); // the worker's sockets: the worker left them open
    closeAll(conns);
    bump(`worker-${mode}`);
  }
  n.close(l.fd);
}

// ---------------------------------------------------------------- aborting misuse (subprocesses)
/**
 * Argument objects whose getters throw make node-addon-api throw while an
 * exception is pending, which Node turns into a fatal error (abort). Not a
 * memory error; checked in a subprocess (same ASan preload) so that the only
 * requirement here is "no ASan report".
 */
function subprocessCases() {
  const cases = {
    'sendmsg fds getter throws': `const a=[0]; Object.defineProperty(a,0,{get(){throw new Error('g')}}); n.sendmsg(1,Buffer.alloc(1),a)`,
    'bind address getter throws': `n.bind(3,{get family(){throw new Error('g')}})`,
  };
  for (const [name, code] of Object.entries(cases)) {
    const r = spawnSync(process.execPath, ['-e', `const n=require(${JSON.stringify(ADDON)}); try { ${code} } catch (e) { console.log('threw', e.message) }`],
      { encoding: 'utf8', env: process.env, timeout: 30_000 });
    const out = `${r.stdout}${r.stderr}`;
    check(!/AddressSanitizer/.test(out), `${name}: ASan report in subprocess:\n${out}`);
    const kind = /FATAL ERROR/.test(out) ? 'fatal-abort' : /threw/.test(out) ? 'threw' : `exit-${r.status ?? r.signal}`;
    bump(`subprocess-${kind}`);
    console.log(`asan drive: ${name}: ${kind}`);
  }
}

async function main() {
  const t0 = Date.now();
  stage('recvCases');
  recvCases();
  stage('randomRecv');
  randomRecv(Number(process.env.FDBROKER_ASAN_ITERATIONS || 1500));
  stage('sendCases');
  sendCases();
  stage('miscCases');
  miscCases();
  stage('acceptQueueCases');
  acceptQueueCases();
  stage('pollerCases');
  await pollerCases();
  stage('workerCases');
  await workerCases();
  stage('subprocessCases');
  subprocessCases();
  // Every fd opened here is closed again (the self-sent cycle is reclaimed by the kernel).
  const after = fdCount();
  check(after <= base0, `fd count at the end ${after} vs ${base0} at start`);
  // Left open on purpose: one started unref'd poller and one unstarted one,
  // for the environment cleanup hook at exit.
  const [a, b] = pair();
  const keep = new n.Poller(b, () => {});
  keep.start(c.UV_READABLE);
  keep.unref();
  globalThis.__keep = [keep, new n.Poller(a, () => {})];
  globalThis.__keep[1].unref();
  fs.rmSync(dir, { recursive: true, force: true });

  console.log(`asan drive: seed ${SEED}, ${checks} checks, ${failures.length} failed, ${Date.now() - t0} ms, asan=${/libasan/.test(process.env.LD_PRELOAD || "")}`);
  console.log(`asan drive: outcomes ${JSON.stringify(counts)}`);
  process.exitCode = failures.length === 0 ? 0 : 1;
}

const stage = (name) => { if (process.env.FDBROKER_ASAN_VERBOSE) console.log(`asan drive: ${name}`); };
process.on('exit', (code) => { if (!finished) console.error(`asan drive: exited (${code}) before finishing`); if (!finished) process.exitCode = 1; });
let finished = false;
main().then(() => { finished = true; }, (e) => {
  console.error(e);
  process.exitCode = 1;
});
