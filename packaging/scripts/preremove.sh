#!/bin/sh
# sesame: before the files go (deb prerm, rpm %preun).
#   deb: remove | upgrade NEW-VERSION | deconfigure ... | failed-upgrade ...
#   rpm: $1 = versions installed once this finishes: 0 erase, 1+ upgrade
# On removal: revoke every grant while sesamed still runs (so stop
# commands run and no knocker keeps access), stop and disable it, and
# remove the rescue port and Sesame's other firewall objects. This is
# the last moment the binaries exist, so deb purge and rpm erase get
# their teardown here too.
# Upgrades do nothing here: the new package's postinstall restarts.
set -e

case "$1" in
remove|0) ;;
*) exit 0 ;;
esac

# grant_ids prints the IDs of the grants the running sesamed holds.
grant_ids() {
	/usr/bin/sesame grants --json 2>/dev/null | sed -n 's/^ *"id": *"\([^"]*\)".*/\1/p' || true
}

if [ -d /run/systemd/system ]; then
	if systemctl is-active --quiet sesamed.service; then
		for id in $(grant_ids); do
			/usr/bin/sesame revoke "$id" || echo "sesame: could not revoke grant $id" >&2
		done
		# Revoking runs the stop commands in the background; stopping
		# sesamed now would kill them. Wait for them, 30 seconds at most.
		n=0
		while [ -n "$(grant_ids)" ] && [ $n -lt 60 ]; do
			sleep 0.5
			n=$((n + 1))
		done
		left=$(grant_ids)
		if [ -n "$left" ]; then
			echo "sesame: grants still being revoked after 30 s:" $left "(their stop commands stay journaled in /var/lib/sesame)" >&2
		fi
	fi
	systemctl stop sesamed.service || true
fi
systemctl --no-reload disable sesamed.service >/dev/null 2>&1 || true

# With sesamed gone, a configured rescue port would lapse open for good.
if ! /usr/bin/sesame rescue remove --quiet; then
	echo "sesame: the rescue port could not be removed (errors above)" >&2
fi
if ! /usr/sbin/sesamed --teardown; then
	echo "sesame: some of Sesame's firewall objects could not be removed (errors above)" >&2
fi
exit 0
