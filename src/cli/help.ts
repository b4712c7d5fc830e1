// The CLI's help: `fdbroker --help` prints all of it, `fdbroker COMMAND --help`
// that command's part (its usage lines, its options, its exit statuses).
import { VERSION } from '../protocol/version';

/** The commands, in the order the help lists them. */
export const COMMAND_NAMES = ['serve', 'run', 'deploy', 'reload', 'status', 'wait', 'exec', 'pause', 'resume'] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

const HEADER = `fdbroker ${VERSION}: hand listening sockets from process to process, without downtime
`;

const USAGE_LINES = `Usage:
  fdbroker serve <control-socket> --listen NAME=SPEC [--listen NAME=SPEC ...] [options]
  fdbroker serve <control-socket> --takeover [options]
  fdbroker serve <control-socket> --config FILE [options]
  fdbroker run <control-socket> --listen NAME=SPEC [serve options] [run options] -- CMD [ARGS...]
  fdbroker deploy <control-socket> [--timeout MS] [--json] [--log FILE] [-- CMD [ARGS...]]
  fdbroker reload <control-socket> [--json]
  fdbroker status <control-socket> [--json]
  fdbroker wait <control-socket> [--pid PID] [--until handover|ready] [--timeout MS] [--json] [--quiet]
  fdbroker exec <control-socket> [exec options] -- CMD [ARGS...]
  fdbroker pause <control-socket> [NAME...] [--for DURATION] [--json]
  fdbroker resume <control-socket> [NAME...] [--json]
  fdbroker --help | --version      (also COMMAND --help)

`;

const SPEC = `SPEC:
  tcp://HOST:PORT[?backlog=N&nodelay=0]
                                  HOST: an IPv4 address, localhost (127.0.0.1)
                                  or [IPv6]; PORT 0 picks a free port;
                                  TCP_NODELAY on accepted connections
                                  unless nodelay=0
  unix:/path/to.sock[?mode=0660&backlog=N]
  udp://HOST:PORT                 HOST as for tcp

`;

const SERVE = `serve options:
  --config FILE      read listeners and settings from FILE (TOML; see
                     docs/reference/configuration.md). The file is the base;
                     a flag given here overrides the same setting (a list flag
                     replaces the file's list; --listen NAME=SPEC replaces the
                     file's listener NAME, or adds one). SIGHUP or
                     \`fdbroker reload\` re-reads FILE, with the same flags over
                     it: listeners added, removed or changed (removed and added
                     again), [access], [[grants]] and [limits] for new
                     requests; backlog, mode, group and [timeouts] are read at
                     start only. An
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
  --grant 'uid=USER|gid=GROUP [adopt=NAME,...|*] [status[=NAME,...]]
           [deploy] [reload] [takeover]'
                     a per-name rule (repeatable; replaces the file's
                     [[grants]]): that uid (or primary gid; a number or a
                     name) may adopt only the listeners named, see them in
                     status (status=NAMES shows those too), join as a
                     generation and say ready (deploy), reload, take over.
                     Anything not granted is refused; a peer granted nothing
                     is dropped at connect. The broker's uid and root may do
                     everything. See docs/SECURITY.md.
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

`;

const WAIT = `wait: blocks until the generation of PID (default: the newest) is ready and,
with --until handover (the default), every older generation has left. The
generation of PID is the newest one whose process is PID or a descendant of
PID (so PID may be a wrapper: npx, sh -c, npm start, fdbroker exec).
--json prints one JSON line: {"result","startedPid","pid","generation","state",
"older","holders","ms"}; --quiet prints nothing on success. When the
condition holds but processes that are not generations still hold a
listener (an adoptListeners() app), they are named on stderr and in
"holders": no deploy retires them.
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

`;

const EXEC = `exec: joins as a generation and runs CMD with the listeners at fd 3, 4, ...
(LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID, LISTEN_PIDFDID, as systemd socket activation).
  --names a,b        adopt only these listeners, in this order (default all)
  --inherit DIALECT  (repeatable) how CMD is told its fds: systemd (default),
                     nginx (NGINX=3;4;), haproxy (FDBROKER_FD_<NAME>=3, for
                     bind "fd@\${FDBROKER_FD_HTTP}"), puma (PUMA_INHERIT_<n>),
                     unicorn (UNICORN_FD), gunicorn (GUNICORN_FD and LISTEN_FDS),
                     einhorn (EINHORN_FD_COUNT, EINHORN_FD_<n>), uvicorn
                     (UVICORN_FD: its --fd; one listener). Every dialect but
                     systemd also sets FDBROKER_FD_<NAME> per listener.
                     nginx, unicorn: --retire-signal SIGQUIT and haproxy:
                     SIGUSR1 (their graceful stops), and nginx, haproxy,
                     unicorn, puma: --ready immediate, unless given
  --config FILE      take inherit, ready and retire-signal from FILE's [exec]
                     table (the broker's TOML file); flags override it
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

`;

const RELOAD = `reload: the broker (started with --config) re-reads its file and applies it;
only the broker's own uid and root may. Prints what was added, removed and
changed (--json: {"added","removed","changed"}). Exit 0 when applied; 1 when
refused (ERR_FDBROKER_INVALID_CONFIG, ERR_FDBROKER_RELOAD_FAILED e.g. a bind
that fails with EADDRINUSE, ERR_FDBROKER_NO_CONFIG, ERR_FDBROKER_NOT_PERMITTED),
and then nothing changed.

`;

const STATUS = `status: what the broker holds: listeners (queued connections, backlog in
force, every process holding a copy, marked "not a generation" when it is
none), clients, generations (number, pid, state), and the counters of
handovers, rollbacks and refusals. --json: the same as one JSON document.
Exit 0; 1 when the broker cannot be reached or refuses.
`;

