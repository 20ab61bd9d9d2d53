//go:build !linux

package command

import "syscall"

func wrapperAlive(pid int, marker string) bool { return syscall.Kill(pid, 0) == nil }

// killHolders kills the wrapper by the pid it wrote.
func killHolders(marker string) {
	if pid := wrapperPid(marker); pid > 0 {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}
