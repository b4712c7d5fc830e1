// The fdbroker command line: a thin layer over the library, one file per
// command (serve.ts, status.ts, wait.ts, exec.ts, reload.ts). It is the only part of
// fdbroker that prints. This file dispatches, answers --help and --version,
// and turns errors into exit statuses: 2 for usage errors, 1 otherwise
// (wait and exec have their own, documented in USAGE).
import { VERSION } from '../protocol/version';
import { UsageError } from './args';
import type * as ExecCommand from './exec';
import type * as ReloadCommand from './reload';
import type * as ServeCommand from './serve';
import type * as StatusCommand from './status';
import type * as WaitCommand from './wait';

/** Exit statuses shared by the commands. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

const USAGE = `fdbroker ${VERSION}: hand listening sockets from process to process, without downtime

Usage:
  fdbroker serve <control-socket> --listen NAME=SPEC [--listen NAME=SPEC ...] [options]
  fdbroker serve <control-socket> --takeover [options]
  fdbroker serve <control-socket> --config FILE [options]
  fdbroker reload <control-socket> [--json]
  fdbroker status <control-socket> [--json]
  fdbroker wait <control-socket> [--pid PID] [--until handover|ready] [--timeout MS] [--json] [--quiet]
  fdbroker exec <control-socket> [exec options] -- CMD [ARGS...]
  fdbroker --help | --version      (also COMMAND --help)

SPEC:
  tcp://HOST:PORT[?backlog=N&nodelay=1]
                                  HOST: an IPv4 address, localhost (127.0.0.1)
                                  or [IPv6]; PORT 0 picks a free port;
                                  nodelay=1: TCP_NODELAY on accepted connections
  unix:/path/to.sock[?mode=0660&backlog=N]
  udp://HOST:PORT                 HOST as for tcp

serve options:
  --config FILE      read listeners and settings from FILE (TOML; README
                     "Configuration file and reload"). The file is the base;
                     a flag given here overrides the same setting (a list flag
                     replaces the file's list; --listen NAME=SPEC replaces the
                     file's listener NAME, or adds one). SIGHUP or
                     \`fdbroker reload\` re-reads FILE, with the same flags over
                     it: listeners added, removed or changed (removed and added
                     again), [access] and [limits] for new requests; backlog,
                     mode, group and [timeouts] are read at start only. An
                     invalid file, or a listener that cannot bind, changes
                     nothing. Without --config, SIGHUP is ignored (with
                     --takeover: the old broker's file is read, if it had one).
  --backlog N        listen(2) backlog of created listeners (default 511)
  --mode MODE        mode of the control socket, octal (default 0600)
  --handshake-timeout MS
                     drop a client that has not said hello within MS ms (default 5000)
  --ready-timeout MS a generation not ready within MS ms is reported and never
                     retires anyone (default 60000)
  --retire-timeout MS
                     report a generation still connected MS ms after it was told
                     to retire (default 30000); the broker signals nobody
  --standby MS       warm standby: a generation retired by a newer ready one
                     stops accepting but can resume for up to MS ms, if the
                     newer one exits, crashes or stalls (default 5000; 0: off)
  --stall-timeout MS a listener whose accept queue is non-empty and does not
                     shrink for MS ms is stalled: rolled back within a standby
                     window, reported otherwise (default 2000; 0: not watched)
  --group GID        group of the control socket (with --mode 0660)
  --allow-uid UID[,UID]   also let these uids adopt and read status (the
                     broker's own uid and root always may)
  --allow-gid GID[,GID]   the same for peers whose primary gid is GID
  --allow-status-uid UID, --allow-status-gid GID
                     let these read status only
  --max-clients N    most clients at once (default 1024)
  --max-clients-per-uid N
                     most clients per uid other than the broker's and root's (default 64)
  --max-fds-in-flight-per-uid N
                     most listeners a uid other than the broker's and root's
                     may hold in handouts its clients have not read (default:
                     a quarter of the broker's RLIMIT_NOFILE); a client that
                     has not read one for 30 s is dropped
  --adopt-from PATH  take the listeners from the broker (or app) serving PATH,
                     e.g. to replace a broker that was killed
  --takeover         replace the broker running on <control-socket> in place
                     (e.g. to upgrade fdbroker): take its listeners, options
                     and generations, serve the same path, and let the old
                     broker exit; no other flag is needed (flags given
                     override its options; --listen adds listeners, or must
                     match one it has). Same uid or root only; refused by
                     an older version, and by a broker under systemd (use
                     systemctl restart there). The old broker serves on
                     unchanged if this one fails before it answers on the path.
  --insecure-dir     accept a control socket (or unix listener) directory
                     writable by others
  --notify-abstract-fdstore
                     push listeners to an abstract NOTIFY_SOCKET (@name) too;
                     UNSAFE: any local user who binds the name first gets
                     them (by default only READY/STATUS go there, and fds go
                     only to a path socket owned by root or this user)
  --no-inherit       ignore sockets passed by systemd (LISTEN_FDS)
  --metrics tcp://HOST:PORT
                     serve Prometheus metrics at http://HOST:PORT/metrics (no
                     TLS; PORT 0 picks one, named in the ready line); HOST
                     must be loopback unless --metrics-token-file or
                     --metrics-public is given
  --metrics-token-file FILE
                     require "Authorization: Bearer <the token in FILE>"
                     (FILE: mode 0600, owned by root or this user)
  --metrics-public   serve metrics on a non-loopback address without a token
  --quiet            print only the ready line and errors
  Under systemd (NOTIFY_SOCKET set; Type=notify): READY=1 once the control
  socket answers, STATUS=, STOPPING=1, WATCHDOG=1 (WatchdogSec=),
  RELOADING=1 around a reload, and every listener pushed to the fd store
  (FileDescriptorStoreMax=): a restarted broker gets them back, and a
  listener (--listen, --config) whose name came back adopts that socket
  (see examples/systemd/)

wait: blocks until the generation of PID (default: the newest) is ready and,
with --until handover (the default), every older generation has left. The
generation of PID is the newest one whose process is PID or a descendant of
PID (so PID may be a wrapper: npx, sh -c, npm start, fdbroker exec).
--json prints one JSON line: {"result","startedPid","pid","generation","state",
"older","ms"}; --quiet prints nothing on success.
  exit 0  the condition holds
  exit 1  timeout (default 30000 ms) before that generation was ready, also
          when the broker answers too slowly
  exit 3  no broker at the path, or the connection to it failed
  exit 4  that generation left, was retired, or missed its ready timeout
          without becoming ready (roll back); also when PID is not running
          and never joined as a generation
  exit 5  --until handover: that generation is ready, but older ones still
          drain at the timeout (deployed; do not roll back)
  exit 6  that generation was ready, then exited, crashed or stopped
          accepting, and the broker rolled back to the older version

exec: joins as a generation and runs CMD with the listeners at fd 3, 4, ...
(LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID, as systemd socket activation).
  --names a,b        adopt only these listeners, in this order (default all)
  --ready notify|immediate
                     notify (default): ready when CMD sends READY=1 to
                     $NOTIFY_SOCKET (sd_notify); immediate: once CMD is started
  --retire-signal SIG
                     sent to CMD when a newer generation is ready (default SIGTERM)
  --stop-timeout MS  SIGKILL CMD if it has not exited MS ms after that (default 30000)
  --ready-timeout MS stop CMD if it sends no READY=1 within MS ms (default: no limit)
  --label TEXT       shown in status (default: CMD's base name)
  SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2 are passed on to CMD.
  If the broker goes away, CMD runs on and exec re-joins the next broker on
  the path (e.g. one restarted by systemd) as the same generation.
  exit status: CMD's, or 128+N if signal N killed it; 127 if CMD cannot be
  started; 1 if the broker cannot be reached (nothing is started then)

reload: the broker (started with --config) re-reads its file and applies it;
only the broker's own uid and root may. Prints what was added, removed and
changed (--json: {"added","removed","changed"}). Exit 0 when applied; 1 when
refused (ERR_FDBROKER_INVALID_CONFIG, ERR_FDBROKER_RELOAD_FAILED e.g. a bind
that fails with EADDRINUSE, ERR_FDBROKER_NO_CONFIG, ERR_FDBROKER_NOT_PERMITTED),
and then nothing changed.

Exit status otherwise: 0 success, 1 failure, 2 usage error (an unknown or
malformed option, a missing value, a bad listener SPEC).
`;

/** Where the CLI prints; tests pass their own. */
export interface Io { out: (s: string) => void; err: (s: string) => void }
const stdio: Io = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

