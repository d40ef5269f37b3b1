package partition

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/skeinlog/skein/internal/fsutil"
)

// EpochEntry is the first offset appended under a leader epoch.
type EpochEntry struct {
	Epoch       int32
	StartOffset int64
}

// epochCache is the leader epoch history. Pure: persistence is separate.
// Entries are sorted by epoch and by start offset, both strictly increasing.
type epochCache struct {
	entries []EpochEntry
}

// assign records that epoch starts at offset. An epoch not newer than the
// latest is ignored; an entry whose start offset is not after the previous
// one replaces it (an epoch that appended nothing).
func (c *epochCache) assign(epoch int32, start int64) bool {
	if n := len(c.entries); n > 0 {
		last := c.entries[n-1]
		if epoch <= last.Epoch {
			return false
		}
		for len(c.entries) > 0 && c.entries[len(c.entries)-1].StartOffset >= start {
			c.entries = c.entries[:len(c.entries)-1]
		}
	}
	c.entries = append(c.entries, EpochEntry{epoch, start})
	return true
}

// latest is the newest epoch, or -1.
func (c *epochCache) latest() int32 {
	if len(c.entries) == 0 {
		return -1
	}
	return c.entries[len(c.entries)-1].Epoch
}

// endOffsetFor answers Kafka's OffsetForLeaderEpoch: the largest epoch <=
// epoch this log knows, and the offset where it ended (the next epoch's
// start, or leo for the latest). (-1, -1) when the log has no epoch <= epoch.
func (c *epochCache) endOffsetFor(epoch int32, leo int64) (int32, int64) {
	for i := len(c.entries) - 1; i >= 0; i-- {
		if c.entries[i].Epoch <= epoch {
			if i == len(c.entries)-1 {
				return c.entries[i].Epoch, leo
			}
			return c.entries[i].Epoch, c.entries[i+1].StartOffset
		}
	}
	return -1, -1
}

// truncateAfter drops epochs that start at or after leo (a truncated suffix).
func (c *epochCache) truncateAfter(leo int64) bool {
	n := len(c.entries)
	for n > 0 && c.entries[n-1].StartOffset >= leo {
		n--
	}
	changed := n != len(c.entries)
	c.entries = c.entries[:n]
	return changed
}

// truncateBefore drops epochs wholly below start (deleted by retention),
// keeping the one that covers start.
func (c *epochCache) truncateBefore(start int64) bool {
	i := 0
	for i+1 < len(c.entries) && c.entries[i+1].StartOffset <= start {
		i++
	}
	if i == 0 {
		return false
	}
	c.entries = append(c.entries[:0], c.entries[i:]...)
	return true
}

func (c *epochCache) snapshot() []EpochEntry { return append([]EpochEntry(nil), c.entries...) }

const epochFileName = "leader-epoch-checkpoint"

// epochFile format: a version line "1", a count line, then "epoch offset" lines.
func encodeEpochs(entries []EpochEntry) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "1\n%d\n", len(entries))
	for _, e := range entries {
		fmt.Fprintf(&b, "%d %d\n", e.Epoch, e.StartOffset)
	}
	return b.Bytes()
}

func decodeEpochs(data []byte) ([]EpochEntry, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 2 || lines[0] != "1" {
		return nil, fmt.Errorf("bad epoch checkpoint header")
	}
	n, err := strconv.Atoi(lines[1])
	if err != nil || n < 0 || n != len(lines)-2 {
		return nil, fmt.Errorf("bad epoch checkpoint count")
	}
	entries := make([]EpochEntry, 0, n)
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) != 2 {
			return nil, fmt.Errorf("bad epoch checkpoint line %q", l)
		}
		e, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || e < 0 || o < 0 {
			return nil, fmt.Errorf("bad epoch checkpoint line %q", l)
		}
		if k := len(entries); k > 0 && (int32(e) <= entries[k-1].Epoch || o <= entries[k-1].StartOffset) {
			return nil, fmt.Errorf("epoch checkpoint not increasing at %q", l)
		}
		entries = append(entries, EpochEntry{int32(e), o})
	}
	return entries, nil
}

// writeFileAtomic writes dir/name so that a crash leaves the old or the new.
func writeFileAtomic(dir, name string, data []byte) error {
	return fsutil.WriteFileAtomic(filepath.Join(dir, name), data)
}

func syncDir(dir string) error { return fsutil.SyncDir(dir) }
