package segment

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

// resetFileName marks a Reset in progress: it holds the offset the emptied
// log starts at. Written (atomically) before any segment is removed and
// removed once the new empty segment exists, so Open can finish the job.
const resetFileName = "reset"

// open does the work of Open.
func (l *Log) open() error {
	if err := l.finishReset(); err != nil {
		return err
	}
	bases, sizes, sidecars, err := listDir(l.dir)
	if err != nil {
		return err
	}
	if len(bases) == 0 {
		if err := l.createEmpty(0); err != nil {
			return err
		}
		bases, sizes = []int64{0}, map[int64]int64{0: 0}
	}
	for i, base := range bases {
		s := newSeg(l.dir, base)
		l.segs = append(l.segs, s)
		if i == len(bases)-1 {
			break
		}
		s.sealed = true
		if err := l.loadSealed(s, sidecars[base], sizes[base], bases[i+1]); err != nil {
			return err
		}
	}
	tail := l.segs[len(l.segs)-1]
	bad, err := tail.scan(sizes[tail.base], -1, l.opts.IndexIntervalBytes)
	if err != nil {
		return fmt.Errorf("segment: scan %s: %w", tail.path, err)
	}
	if bad != nil {
		if err := l.repairTail(tail, bad, sizes[tail.base]); err != nil {
			return err
		}
	}
	if _, err := os.Stat(sidecarPath(tail.path)); err == nil {
		_ = os.Remove(sidecarPath(tail.path)) // stale: a cut made it the tail again
	}
	l.wf, err = os.OpenFile(tail.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("segment: %w", err)
	}
	return nil
}

// loadSealed indexes a sealed segment from its sidecar, or by scanning it
// (then fsyncing it and writing the sidecar). Damage is not repaired: reads
// past it return ErrCorrupt.
func (l *Log) loadSealed(s *seg, sidecar string, size, nextBase int64) error {
	if sidecar != "" {
		b, err := os.ReadFile(sidecar)
		if err == nil {
			err = decodeSidecar(s, b, size)
		}
		if err == nil && s.next == nextBase {
			return nil
		}
		l.log.Info("segment: rebuilding index sidecar", "segment", s.path, "reason", err)
	}
	bad, err := s.scan(size, -1, l.opts.IndexIntervalBytes)
	if err != nil {
		return fmt.Errorf("segment: scan %s: %w", s.path, err)
	}
	if bad != nil || s.next != nextBase {
		reason, pos := "segment ends before the next one starts", s.size
		if bad != nil {
			reason, pos = bad.reason, bad.pos
		}
		l.log.Error("segment: damaged sealed segment: entries past the damage are unreadable (ErrCorrupt)",
			"segment", s.path, "byte", pos, "reason", reason, "readable_up_to", s.next)
		s.size, s.next = size, nextBase // lookups land here and report the damage
		return nil
	}
	if err := syncFile(s.path); err != nil {
		return err
	}
	l.writeSidecar(s)
	return nil
}

// repairTail cuts the tail after its last good frame and records it.
func (l *Log) repairTail(tail *seg, bad *badFrame, size int64) error {
	if err := truncateFile(tail.path, bad.pos); err != nil {
		return err
	}
	l.repair = &RepairReport{Segment: tail.path, DroppedBytes: size - bad.pos, FirstDroppedOffset: tail.next, Reason: bad.reason}
	l.log.Warn("segment: repaired damaged tail", "segment", tail.path, "reason", bad.reason,
		"dropped_bytes", size-bad.pos, "next_offset", tail.next)
	return nil
}

// finishReset completes a Reset that a crash interrupted.
func (l *Log) finishReset() error {
	b, err := os.ReadFile(filepath.Join(l.dir, resetFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("segment: %w", err)
	}
	next, ok := decodeReset(b)
	if !ok {
		// Torn before its rename could not happen (it is written atomically);
		// refuse rather than guess where the log starts.
		return fmt.Errorf("%w: %s: invalid reset marker", ErrCorrupt, l.dir)
	}
	return l.clearFiles(next)
}

// clearFiles removes every segment file and creates an empty one at next,
// through the reset marker. The files must not be open for writing.
func (l *Log) clearFiles(next int64) error {
	marker := filepath.Join(l.dir, resetFileName)
	if err := writeFileAtomic(marker, encodeReset(next)); err != nil {
		return err
	}
	bases, _, sidecars, err := listDir(l.dir)
	if err != nil {
		return err
	}
	for _, b := range bases {
		if err := os.Remove(filepath.Join(l.dir, segmentName(b))); err != nil {
			return fmt.Errorf("segment: %w", err)
		}
	}
	for _, p := range sidecars {
		_ = os.Remove(p)
	}
	if err := l.createEmpty(next); err != nil {
		return err
	}
	if err := os.Remove(marker); err != nil {
		return fmt.Errorf("segment: %w", err)
	}
	return syncDir(l.dir)
}

// createEmpty creates an empty segment file at base, durably.
func (l *Log) createEmpty(base int64) error {
	f, err := os.OpenFile(filepath.Join(l.dir, segmentName(base)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("segment: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("segment: %w", err)
	}
	return syncDir(l.dir)
}

func encodeReset(next int64) []byte {
	b := binary.LittleEndian.AppendUint64([]byte("SKRS"), uint64(next))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeReset(b []byte) (int64, bool) {
	if len(b) != 16 || string(b[:4]) != "SKRS" || binary.LittleEndian.Uint32(b[12:]) != crc32.Checksum(b[:12], castagnoli) {
		return 0, false
	}
	next := int64(binary.LittleEndian.Uint64(b[4:]))
	return next, next >= 0
}

// listDir returns the segment files' base offsets (ascending), their
// sizes, and the sidecars by base offset. Leftover temp files are removed.
func listDir(dir string) (bases []int64, sizes map[int64]int64, sidecars map[int64]string, err error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("segment: %w", err)
	}
	sizes, sidecars = map[int64]int64{}, map[int64]string{}
	for _, de := range des {
		name := de.Name()
		if strings.HasSuffix(name, ".tmp") {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		base, suffix, ok := parseName(name)
		switch {
		case !ok || de.IsDir():
		case suffix == segSuffix:
			fi, err := de.Info()
			if err != nil {
				return nil, nil, nil, fmt.Errorf("segment: %w", err)
			}
			bases = append(bases, base)
			sizes[base] = fi.Size()
		case suffix == idxSuffix:
			sidecars[base] = filepath.Join(dir, name)
		}
	}
	slices.Sort(bases)
	for base, p := range sidecars {
		if _, ok := sizes[base]; !ok {
			_ = os.Remove(p) // orphan
			delete(sidecars, base)
		}
	}
	return bases, sizes, sidecars, nil
}

// parseName splits %020d.seg / %020d.idx.
func parseName(name string) (base int64, suffix string, ok bool) {
	if len(name) != 24 || name[20] != '.' {
		return 0, "", false
	}
	if suffix = name[20:]; suffix != segSuffix && suffix != idxSuffix {
		return 0, "", false
	}
	for _, c := range name[:20] {
		if c < '0' || c > '9' {
			return 0, "", false
		}
	}
	base, err := strconv.ParseInt(name[:20], 10, 64)
	return base, suffix, err == nil
}

// truncateFile cuts path to size bytes and makes it durable.
func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("segment: %w", err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("segment: cut %s: %w", path, err)
	}
	return nil
}

// syncFile fsyncs the file at path.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("segment: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("segment: fsync %s: %w", path, err)
	}
	return nil
}