// Each command's module is loaded when it runs: a broker (`serve`) then does not
// carry exec's and wait's code (and their node:child_process) for its whole life.
/* eslint-disable @typescript-eslint/no-require-imports */
const COMMANDS: Record<string, (args: string[], io: Io) => Promise<number>> = {
  serve: (a, io) => (require('./serve') as typeof ServeCommand).serve(a, io),
  status: (a, io) => (require('./status') as typeof StatusCommand).status(a, io),
  wait: (a, io) => (require('./wait') as typeof WaitCommand).wait(a, io),
  exec: (a, io) => (require('./exec') as typeof ExecCommand).exec(a, io),
  reload: (a, io) => (require('./reload') as typeof ReloadCommand).reload(a, io),
};
/* eslint-enable @typescript-eslint/no-require-imports */

/** --help or -h among a command's own arguments (not in exec's program after --). */
function asksHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/** Runs the CLI; resolves to the exit status. */
export async function main(argv: string[], io: Io = stdio): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case '--version': case '-v': io.out(VERSION); return EXIT.ok;
      case '--help': case '-h': case 'help': io.out(USAGE); return EXIT.ok;
      case undefined: throw new UsageError('no command given: serve, status, wait, exec or reload');
    }
    const run = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
    if (!run) throw new UsageError(`unknown command "${cmd}" (commands: serve, status, wait, exec, reload)`);
    if (asksHelp(rest)) {
      io.out(USAGE);
      return EXIT.ok;
    }
    return await run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`fdbroker: ${err.code ? `${err.code}: ` : ''}${err.message}\nRun \`fdbroker --help\` for usage.`);
      return EXIT.usage;
    }
    const e = err as Error & { code?: string };
    io.err(`fdbroker: ${e.code ? `${e.code}: ` : ''}${e.message}`);
    return EXIT.failure;
  }
}
