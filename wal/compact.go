package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
)

// ErrSegmentChanged: the segment CompactSegment was rewriting was
// truncated, deleted or reset meanwhile; nothing was changed. Try again
// on the log as it is now.
var ErrSegmentChanged = errors.New("wal: the segment changed while it was being compacted")

// compactSuffix names the new segment file while it is being built; it ends
// in tmpSuffix, so Open removes it if a crash left it behind.
const compactSuffix = ".compact" + tmpSuffix

// compactHook, when set (tests only), is called with the name of each step
// of CompactSegment as it passes it; a panic there stands for a crash at
// that point.
var compactHook func(step string)

// SetCompactHook sets the hook called at each step of CompactSegment
// ("built", "sidecar-removed", "renamed", "synced", "done"), for crash
// tests in other packages: a panic in it stops the compaction there, the
// files as they are. nil removes it. Not for production use.
func SetCompactHook(fn func(step string)) { compactHook = fn }

func compactStep(step string) {
	if compactHook != nil {
		compactHook(step)
	}
}

// CompactSegment rewrites the sealed segment whose first offset is base
// (never the tail): rewrite is called with each of its entries in order and
// returns the entry's new payload, or nil to keep the entry as it is. Every
// entry keeps its offsets, its max timestamp and its place (tidwall index),
// so the log's offsets, entry count and segment names do not change; only
// the payloads shrink. It returns the segment's bytes before and after.
//
// The new segment is built beside the old one (a temp file, fsynced), then
// renamed over it: a crash at any point leaves the old segment or the new
// one, never a mix (a leftover temp file is removed by Open; the index
// sidecar is removed first and rebuilt after). Appends are held off only
// for the swap, reads only while the index is replaced. If the segment was
// truncated, deleted or reset meanwhile it returns ErrSegmentChanged and
// changes nothing. When rewrite changes no entry nothing is written.
func (l *Log) CompactSegment(base int64, rewrite func(Entry) ([]byte, error)) (before, after int64, err error) {
	l.imu.RLock()
	var seg *segment
	for _, s := range l.segs {
		if s.base == base && s.sealed && s.count > 0 {
			seg = s
			break
		}
	}
	var size, valid int64
	var count uint64
	if seg != nil {
		size, valid, count = seg.size, seg.valid, seg.count
	}
	l.imu.RUnlock()
	if seg == nil {
		// Retention or a truncation may have removed it since the caller
		// looked: ErrSegmentChanged.
		return 0, 0, fmt.Errorf("%w: %s: no sealed segment starts at offset %d", ErrSegmentChanged, l.dir, base)
	}
	if valid < size {
		return size, size, &CorruptError{Path: seg.path, Pos: valid, Offset: base, Reason: "cannot compact a damaged segment"}
	}
	tmp := seg.path + compactSuffix
	ns, changed, err := l.buildCompacted(seg, size, count, tmp, rewrite)
	if err != nil || !changed {
		_ = os.Remove(tmp)
		return size, size, err
	}
	compactStep("built")
	if err := l.swapCompacted(seg, size, count, ns, tmp); err != nil {
		_ = os.Remove(tmp)
		return size, size, err
	}
	return size, ns.size, nil
}

