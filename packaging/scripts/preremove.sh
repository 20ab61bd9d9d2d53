#!/bin/sh
# sesame: before the files go (deb prerm, rpm %preun).
#   deb: remove | upgrade NEW-VERSION | deconfigure ... | failed-upgrade ...
#   rpm: $1 = versions installed once this finishes: 0 erase, 1+ upgrade
# On removal: revoke every grant while sesamed still runs (so stop
# commands run and no knocker keeps access), stop and disable it, and
# remove Sesame's firewall objects. This is the last moment the binaries
# exist, so deb purge and rpm erase get their teardown here too.
# Upgrades do nothing here: the new package's postinstall restarts.
set -e

case "$1" in
remove|0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	if systemctl is-active --quiet sesamed.service; then
		ids=$(/usr/bin/sesame grants --json 2>/dev/null | sed -n 's/^ *"id": *"\([^"]*\)".*/\1/p') || true
		for id in $ids; do
			/usr/bin/sesame revoke "$id" || echo "sesame: could not revoke grant $id" >&2
		done
	fi
	systemctl stop sesamed.service || true
fi
systemctl --no-reload disable sesamed.service >/dev/null 2>&1 || true

if ! /usr/sbin/sesamed --teardown; then
	echo "sesame: some of Sesame's firewall objects could not be removed (errors above)" >&2
fi
exit 0
