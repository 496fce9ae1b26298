#!/bin/sh
# Install what building and running writewatch needs on Debian, if it is missing: uthash-dev
# (the hash tables; used as the system package), python3 (launcher, report, tests), a compiler.
set -e
missing=""
[ -f /usr/include/uthash.h ] || missing="$missing uthash-dev"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
[ -n "$missing" ] || exit 0
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
		echo "writewatch: missing packages:$missing; install them as root (apt-get install$missing)" >&2
		exit 1
	fi
fi
echo "writewatch: installing$missing" >&2
${SUDO:-} apt-get install -y $missing >/dev/null 2>&1 || {
	${SUDO:-} apt-get update >/dev/null 2>&1
	${SUDO:-} apt-get install -y $missing >/dev/null
}
