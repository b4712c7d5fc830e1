#!/usr/bin/env bash
# Blue/green deploy over fdbroker: a thin example over `fdbroker deploy`,
# which starts the new version beside the running one and waits until it
# serves and the old one has drained and left; if the new version fails to
# become ready, it is stopped and the old one serves on (its last lines of
# output are printed). A new version that is ready is never stopped: if the
# old one is still draining long connections at the timeout, the deploy is
# done ("deployed, old version still draining", exit 3).
#
#   examples/blue-green.sh /run/app.sock node app.js          # an app using startGeneration()
#   examples/blue-green.sh /run/app.sock npx fdbroker exec /run/app.sock -- ./server   # any language
#
# Under `fdbroker run`, `fdbroker deploy /run/app.sock` (no command) redeploys
# run's own command.
#
# Env: TIMEOUT_MS (default 30000), FDBROKER: the CLI to run (default: the one
#      of this script's own package, so node_modules/fdbroker/examples/blue-green.sh
#      works inside an app; else fdbroker on PATH),
#      LOG: where the new version's stdout and stderr go (default: the
#      terminal when there is one, else /tmp/fdbroker-deploy-<pid>.log).
# Output: progress on stderr; on stdout exactly one JSON line, the verdict:
#   {"verdict":"deployed"|"draining"|"rolled_back"|"rolled_back_after_ready"|"error","pid":N,"log":"...","wait":{...as fdbroker wait --json...}}
# Exit (those of `fdbroker deploy`): 0 deployed; 1 rolled back (the old version still serves);
#       2 usage; 3 deployed, old version still draining (do not roll back);
#       4 fdbroker cannot be run or the broker cannot be reached (new version stopped);
#       5 rolled back after ready: the new version was ready, then failed within the
#         broker's standby window, and the broker resumed the old version.
set -uo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 <control-socket> <command> [args...]" >&2
  exit 2
fi
sock=$1
shift
args=(--timeout "${TIMEOUT_MS:-30000}" --json)
[ -n "${LOG:-}" ] && args+=(--log "$LOG")

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
"${fdbroker[@]}" deploy "$sock" "${args[@]}" -- "$@"
rc=$?
case $rc in
  126|127)
    echo "blue-green: cannot run '${fdbroker[*]}' (exit $rc): set FDBROKER, e.g. FDBROKER='npx fdbroker'" >&2
    exit 4 ;;
esac
exit $rc
