package chaos

// Storage faults: damage to a STOPPED broker's data directory, as a disk or
// an operator could do it, for the storage scenarios of RELIABILITY.md. Each
// function picks a partition (a topics/<topic>/<partition>/wal directory) by
// the rng among those present, so a run is repeatable from its seed, and
// returns one line for the run report naming the file and byte offset.
//
// The on-disk layouts they rely on. The wal engine (package wal): a
// partition log is a directory of tidwall segment files named by 20 digits;
// each entry is uvarint(length) followed by a frame of a 4-byte CRC-32C, a
// 25-byte header and the payload (one record batch). Beside them:
// %020d.idx sidecars and start-offset. The journal engine (package
// segment): files named %020d.seg, each entry a little-endian uint32 length
// followed by the same shape (4-byte CRC-32C, version, 24 bytes of offsets
// and timestamp, payload), beside %020d.idx sidecars. In the partition
// directory: leader-epoch and producer checkpoints and log.checkpoint
// (written by a clean shutdown).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// frameHeaderLen is the fixed part of a wal frame: CRC, version, base
// offset, offset delta, max timestamp.
const frameHeaderLen = 29

// ErrNoTarget: the data directory holds no partition log the fault can
// damage (none at all, or none with enough entries).
var ErrNoTarget = errors.New("chaos: no partition log to damage")

// walEntry is one tidwall entry of a segment file.
type walEntry struct {
	pos  int64 // where its uvarint length starts
	hdr  int   // length of the uvarint
	size int64 // length of the frame after the uvarint
}

