#!/bin/sh
# Usage: version.sh [VERSION]
# Prints a version that deb and rpm both order correctly, from VERSION
# (the Makefile passes `git describe --tags --always --dirty` or the
# VERSION= it was given):
#   v1.2.3            -> 1.2.3
#   v1.2.3-rc1        -> 1.2.3~rc1        (before 1.2.3)
#   v1.2.3-4-gabc1234 -> 1.2.3+4.gabc1234 (after 1.2.3, before 1.2.4)
#   abc1234[-dirty]   -> 0.0.0+gitN.abc1234[.dirty], N = commits so far
#   "" or "dev"       -> 0.0.0+dev
set -eu
v=${1:-dev}
v=${v#v}
if [ "$v" = dev ]; then
	v=0.0.0+dev
elif ! printf '%s\n' "$v" | grep -Eq '^[0-9]+(\.[0-9]+)+([-~+].*)?$'; then
	# Not a release number: a commit (hashes may start with a digit).
	n=$(git rev-list --count HEAD 2>/dev/null || echo 0)
	v="0.0.0+git$n.$v"
fi
printf '%s\n' "$v" | sed \
	-e 's/-\([0-9][0-9]*\)-g\([0-9a-f][0-9a-f]*\)/+\1.g\2/' \
	-e 's/-dirty$/.dirty/' \
	-e 's/-/~/g'
