package partition

import (
	"io/fs"
	"syscall"
)

// inodeTimes is fi's inode number and change time (ns).
func inodeTimes(fi fs.FileInfo) (ino uint64, ctime int64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return st.Ino, st.Ctim.Nano()
}
