#!/bin/sh
# Installs the Debian packages the build and the tests need, if missing.
# Runs apt-get as root (directly, or through sudo when available); prints
# what is missing and stops otherwise.  erlang-base (epmd, erl) and
# erlang-dev (ei.h, libei.a) are for distribution: workers.fas links libei,
# and the distribution tests start epmd and erl.
set -e
PKGS="${WORKERS_PKGS:-ecl liburcu-dev cl-fiveam gcc make erlang-base erlang-dev}"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "workers: installing missing Debian packages:$missing"
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else
	echo "workers: not root and no sudo; please install:$missing" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
