#!/usr/bin/env bash
# The system packages the test suite drives (real tools, not mocks), checked
# before `npm test` (npm's pretest) and by .ci/run. When one is missing: as
# root on a system with apt-get (Debian, Ubuntu), installs them; otherwise
# prints the apt-get line to run, and fails. FDBROKER_SKIP_TEST_DEPS=1 skips
# the check (the tests whose tools are missing are then skipped and named, or
# fail under CI=true: test/requirements.ts).
set -euo pipefail

if [ "${FDBROKER_SKIP_TEST_DEPS:-}" = 1 ]; then exit 0; fi

missing=()
need() { # need PACKAGE CHECK...: PACKAGE is missing unless every check passes
  local pkg=$1; shift
  for c in "$@"; do
    case $c in
      /*) [ -e "$c" ] || { missing+=("$pkg"); return; } ;;
      *) command -v "$c" >/dev/null 2>&1 || { missing+=("$pkg"); return; } ;;
    esac
  done
}

# python3 >= 3.8 (a system one other users can run): the Python protocol client, the exec recipes.
need python3 python3
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)'; then missing+=(python3); fi
# setpriv, prlimit (clients as other users, fd limits); unshare, nsenter (the systemd user manager's namespace).
need util-linux setpriv prlimit unshare nsenter
# ss: accept queues and socket inodes.
need iproute2 ss
# The systemd manager itself, systemctl, systemd-socket-activate, systemd-notify.
need systemd /lib/systemd/systemd systemctl systemd-socket-activate systemd-notify
# The Python server recipes under `fdbroker exec` (Debian's packages).
need gunicorn gunicorn
need uvicorn uvicorn
# The servers of `fdbroker exec --inherit` (test/cli/dialects.test.ts).
need nginx-light /usr/sbin/nginx
need haproxy haproxy
need puma puma
need unicorn unicorn
# The build from source (the install tests, where no prebuild fits).
need g++ g++
need make make
# The prebuilt binaries: symbol versions (objdump), the arm64 one run under qemu with Debian's arm64 libraries.
need binutils objdump
need qemu-user-static qemu-aarch64-static
need libc6-arm64-cross /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1
need libstdc++6-arm64-cross /usr/aarch64-linux-gnu/lib/libstdc++.so.6
# Node's headers for that build: Debian's nodejs keeps them in libnode-dev; Node from nodejs.org has them.
node_prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
if [ ! -e "$node_prefix/include/node/node_api.h" ]; then
  if [ "$node_prefix" = /usr ]; then missing+=(libnode-dev); else
    echo "test-deps: Node's headers are not in $node_prefix/include/node: install a Node that has them (nodejs.org builds do)" >&2
    exit 1
  fi
fi

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  exit 0
fi

cat >&2 <<MSG
test-deps: the tests need system packages that are missing: ${missing[*]}
Install them (Debian, Ubuntu), then run the tests again:
  sudo apt-get install -y ${missing[*]}
Some tests also need root (they run clients as other users). To run the
tests anyway (those whose tools are missing are skipped, or fail with
CI=true): FDBROKER_SKIP_TEST_DEPS=1 npm test
MSG
exit 1
