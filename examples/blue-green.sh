#!/usr/bin/env bash
# Blue/green deploy over fdbroker: start the new version beside the running
# one, wait until it serves and the old one has drained and left; if the new
# version fails to become ready, stop it and leave the old one serving.
#
#   examples/blue-green.sh /run/app.sock node app.js          # an app using startGeneration()
#   examples/blue-green.sh /run/app.sock fdbroker exec /run/app.sock -- ./server   # any language
#
# Env: TIMEOUT_MS (default 30000), FDBROKER (default: fdbroker on PATH).
# Exit: 0 deployed; 1 rolled back (the old version still serves); 2 usage.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 <control-socket> <command> [args...]" >&2
  exit 2
fi
sock=$1
shift
fdbroker=${FDBROKER:-fdbroker}
timeout_ms=${TIMEOUT_MS:-30000}

# setsid: the new version outlives this script and is not in its process group.
setsid "$@" </dev/null &
new=$!
echo "blue-green: started pid $new"

set +e
$fdbroker wait "$sock" --pid "$new" --until handover --timeout "$timeout_ms"
rc=$?
set -e

case $rc in
  0)
    echo "blue-green: deployed; pid $new serves and older generations have left"
    exit 0 ;;
  4)
    echo "blue-green: pid $new exited or was refused before it was ready; rolled back" >&2 ;;
  1)
    echo "blue-green: pid $new not ready within ${timeout_ms} ms; stopping it; rolled back" >&2 ;;
  126|127)
    echo "blue-green: cannot run '$fdbroker' (exit $rc): set FDBROKER, e.g. FDBROKER='npx fdbroker'; stopping pid $new" >&2 ;;
  *)
    echo "blue-green: cannot reach the broker at $sock (exit $rc); stopping pid $new" >&2 ;;
esac
kill -TERM "$new" 2>/dev/null || true
exit 1
