package command

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// wrapperAlive reports whether pid is a live process whose arguments
// include marker (so a reused pid is not mistaken for the wrapper).
func wrapperAlive(pid int, marker string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return hasArg(b, marker) && !zombie(pid)
}

// killHolders kills the process group of every process that has the
// launch record of marker open (the wrapper, or the child about to exec
// it: a process group leader from its fork on).
func killHolders(marker string) {
	record, err := filepath.Abs(marker + ".pid")
	if err != nil {
		return
	}
	d, err := os.Open("/proc")
	if err != nil {
		return
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		fds, err := os.ReadDir("/proc/" + n + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink("/proc/" + n + "/fd/" + fd.Name()); err == nil && l == record {
				if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
					syscall.Kill(-pid, syscall.SIGKILL)
				} else {
					syscall.Kill(pid, syscall.SIGKILL)
				}
				break
			}
		}
	}
}

func hasArg(cmdline []byte, arg string) bool {
	for _, a := range bytes.Split(cmdline, []byte{0}) {
		if string(a) == arg {
			return true
		}
	}
	return false
}

// zombie reports whether pid has exited and waits to be reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}
