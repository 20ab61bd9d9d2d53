#!/bin/sh
# Usage: copyright.sh BINARY...
# Prints /usr/share/doc/sesame/copyright: Sesame's MIT license (from
# LICENSE) and, because the binaries are statically linked Go programs,
# the license and NOTICE texts of the Go toolchain and of every module
# `go version -m` finds linked into them, read from the module cache.
set -eu
[ $# -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }

# indent prints a file as a copyright-format field body.
indent() { sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /' "$1"; }

# The layout borrows copyright-format 1.0's fields, but repeats "Files: *"
# for each linked module, so it does not claim that format.
cat <<'HDR'
Upstream-Name: sesame
Source: https://github.com/sesame-knock/sesame

Files: *
Copyright: The Sesame authors
License: MIT
HDR
sed 1,4d LICENSE | indent /dev/stdin

go=$(go version "$1" | awk '{print $2}')
printf '\nFiles: *\nComment: The Go standard library and runtime (%s), linked into every binary.\nCopyright: The Go Authors\nLicense: BSD-3-clause\n' "$go"
indent "$(go env GOROOT)/LICENSE"

modcache=$(go env GOMODCACHE)
go version -m "$@" | awk '$1 == "dep" { print $2 "@" $3 }' | sort -u | while read -r mv; do
	# The module cache spells capitals as '!' plus the lower-case letter.
	dir="$modcache/$(printf '%s' "$mv" | sed 's/[A-Z]/!\L&/g')"
	lic=
	for f in LICENSE LICENSE.md LICENSE.txt LICENCE COPYING; do
		if [ -f "$dir/$f" ]; then lic="$dir/$f"; break; fi
	done
	if [ -z "$lic" ]; then
		echo "copyright.sh: no license file for $mv in $dir" >&2
		exit 1
	fi
	printf '\nFiles: *\nComment: Go module %s, statically linked.\nCopyright: see the license text\nLicense: other\n' "$mv"
	indent "$lic"
	if [ -f "$dir/NOTICE" ]; then
		printf 'Comment: NOTICE of %s:\n' "$mv"
		indent "$dir/NOTICE"
	fi
done