// buildCompacted writes the rewritten segment to tmp (fsynced) and returns
// its index; changed is false (and tmp unfinished) when rewrite changed
// nothing. It reads the old file through a handle of its own, so a
// concurrent truncation that replaces the file does not disturb it (the
// swap then notices).
func (l *Log) buildCompacted(seg *segment, size int64, count uint64, tmp string, rewrite func(Entry) ([]byte, error)) (ns *segment, changed bool, err error) {
	in, err := os.Open(seg.path)
	if err != nil {
		return nil, false, fmt.Errorf("wal: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, false, fmt.Errorf("wal: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("wal: %w", cerr)
		}
	}()
	w := bufio.NewWriterSize(out, readChunk)
	c := getCursor()
	defer putCursor(c)
	c.reset(in, seg.path)
	ns = &segment{id: seg.id, path: seg.path, base: seg.base, next: seg.base, maxTS: math.MinInt64, sealed: true}
	var frame []byte
	var varint [binary.MaxVarintLen64]byte
	pos, wpos, expect, id := int64(0), int64(0), seg.base, seg.id
	for pos < size {
		data, h, flen, reason, err := c.entry(pos, size, expect)
		if err != nil {
			return nil, false, err
		}
		if reason != "" {
			return nil, false, &CorruptError{Path: seg.path, Pos: pos, Offset: expect, Reason: reason}
		}
		payload := data[frameHeaderLen:]
		np, err := rewrite(Entry{BaseOffset: h.base, LastOffset: h.last, MaxTimestamp: h.maxTS, Data: payload})
		if err != nil {
			return nil, false, err
		}
		if np == nil {
			np = payload
		} else {
			changed = true
		}
		frame = appendFrame(frame[:0], Entry{BaseOffset: h.base, LastOffset: h.last, MaxTimestamp: h.maxTS, Data: np})
		n := binary.PutUvarint(varint[:], uint64(len(frame)))
		if _, err := w.Write(varint[:n]); err != nil {
			return nil, false, fmt.Errorf("wal: %w", err)
		}
		if _, err := w.Write(frame); err != nil {
			return nil, false, fmt.Errorf("wal: %w", err)
		}
		nlen := int64(n + len(frame))
		ns.add(h, id, wpos, nlen, l.interval)
		wpos += nlen
		pos += flen
		expect = h.last + 1
		id++
	}
	if ns.count != count || ns.next != seg.next {
		return nil, false, &CorruptError{Path: seg.path, Pos: pos, Offset: expect, Reason: "segment does not hold what its index says"}
	}
	if !changed {
		return nil, false, nil
	}
	if err := w.Flush(); err != nil {
		return nil, false, fmt.Errorf("wal: %w", err)
	}
	if err := out.Sync(); err != nil {
		return nil, false, fmt.Errorf("wal: fsync %s: %w", tmp, err)
	}
	ns.points = ns.points[:len(ns.points):len(ns.points)]
	return ns, true, nil
}

// swapCompacted renames the built segment tmp over seg and replaces seg's
// index with ns's, unless seg changed since size and count were read.
func (l *Log) swapCompacted(seg *segment, size int64, count uint64, ns *segment, tmp string) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	l.imu.RLock()
	present := false
	for _, s := range l.segs {
		present = present || s == seg
	}
	same := present && seg.sealed && seg.size == size && seg.count == count
	l.imu.RUnlock()
	if !same {
		return ErrSegmentChanged
	}
	// Readers that already found the segment keep reading the old file
	// through its open handle until the index changes below.
	if _, err := seg.file(); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	// The sidecar indexes the old contents: gone (durably) before the
	// rename, so no start pairs it with the new file.
	if err := os.Remove(sidecarPath(seg.path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("wal: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		return err
	}
	compactStep("sidecar-removed")
	if err := os.Rename(tmp, seg.path); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	compactStep("renamed")
	if err := syncDir(l.dir); err != nil {
		return l.fail(err)
	}
	compactStep("synced")
	// Positions differ in the new file: no read may be in flight while the
	// index and the handle change together.
	l.rmu.Lock()
	l.imu.Lock()
	seg.points, seg.size, seg.valid = ns.points, ns.size, ns.size
	l.imu.Unlock()
	_ = seg.closeFile()
	l.rmu.Unlock()
	// tidwall may cache the old contents of a sealed segment it read.
	if err := l.tw.ClearCache(); err != nil {
		return l.fail(fmt.Errorf("clear cache: %w", err))
	}
	if err := os.WriteFile(sidecarPath(seg.path), encodeSidecar(seg), 0o640); err != nil {
		l.log.Warn("wal: cannot write index sidecar; Open will rebuild it", "segment", seg.path, "err", err)
	}
	compactStep("done")
	return nil
}