const RUN = `run: one process that is the broker on <control-socket> (every serve option
but --takeover and --adopt-from) and runs CMD as its generations: the
serving process that exits unasked is replaced at once (the socket is kept:
connections wait in its accept queue); from the second exit within a crash-loop
window the restart waits 100 ms, doubled up to 2 s. 5 exits within 10 s is a
crash loop: run stops everything and exits 3, printing the last lines of
output. SIGHUP (or \`fdbroker deploy <control-socket>\`) starts CMD anew beside
the serving process; the broker retires the old one once the new one is ready;
a new one that fails is stopped and the old one serves on. SIGTERM/SIGINT stop
every process once (SIGTERM; SIGKILL after --stop-timeout); a second one does
not signal again. As PID 1 (a container) run reaps orphaned processes.
  --library          CMD uses the Node library: startGeneration() with no path
                     joins this broker (FDBROKER_PATH); default: the exec
                     contract (LISTEN_FDS, NOTIFY_SOCKET), any language
  --spare            (with --library) keep a warm spare: one more process,
                     joined as a spare (holding the listeners, not accepting)
                     and waiting in startGeneration(), promoted the moment the
                     serving one dies
  --instances N      N processes serve the listeners at once (one per
                     instance slot; each tcp listener is a SO_REUSEPORT group
                     of N sockets held by the broker, one per slot); a deploy
                     replaces them one at a time, each new one ready before
                     its slot's old one retires; a crashed one restarts alone
                     (not with --spare)
  --inherit DIALECT, --ready notify|immediate, --retire-signal SIG
                     as exec's, with the same defaults per dialect (exec
                     contract only): run nginx, HAProxy, Puma, Unicorn,
                     Gunicorn, uvicorn or an Einhorn program directly
  --stop-timeout MS  SIGKILL a process MS ms after SIGTERM (default 30000)
  --watch PATH       (repeatable) development mode: a change to PATH (a file,
                     or anything under a directory) deploys, after 300 ms of quiet
  --ready-timeout MS also run's: a started process not ready by then is
                     stopped (a deploy fails; a restart counts as a crash)
  exit 0  stopped by SIGTERM/SIGINT, every process exited in time
  exit 1  the broker could not start, or a process was SIGKILLed at the stop timeout
  exit 3  crash loop
  exit 127  CMD not found or not executable (nothing started)
`;

const DEPLOY = `deploy: starts the new version and follows the handover: progress on stderr
(started, ready, old version standing by, drained or rolled back, with
times); stdout gets one JSON line {"verdict","pid","log","wait"} unless it is
a terminal (--json: always). With CMD: CMD starts in a session of its own
beside any broker, with FDBROKER_PATH=<control-socket>, its output to --log
FILE (default: the terminal, else /tmp/fdbroker-deploy-<pid>.log). Without
CMD: the \`fdbroker run\` on <control-socket> starts its command anew (SIGHUP).
When the new version fails, its last lines of output are printed.
  --timeout MS       give up waiting after MS ms (default 30000)
  exit 0  deployed: the new version serves, the old ones have left
  exit 1  rolled back: the new version failed before it was ready and was stopped
  exit 3  deployed, the old version still draining at the timeout
  exit 4  the broker cannot be reached, or no run on the path (without CMD)
  exit 5  rolled back after ready: the new version failed within the standby
          window and the broker resumed the old one
`;

const TAIL = `Exit status otherwise: 0 success, 1 failure, 2 usage error (an unknown or
malformed option, a missing value, a bad listener SPEC). With --json
(status, reload, wait), an error is also one JSON line on stdout:
{"error":{"code","message","usage"}}.
`;

const PAUSE = `pause: every generation stops accepting on the listeners NAMEd (all when
none are, udp ones excepted); new connections wait in the accept queue (up to
its backlog) until resume, or until DURATION (500ms, 5s, 2m; default 30s, at
most 5m: a forgotten pause ends on its own). Pausing again sets a new
deadline. Refused, nothing paused, when a generation that cannot stop
accepting holds one (\`fdbroker exec\`: ERR_FDBROKER_CANNOT_PAUSE). While a
listener is paused, a new generation (a deploy) that would adopt it is
refused (ERR_FDBROKER_PAUSED), and so is a takeover. Only the broker's own uid
and root may. Status shows each paused listener (until when) and its queue.
resume: ends the pause of the listeners NAMEd, all when none are.

`;

/** Each command's part: its usage lines, then its sections. */
const SECTIONS: Record<CommandName, string[]> = {
  serve: [SPEC, SERVE],
  run: [SPEC, RUN, SERVE],
  deploy: [DEPLOY],
  reload: [RELOAD],
  status: [STATUS],
  wait: [WAIT],
  exec: [EXEC],
  pause: [PAUSE],
  resume: [PAUSE],
};

/** Sections apart by one blank line, the text ending in one newline. */
function joinSections(sections: string[]): string {
  return `${sections.map((s) => s.trim()).join('\n\n')}\n`;
}

/** `fdbroker --help`: everything. */
export function fullHelp(): string {
  return joinSections([HEADER + USAGE_LINES, SPEC, SERVE, RUN, DEPLOY, STATUS, WAIT, EXEC, RELOAD, PAUSE, TAIL]);
}

/** `fdbroker COMMAND --help`: that command's usage lines and sections only. */
export function commandHelp(command: CommandName): string {
  const lines = USAGE_LINES.split('\n').filter((l) => l.startsWith(`  fdbroker ${command} `));
  return joinSections([`${HEADER}\nUsage:\n${lines.join('\n')}`, ...SECTIONS[command],
    'Exit status otherwise: 0 success, 1 failure, 2 usage error. `fdbroker --help` lists every command.']);
}
