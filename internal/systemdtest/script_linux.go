package systemdtest

import (
	"fmt"
	"io/fs"
	"strings"
)

// containerName is what systemd sees in $container: any non-empty value
// puts it in container mode, where it leaves swap, loop and DM devices,
// the clock, printk and the kernel command line alone.
const containerName = "sesame-systemdtest"

// droppedCaps leave the namespace's bounding set before systemd starts:
// they act on the whole machine, not on a namespace. Units conditioned on
// them (modprobe@, systemd-modules-load, kmod-static-nodes, debugfs and
// tracefs mounts) are skipped.
const droppedCaps = "-sys_module,-sys_time,-sys_rawio,-sys_pacct,-syslog,-wake_alarm," +
	"-block_suspend,-mac_admin,-mac_override,-audit_control,-sys_tty_config"

// placedFile is one Options.Files entry, staged as files/<staged>.
type placedFile struct {
	staged string
	path   string
	mode   fs.FileMode
	source string // host path copied into the stage by the script, or ""
}

// setupScript returns the shell program that runs as PID 1 of the new
// namespaces, turns them into a private root and execs systemd. Every
// mount is made with -n: without it libmount creates /run/mount on the
// host before the private /run exists.
func setupScript(stage, systemd, logLevel string, files []placedFile) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("set -eu")
	w("stage=%s", shq(stage))
	w("# Nothing mounted below may propagate back to the host.")
	w("mount -n --make-rprivate /")
	w("# A private tmpfs holds the overlay's upper layer; it also hides the host's /run.")
	w("mount -n -t tmpfs -o mode=0700 %s-base /run", containerName)
	w("mkdir /run/.sd /run/.sd/upper /run/.sd/work /run/.sd/root")
	w("R=/run/.sd/root")
	w(`mount -n -t overlay -o lowerdir=/,upperdir=/run/.sd/upper,workdir=/run/.sd/work %s-root "$R"`, containerName)
	w(`mount -n -t proc proc "$R/proc"`)
	w(`mount -n --bind "$R/proc/sys" "$R/proc/sys"`)
	w(`mount -n --bind "$R/proc/sys/net" "$R/proc/sys/net"`)
	w(`mount -n -o remount,bind,ro "$R/proc/sys"`)
	w(`if [ -e "$R/proc/sysrq-trigger" ]; then mount -n --bind "$R/proc/sysrq-trigger" "$R/proc/sysrq-trigger"; mount -n -o remount,bind,ro "$R/proc/sysrq-trigger"; fi`)
	w("# A sysfs of the new network namespace, read-only, and the cgroup2 view")
	w("# rooted at the harness's child cgroup (the cgroup namespace's root).")
	w(`mount -n -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"`)
	w(`mount -n -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"`)
	w(`mount -n -t tmpfs -o mode=0755,nosuid,size=4m %s-dev "$R/dev"`, containerName)
	for _, n := range []struct {
		name       string
		maj, minor int
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		w(`mknod -m 0666 "$R/dev/%s" c %d %d`, n.name, n.maj, n.minor)
	}
	w(`mkdir "$R/dev/pts" "$R/dev/shm"`)
	w(`mount -n -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"`)
	w(`ln -s pts/ptmx "$R/dev/ptmx"`)
	w(`mount -n -t tmpfs -o mode=1777,nosuid,nodev %s-shm "$R/dev/shm"`, containerName)
	w(`ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"`)
	w("# A plain file, so that console output never reaches the host's console.")
	w(`: > "$R/dev/console"`)
	w(`mkdir -p "$R/run" "$R/tmp" "$R/var/tmp"`)
	w(`mount -n -t tmpfs -o mode=0755,nosuid,nodev %s-run "$R/run"`, containerName)
	w(`mount -n -t tmpfs -o mode=1777,nosuid,nodev %s-tmp "$R/tmp"`, containerName)
	w(`mount -n -t tmpfs -o mode=1777,nosuid,nodev %s-vartmp "$R/var/tmp"`, containerName)
	w("# Stage units and files inside the new /run while the host's paths are")
	w("# still visible; they are placed after pivot_root, so that symlinks on")
	w("# the way resolve inside the namespace.")
	w(`mkdir "$R/run/.sesame-stage"`)
	w(`cp -R "$stage/." "$R/run/.sesame-stage/"`)
	for _, f := range files {
		if f.source != "" {
			w(`cp -- %s "$R/run/.sesame-stage/files/%s"`, shq(f.source), f.staged)
		}
	}
	w(`cd "$R"`)
	w("mkdir .sesame-oldroot")
	w("pivot_root . .sesame-oldroot")
	w("cd /")
	w("umount -n -l /.sesame-oldroot")
	w("rmdir /.sesame-oldroot")
	w("# From here on / must be the private overlay: refuse to delete anything otherwise.")
	w(`[ "$(stat -f -c %%T /)" = overlayfs ] || { echo "systemdtest: / is not the private overlay" >&2; exit 1; }`)
	w("# A minimal boot: no static .wants/.requires links and no generators,")
	w("# so only journald and the units under test (and what they pull) start.")
	w("for d in /etc/systemd/system /usr/local/lib/systemd/system /lib/systemd/system /usr/lib/systemd/system; do")
	w(`  for x in "$d"/*.wants "$d"/*.requires "$d"/*.upholds; do if [ -d "$x" ]; then rm -rf -- "$x"; fi; done`)
	w("done")
	w("mkdir -p /run/systemd/system /run/systemd/system-generators")
	w("for g in /etc/systemd/system-generators/* /usr/local/lib/systemd/system-generators/* /lib/systemd/system-generators/* /usr/lib/systemd/system-generators/*; do")
	w(`  if [ -e "$g" ]; then ln -sf /dev/null "/run/systemd/system-generators/${g##*/}"; fi`)
	w("done")
	w("cp -R /run/.sesame-stage/units/. /run/systemd/system/")
	for _, f := range files {
		w(`mkdir -p "$(dirname %s)"; rm -f -- %s; cp -- "/run/.sesame-stage/files/%s" %s; chmod %o %s`,
			shq(f.path), shq(f.path), f.staged, shq(f.path), f.mode, shq(f.path))
	}
	w("rm -rf /run/.sesame-stage")
	w(`exec setpriv --bounding-set %s env -i container=%s TERM=dumb LANG=C.UTF-8 PATH=%s %s --unit=%s --log-level=%s --show-status=false </dev/null`,
		droppedCaps, containerName, nsPath, shq(systemd), TargetName, shq(logLevel))
	return b.String()
}

// nsPath is PATH inside the namespace.
const nsPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
