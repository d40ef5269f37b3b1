package proctest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// RSS is the resident memory of the broker process in bytes (VmRSS in
// /proc/PID/status), or an error when it is not running or not on Linux.
func (b *Broker) RSS() (int64, error) {
	pid := b.Pid()
	if pid == 0 {
		return 0, fmt.Errorf("broker not running")
	}
	return procStatusKB(pid, "VmRSS")
}

// procStatusKB reads one "Name: N kB" line of /proc/PID/status, in bytes.
func procStatusKB(pid int, name string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			return n << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, name)
}

// OpenFiles is the number of file descriptors the broker process has open.
func (b *Broker) OpenFiles() (int, error) {
	pid := b.Pid()
	if pid == 0 {
		return 0, fmt.Errorf("broker not running")
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// StartBrokerUnder is StartBroker with the command prefixed by prefix, such
// as prlimit --nofile=400:400 to start it under other limits.
func StartBrokerUnder(t TB, prefix []string, dir string, extra ...string) *Broker {
	t.Helper()
	b := &Broker{t: t, Dir: dir, args: extra, wrap: prefix}
	b.start("127.0.0.1:0")
	t.Cleanup(func() { b.Kill() })
	return b
}
