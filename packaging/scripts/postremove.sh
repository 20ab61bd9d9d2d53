#!/bin/sh
# sesame: after the files are gone (deb postrm, rpm %postun).
#   deb: remove | purge | upgrade NEW-VERSION | disappear | failed-upgrade |
#        abort-install | abort-upgrade ...
#   rpm: $1 = versions installed once this finishes: 0 erase, 1+ upgrade
# deb purge deletes the state (the grants journal) and logs; remove keeps
# them. rpm has no purge: erase keeps /var/lib/sesame like deb remove
# does (and like rpm keeps a changed config as .rpmsave); after the
# preremove revoked every grant it holds nothing that still acts, and
# `rm -rf /var/lib/sesame /var/log/sesame` finishes the job.
set -e

case "$1" in
purge)
	rm -rf /var/lib/sesame /var/log/sesame
	# The empty knockd log tmpfiles.d/sesame.conf made, unless something
	# wrote to it.
	if [ -f /var/log/knockd.log ] && [ ! -s /var/log/knockd.log ]; then
		rm -f /var/log/knockd.log
	fi
	# dpkg removed the conffile; keep the directory if the admin put
	# other files (one-time sequences) there.
	rmdir /etc/sesame 2>/dev/null || true
	;;
esac

case "$1" in
remove|purge|0)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
		systemctl reset-failed sesamed.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
