package broker

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryFiles hold the container's memory limit: cgroup v2, then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// cgroupMemoryLimit is the container's memory limit in bytes, or 0 when
// there is none (no cgroup file, "max", or v1's "unlimited" huge value).
func cgroupMemoryLimit() int64 {
	for _, f := range cgroupMemoryFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		return parseCgroupLimit(string(data))
	}
	return 0
}

// parseCgroupLimit reads a memory.max or memory.limit_in_bytes value. Pure.
func parseCgroupLimit(s string) int64 {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= 1<<60 {
		return 0
	}
	return n
}

// memoryLimit chooses the Go memory limit of a broker process: 90% of the
// container's limit when it has one, else twice the in-flight budget plus
// 512 MiB for everything else (metadata, indexes, caches, goroutines).
// Pure.
func memoryLimit(cgroup, inflight int64) (limit int64, source string) {
	if cgroup > 0 {
		return cgroup / 10 * 9, "90% of the cgroup memory limit"
	}
	return 2*inflight + 512<<20, "2 x --max-inflight-bytes + 512 MiB"
}

// ApplyProcessLimits sets the process-wide limits a broker process runs
// under and logs them: the Go memory limit (unless GOMEMLIMIT is set), and
// the open file limit, whose soft value is raised to the hard one. A program that runs one broker calls it once,
// before New; tests running many brokers in one process do not.
func ApplyProcessLimits(cfg Config, log *slog.Logger) {
	inflight := cfg.MaxInflightBytes
	if inflight <= 0 {
		inflight = DefaultConfig().MaxInflightBytes
	}
	cg := cgroupMemoryLimit()
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		log.Info("memory limit from GOMEMLIMIT", "GOMEMLIMIT", v, "bytes", debug.SetMemoryLimit(-1), "cgroup_limit_bytes", cg)
	} else {
		limit, source := memoryLimit(cg, inflight)
		debug.SetMemoryLimit(limit)
		log.Info("memory limit set", "bytes", limit, "from", source, "max_inflight_bytes", inflight, "cgroup_limit_bytes", cg)
	}
	if soft, hard, err := raiseFileLimit(); err != nil {
		log.Warn("could not raise the open file limit to its hard limit", "soft", soft, "hard", hard, "err", err)
	} else {
		log.Info("open file limit", "soft", soft, "hard", hard)
	}
	if cg > 0 && inflight > cg/2 {
		log.Warn("--max-inflight-bytes is more than half the container's memory limit: lower it or raise the limit",
			"max_inflight_bytes", inflight, "cgroup_limit_bytes", cg)
	}
}
