package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Files of a log directory besides tidwall's segments (%020d). tidwall
// ignores every name that is not 20 digits, optionally followed by .START or
// .END, so these are safe beside its files.
const (
	// startFileName holds the log's start offset: NextOffset when the log
	// is empty. Written atomically whenever the start changes (Reset,
	// TruncateTo to empty, DeleteSegmentsBefore) and ignored while the log
	// has entries.
	startFileName = "start-offset"
	tmpSuffix     = ".tmp"
)

// syncDir fsyncs a directory, making entries created, renamed or removed in
// it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: fsync directory %s: %w", dir, err)
	}
	return nil
}

// writeFileAtomic writes data to name through a temp file: write, fsync,
// rename, fsync the directory.
func writeFileAtomic(name string, data []byte) error {
	tmp := name + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("wal: write %s: %w", name, err)
	}
	return syncDir(filepath.Dir(name))
}

// Start file: magic "SKST", version u8, start offset i64, CRC-32C u32.
const (
	startMagic   = "SKST"
	startFileLen = 4 + 1 + 8 + 4
)

func writeStartFile(dir string, start int64) error {
	b := make([]byte, 0, startFileLen)
	b = append(b, startMagic...)
	b = append(b, 1)
	b = binary.LittleEndian.AppendUint64(b, uint64(start))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return writeFileAtomic(filepath.Join(dir, startFileName), b)
}

// readStartFile returns the recorded start offset; ok is false when the
// file is missing or invalid.
func readStartFile(dir string) (start int64, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, startFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if len(b) != startFileLen || string(b[:4]) != startMagic || b[4] != 1 ||
		binary.LittleEndian.Uint32(b[13:]) != crc32.Checksum(b[:13], castagnoli) {
		return 0, false, nil
	}
	start = int64(binary.LittleEndian.Uint64(b[5:]))
	return start, start >= 0, nil
}

// dirListing is what a log directory holds, by kind.
type dirListing struct {
	segments []uint64          // tidwall segment ids, ascending
	sizes    map[uint64]int64  // segment id → file size
	sidecars map[uint64]string // segment id → sidecar path
	pending  []string          // tidwall .START/.END files
	temps    []string          // leftover temp files (ours and tidwall's)
}

func listDir(dir string) (*dirListing, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	d := &dirListing{sizes: map[uint64]int64{}, sidecars: map[uint64]string{}}
	for _, de := range des {
		name := de.Name()
		if de.IsDir() {
			continue
		}
		if strings.HasSuffix(name, tmpSuffix) || strings.HasSuffix(name, ".TEMP") {
			d.temps = append(d.temps, filepath.Join(dir, name))
			continue
		}
		if len(name) < 20 {
			continue
		}
		id, ok := parseSegmentID(name[:20])
		if !ok {
			continue
		}
		switch rest := name[20:]; rest {
		case "":
			info, err := de.Info()
			if err != nil {
				return nil, err
			}
			d.segments = append(d.segments, id)
			d.sizes[id] = info.Size()
		case ".idx":
			d.sidecars[id] = filepath.Join(dir, name)
		case ".START", ".END":
			d.pending = append(d.pending, filepath.Join(dir, name))
		}
	}
	slices.Sort(d.segments)
	return d, nil
}

func parseSegmentID(s string) (uint64, bool) {
	if len(s) != 20 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseUint(s, 10, 64)
	return id, err == nil && id > 0
}
