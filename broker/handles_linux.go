package broker

import (
	"os"
	"syscall"
)

// processHandles is the process's open file descriptors and its soft open
// file limit.
func processHandles() (open, limit int, ok bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, false
	}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, 0, false
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0, 0, false
	}
	// The directory itself was open while it was read.
	return len(names) - 1, int(min(rl.Cur, 1<<31-1)), true
}
