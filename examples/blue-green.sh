#!/usr/bin/env bash
# Blue/green deploy over fdbroker: start the new version beside the running
# one, wait until it serves and the old one has drained and left; if the new
# version fails to become ready, stop it and leave the old one serving. A new
# version that is ready is never stopped: if the old one is still draining
# long connections at the timeout, the deploy is done ("deployed, old version
# still draining", exit 3).
#
#   examples/blue-green.sh /run/app.sock node app.js          # an app using startGeneration()
#   examples/blue-green.sh /run/app.sock npx fdbroker exec /run/app.sock -- ./server   # any language
#
# CMD may be a wrapper (npx, sh -c, npm start, fdbroker exec): the script waits
# on the generation whose process is CMD's pid or a descendant of it.
#
# Env: TIMEOUT_MS (default 30000), FDBROKER: the CLI to run (default: the one
#      of the package this script comes with, ../bin/fdbroker.js, so that
#      node_modules/fdbroker/examples/blue-green.sh works inside an app; else
#      fdbroker on PATH),
#      LOG: where the new version's stdout and stderr go (default: this
#      script's own when they are a terminal, else /tmp/blue-green-<pid>.log),
#      so that `| tee` or `$(...)` around this script never waits for the app.
# Output: progress on stderr; on stdout exactly one JSON line, the verdict:
#   {"verdict":"deployed"|"draining"|"rolled_back"|"rolled_back_after_ready"|"error","pid":N,"log":"...","wait":{...fdbroker wait --json...}}
#   wait.holders lists processes that hold a listener without being generations
#   (e.g. an adoptListeners() app): no deploy retires them; stop them yourself.
# Exit: 0 deployed; 1 rolled back (the old version still serves);
#       2 usage; 3 deployed, old version still draining (do not roll back);
#       4 fdbroker cannot be run or the broker cannot be reached (new version stopped);
#       5 rolled back after ready: the new version was ready, then failed within the
#         broker's standby window, and the broker resumed the old version.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 <control-socket> <command> [args...]" >&2
  exit 2
fi
sock=$1
shift
# The CLI of this script's own package (same version), unless FDBROKER says otherwise.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# An array, so that a path with spaces survives; FDBROKER is split on spaces (FDBROKER='npx fdbroker').
if [ -n "${FDBROKER:-}" ]; then
  read -r -a fdbroker <<<"$FDBROKER"
elif [ -f "$here/../bin/fdbroker.js" ]; then
  fdbroker=(node "$here/../bin/fdbroker.js")
else
  fdbroker=(fdbroker)
fi
timeout_ms=${TIMEOUT_MS:-30000}

say() { echo "blue-green: $*" >&2; }
json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
verdict() { # verdict pid wait-json
  printf '{"verdict":"%s","pid":%s,"log":%s,"wait":%s}\n' "$1" "$2" "$(json_str "$log")" "${3:-null}"
}

if [ -n "${LOG:-}" ]; then
  log=$LOG
elif [ -t 1 ] && [ -t 2 ]; then
  log=/dev/tty
else
  log=${TMPDIR:-/tmp}/blue-green-$$.log
fi

# setsid: the new version outlives this script and is not in its process
# group. Its output goes to $log, never to this script's stdout/stderr (a pipe
# the app would hold open for as long as it runs).
setsid "$@" </dev/null >>"$log" 2>&1 &
new=$!
say "started pid $new (output: $log)"

set +e
wait_json=$("${fdbroker[@]}" wait "$sock" --pid "$new" --until handover --timeout "$timeout_ms" --json)
rc=$?
if [ "$rc" = 1 ]; then
  # Not ready at the deadline; it may have become ready since the last look.
  again=$("${fdbroker[@]}" wait "$sock" --pid "$new" --until ready --timeout 1 --json 2>/dev/null)
  [ $? = 0 ] && { rc=5; wait_json=$again; }
fi
set -e
[ -n "$wait_json" ] || wait_json=null

case $rc in
  0)
    case $wait_json in
      *'"holders":[]'*|null) say "deployed; pid $new serves and older generations have left" ;;
      # fdbroker wait named them above: processes that hold a listener without being generations serve on.
      *) say "deployed; pid $new serves, but the old code may still answer: a process that is not a generation holds a listener (named above); stop it yourself" ;;
    esac
    verdict deployed "$new" "$wait_json"
    exit 0 ;;
  5)
    say "deployed; pid $new serves; the old version is still draining after ${timeout_ms} ms (not rolled back)"
    verdict draining "$new" "$wait_json"
    exit 3 ;;
  6)
    say "pid $new was ready, then failed (exited, crashed or stopped accepting); the broker rolled back: the old version serves again"
    kill -TERM -- "-$new" 2>/dev/null || kill -TERM "$new" 2>/dev/null || true
    verdict rolled_back_after_ready "$new" "$wait_json"
    exit 5 ;;
  4)
    say "pid $new exited or was refused before it was ready; rolled back" ;;
  1)
    say "pid $new not ready within ${timeout_ms} ms; stopping it; rolled back" ;;
  126|127)
    say "cannot run '${fdbroker[*]}' (exit $rc): set FDBROKER, e.g. FDBROKER='npx fdbroker'; stopping pid $new" ;;
  *)
    say "cannot reach the broker at $sock (exit $rc); stopping pid $new" ;;
esac
# setsid made $new the leader of its own process group: stop the whole tree
# (a wrapper and what it started), or the process alone if that fails.
kill -TERM -- "-$new" 2>/dev/null || kill -TERM "$new" 2>/dev/null || true
case $rc in
  1|4) verdict rolled_back "$new" "$wait_json"; exit 1 ;;
  *) verdict error "$new" "$wait_json"; exit 4 ;;
esac