// PartitionLogs lists the partition log directories (…/topics/T/P/wal) of
// a broker data directory that hold at least one segment file, sorted.
func PartitionLogs(dataDir string) ([]string, error) {
	dirs, err := filepath.Glob(filepath.Join(dataDir, "topics", "*", "*", "wal"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range dirs {
		if strings.HasPrefix(filepath.Base(filepath.Dir(filepath.Dir(d))), ".") {
			continue // a topic being deleted
		}
		if segs, _ := segmentFiles(d); len(segs) > 0 {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out, nil
}

// segmentFiles lists a log directory's segment files in order.
func segmentFiles(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, de := range des {
		n := strings.TrimSuffix(de.Name(), segSuffix)
		if len(n) == 20 && !de.IsDir() && strings.Trim(n, "0123456789") == "" {
			out = append(out, filepath.Join(dir, de.Name()))
		}
	}
	slices.Sort(out) // fixed width: lexical order is numeric order
	return out, nil
}

// segSuffix ends the journal engine's segment file names.
const segSuffix = ".seg"

// entryLen reads the length prefix of the entry at the start of b: uvarint
// for tidwall files, uint32 for the journal engine's .seg files. n <= 0:
// none there.
func entryLen(b []byte, seg bool) (size uint64, n int) {
	if !seg {
		return binary.Uvarint(b)
	}
	if len(b) < 4 || binary.LittleEndian.Uint32(b) == 0 {
		return 0, 0
	}
	return uint64(binary.LittleEndian.Uint32(b)), 4
}

// appendLen appends an entry's length prefix in the file's format.
func appendLen(b []byte, size int, seg bool) []byte {
	if seg {
		return binary.LittleEndian.AppendUint32(b, uint32(size))
	}
	return binary.AppendUvarint(b, uint64(size))
}

// entries parses a segment file into its entries, stopping at the first
// incomplete one.
func entries(path string) ([]walEntry, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	seg := strings.HasSuffix(path, segSuffix)
	var out []walEntry
	for pos := 0; pos < len(data); {
		size, n := entryLen(data[pos:], seg)
		if n <= 0 || size > uint64(len(data)-pos-n) {
			break
		}
		out = append(out, walEntry{pos: int64(pos), hdr: n, size: int64(size)})
		pos += n + int(size)
	}
	return out, data, nil
}

// pickTail chooses a partition log and returns the path and entries of the
// segment holding its last entry: the tail, or the segment sealed just
// before an empty tail.
func pickTail(dataDir string, rng *rand.Rand) (string, []walEntry, error) {
	logs, err := PartitionLogs(dataDir)
	if err != nil {
		return "", nil, err
	}
	type cand struct {
		path string
		ents []walEntry
	}
	var cands []cand
	for _, d := range logs {
		segs, err := segmentFiles(d)
		if err != nil || len(segs) == 0 {
			continue
		}
		// The tail, or the segment before an empty tail (tidwall starts a
		// new, empty segment right after an entry fills one).
		for i := len(segs) - 1; i >= max(0, len(segs)-2); i-- {
			ents, _, err := entries(segs[i])
			if err == nil && len(ents) > 0 {
				cands = append(cands, cand{segs[i], ents})
				break
			}
		}
	}
	if len(cands) == 0 {
		return "", nil, fmt.Errorf("%w in %s", ErrNoTarget, dataDir)
	}
	c := cands[rng.IntN(len(cands))]
	return c.path, c.ents, nil
}

// TornTail cuts a partition log's last segment in the middle of its last
// entry, as a crash during a write could (or a disk losing the end of a
// file). The entry is fsynced data the broker may have acknowledged.
func TornTail(dataDir string, rng *rand.Rand) (string, error) {
	path, ents, err := pickTail(dataDir, rng)
	if err != nil {
		return "", err
	}
	e := ents[len(ents)-1]
	full := int64(e.hdr) + e.size
	cut := e.pos + 1 + rng.Int64N(full-1) // keep 1..full-1 bytes of it
	if err := os.Truncate(path, cut); err != nil {
		return "", err
	}
	return fmt.Sprintf("torn tail: %s cut at byte %d, inside its last entry at bytes [%d, %d)", path, cut, e.pos, e.pos+full), nil
}

// ZeroTail appends 4 KiB of zeros to a partition log's last segment, as a
// file system that extended a file but not its data could leave it.
func ZeroTail(dataDir string, rng *rand.Rand) (string, error) {
	path, _, err := pickTail(dataDir, rng)
	if err != nil {
		return "", err
	}
	return appendTo(path, make([]byte, 4096), "zero-filled tail")
}

// GarbageTail appends a few bytes to a partition log's last segment that
// parse as tidwall entries (valid uvarint lengths, the data complete) but
// whose frames are not valid: a wrong CRC over random header and payload.
func GarbageTail(dataDir string, rng *rand.Rand) (string, error) {
	path, _, err := pickTail(dataDir, rng)
	if err != nil {
		return "", err
	}
	var buf []byte
	for range 1 + rng.IntN(4) {
		n := frameHeaderLen + rng.IntN(200)
		frame := make([]byte, n)
		for i := range frame {
			frame[i] = byte(rng.UintN(256))
		}
		frame[4] = 1 // the current frame version: only the CRC gives it away
		crc := crc32.Checksum(frame[4:], crc32.MakeTable(crc32.Castagnoli))
		if binary.LittleEndian.Uint32(frame) == crc {
			frame[0] ^= 0xff
		}
		buf = appendLen(buf, n, strings.HasSuffix(path, segSuffix))
		buf = append(buf, frame...)
	}
	return appendTo(path, buf, "garbage tail (frames with bad CRCs)")
}

func appendTo(path string, b []byte, what string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return "", err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %d bytes appended to %s at byte %d", what, len(b), path, fi.Size()), nil
}

// BitFlip flips one bit in the payload of an entry below a partition log's
// tail: in a sealed segment if the log has any, else in an early entry (not
// the last) of its only segment. A silent disk error of this kind is what
// the per-entry CRC exists to catch.
func BitFlip(dataDir string, rng *rand.Rand) (string, error) {
	logs, err := PartitionLogs(dataDir)
	if err != nil {
		return "", err
	}
	type cand struct {
		path string
		ents []walEntry // entries that may be damaged
	}
	var cands []cand
	for _, d := range logs {
		segs, err := segmentFiles(d)
		if err != nil {
			continue
		}
		var cs []cand
		for _, s := range segs[:len(segs)-1] { // sealed segments
			if ents, _, err := entries(s); err == nil && len(ents) > 0 {
				cs = append(cs, cand{s, ents})
			}
		}
		if len(cs) == 0 && len(segs) == 1 {
			// Only the tail: an entry in its first half, never the last.
			if ents, _, err := entries(segs[0]); err == nil && len(ents) >= 2 {
				cs = append(cs, cand{segs[0], ents[:max(1, len(ents)/2)]})
			}
		}
		if len(cs) > 0 {
			cands = append(cands, cs[rng.IntN(len(cs))])
		}
	}
	for len(cands) > 0 {
		i := rng.IntN(len(cands))
		c := cands[i]
		var ok []walEntry
		for _, e := range c.ents {
			if e.size > frameHeaderLen {
				ok = append(ok, e)
			}
		}
		if len(ok) == 0 {
			cands = slices.Delete(cands, i, i+1)
			continue
		}
		e := ok[rng.IntN(len(ok))]
		payload := e.pos + int64(e.hdr) + frameHeaderLen
		at := payload + rng.Int64N(e.size-frameHeaderLen)
		bit := byte(1) << rng.UintN(8)
		if err := flipBit(c.path, at, bit); err != nil {
			return "", err
		}
		return fmt.Sprintf("bit flip: %s byte %d (mask %#02x), in the payload of the entry at bytes [%d, %d)",
			c.path, at, bit, e.pos, e.pos+int64(e.hdr)+e.size), nil
	}
	return "", fmt.Errorf("%w below a tail in %s", ErrNoTarget, dataDir)
}

func flipBit(path string, at int64, mask byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	b := make([]byte, 1)
	_, err = f.ReadAt(b, at)
	if err == nil {
		b[0] ^= mask
		_, err = f.WriteAt(b, at)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// WipeDataDir removes everything in a broker's data directory (the
// directory itself stays): the broker comes back empty under the same node
// id, as after a disk replacement.
func WipeDataDir(dataDir string) (string, error) {
	des, err := os.ReadDir(dataDir)
	if err != nil {
		return "", err
	}
	for _, de := range des {
		if err := os.RemoveAll(filepath.Join(dataDir, de.Name())); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("wiped data dir %s (%d entries removed)", dataDir, len(des)), nil
}
