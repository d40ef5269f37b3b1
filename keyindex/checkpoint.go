package keyindex

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/skeinlog/skein/internal/fsutil"
)

// Checkpoint file: magic "SKKI", version (uint32), the committed offset
// (int64), the end offset (int64), the table's entry count (uint64), the
// overlay's entry count (uint64), the table's entries and then the
// overlay's in offset order, each (hash uint64, offset int64), then a
// CRC-32C (uint32) of everything before it. Big endian.
const (
	magic       = "SKKI"
	version     = 2
	headerBytes = 4 + 4 + 8 + 8 + 8 + 8
	entryBytes  = 16
)

// ErrCorrupt is returned by Load for a checkpoint that is damaged or not
// a checkpoint: rebuild the index from the log.
var ErrCorrupt = errors.New("keyindex: checkpoint damaged")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Save writes the index to path, the committed table and the overlay
// (through a temporary file, fsync and rename: a crash leaves the old file
// or the new one), so that Load gives the index as it is, up to End: the
// caller reads no log if the log ends there.
func (ix *Index) Save(path string) (err error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	crc := crc32.New(castagnoli)
	w := bufio.NewWriterSize(io.MultiWriter(f, crc), 1<<16)
	var b [headerBytes]byte
	copy(b[:4], magic)
	binary.BigEndian.PutUint32(b[4:], version)
	binary.BigEndian.PutUint64(b[8:], uint64(ix.committed))
	binary.BigEndian.PutUint64(b[16:], uint64(ix.end))
	binary.BigEndian.PutUint64(b[24:], uint64(ix.base.n))
	binary.BigEndian.PutUint64(b[32:], uint64(len(ix.pending)))
	w.Write(b[:])
	put := func(h uint64, off int64) {
		var e [entryBytes]byte
		binary.BigEndian.PutUint64(e[:], h)
		binary.BigEndian.PutUint64(e[8:], uint64(off))
		w.Write(e[:])
	}
	ix.base.each(put)
	for _, e := range ix.pending {
		put(e.h, e.off)
	}
	if err = w.Flush(); err != nil {
		return err
	}
	if err = binary.Write(f, binary.BigEndian, crc.Sum32()); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(path))
}

// Load reads a checkpoint written by Save: the index as it was saved, up
// to its End. A damaged file gives ErrCorrupt (with where), a missing one
// the os error (os.ErrNotExist).
func Load(path string, hash func([]byte) uint64) (*Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	crc := crc32.New(castagnoli)
	r := bufio.NewReaderSize(f, 1<<16)
	var b [headerBytes]byte
	_, err = io.ReadFull(r, b[:])
	crc.Write(b[:])
	if err != nil || string(b[:4]) != magic {
		return nil, fmt.Errorf("%w: %s: not a key index checkpoint", ErrCorrupt, path)
	}
	if v := binary.BigEndian.Uint32(b[4:]); v != version {
		return nil, fmt.Errorf("%w: %s: version %d, this broker reads %d", ErrCorrupt, path, v, version)
	}
	committed, end := int64(binary.BigEndian.Uint64(b[8:])), int64(binary.BigEndian.Uint64(b[16:]))
	n, m := binary.BigEndian.Uint64(b[24:]), binary.BigEndian.Uint64(b[32:])
	size := uint64(st.Size())
	if committed < 0 || end < committed || n > size || m > size || headerBytes+(n+m)*entryBytes+4 != size {
		return nil, fmt.Errorf("%w: %s: %d+%d entries do not fit its %d bytes", ErrCorrupt, path, n, m, size)
	}
	ix := New(committed, hash)
	ix.end = end
	ix.base = newTable(int(n))
	prev := committed - 1
	for i := uint64(0); i < n+m; i++ {
		var e [entryBytes]byte
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return nil, fmt.Errorf("%w: %s: entry %d: %v", ErrCorrupt, path, i, err)
		}
		crc.Write(e[:])
		h, off := binary.BigEndian.Uint64(e[:]), int64(binary.BigEndian.Uint64(e[8:]))
		switch {
		case i < n && (h == 0 || off < 0 || off >= committed):
			return nil, fmt.Errorf("%w: %s: entry %d (hash %#x, offset %d) outside the committed %d", ErrCorrupt, path, i, h, off, committed)
		case i < n:
			ix.base.put(h, off)
		case h == 0 || off <= prev || off >= end:
			return nil, fmt.Errorf("%w: %s: overlay entry %d (hash %#x, offset %d) out of order or outside [%d, %d)", ErrCorrupt, path, i-n, h, off, committed, end)
		default:
			ix.pending = append(ix.pending, entry{h, off})
			ix.latest[h] = off
			prev = off
		}
	}
	sum := crc.Sum32()
	var want uint32
	if err := binary.Read(r, binary.BigEndian, &want); err != nil || want != sum {
		return nil, fmt.Errorf("%w: %s: checksum mismatch", ErrCorrupt, path)
	}
	if ix.base.n != int(n) {
		return nil, fmt.Errorf("%w: %s: %d entries, %d distinct hashes", ErrCorrupt, path, n, ix.base.n)
	}
	return ix, nil
}
