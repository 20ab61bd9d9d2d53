#!/bin/sh
# sesame: after the files are in place (deb postinst, rpm %post).
#   deb: configure OLD-VERSION ("" on a first install) | abort-upgrade |
#        abort-remove | abort-deconfigure ...
#   rpm: $1 = versions installed once this finishes: 1 install, 2+ upgrade
# A firewall daemon must be configured before it runs, so a first install
# neither enables nor starts sesamed; an upgrade restarts it only if it
# was running and the new sesamed accepts the config.
set -e

case "$1" in
configure) if [ -z "$2" ]; then action=install; else action=upgrade; fi ;;
1) action=install ;;
[0-9]*) action=upgrade ;;
*) action=none ;; # deb abort-*: the old files are back, nothing to start
esac

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
# /var/log/knockd.log (tmpfiles.d/sesame.conf), which the unit lets
# sesamed write when it exists; at boot systemd-tmpfiles-setup makes it.
if [ "$action" != none ] && command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles --create sesame.conf || true
fi

case "$action" in
install)
	cat <<'MSG'
sesame: sesamed is installed but neither enabled nor started. Edit
/etc/sesame/sesame.conf (see sesame.conf(5)), check it with
`sesame check /etc/sesame/sesame.conf`, then `systemctl enable --now sesamed`.
MSG
	;;
upgrade)
	if [ -d /run/systemd/system ] && systemctl is-active --quiet sesamed.service; then
		# A config the new version rejects would turn a restart into an
		# outage: keep the old daemon running and say so.
		if ! /usr/sbin/sesamed --check -c /etc/sesame/sesame.conf >/dev/null; then
			echo "sesame: the new sesamed rejects /etc/sesame/sesame.conf (errors above); the running daemon was not restarted. Fix the file, then: systemctl restart sesamed" >&2
		elif ! systemctl try-restart sesamed.service; then
			echo "sesame: restarting sesamed failed; see: journalctl -u sesamed" >&2
		fi
	fi
	;;
esac
exit 0
