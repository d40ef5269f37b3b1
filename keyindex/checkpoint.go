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
// (int64), the entry count (uint64), count × (hash uint64, offset int64),
// then a CRC-32C (uint32) of everything before it. Big endian.
const (
	magic       = "SKKI"
	version     = 1
	headerBytes = 4 + 4 + 8 + 8
	entryBytes  = 16
)

// ErrCorrupt is returned by Load for a checkpoint that is damaged or not
// a checkpoint: rebuild the index from the log.
var ErrCorrupt = errors.New("keyindex: checkpoint damaged")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Save writes the committed entries to path (through a temporary file,
// fsync and rename: a crash leaves the old file or the new one). The
// overlay is not saved: after Load, the caller indexes the records from
// Committed to its log end again.
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
	binary.BigEndian.PutUint64(b[16:], uint64(ix.base.n))
	w.Write(b[:])
	ix.base.each(func(h uint64, off int64) {
		var e [entryBytes]byte
		binary.BigEndian.PutUint64(e[:], h)
		binary.BigEndian.PutUint64(e[8:], uint64(off))
		w.Write(e[:])
	})
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

// Load reads a checkpoint written by Save. The index ends at its committed
// offset; a damaged file gives ErrCorrupt (with where), a missing one the
// os error (os.ErrNotExist).
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
	committed := int64(binary.BigEndian.Uint64(b[8:]))
	n := binary.BigEndian.Uint64(b[16:])
	if committed < 0 || n > uint64(st.Size()) || int64(headerBytes+n*entryBytes+4) != st.Size() {
		return nil, fmt.Errorf("%w: %s: %d entries do not fit its %d bytes", ErrCorrupt, path, n, st.Size())
	}
	ix := New(committed, hash)
	ix.base = newTable(int(n))
	for i := uint64(0); i < n; i++ {
		var e [entryBytes]byte
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return nil, fmt.Errorf("%w: %s: entry %d: %v", ErrCorrupt, path, i, err)
		}
		crc.Write(e[:])
		h, off := binary.BigEndian.Uint64(e[:]), int64(binary.BigEndian.Uint64(e[8:]))
		if h == 0 || off < 0 || off >= committed {
			return nil, fmt.Errorf("%w: %s: entry %d (hash %#x, offset %d) outside the committed %d", ErrCorrupt, path, i, h, off, committed)
		}
		ix.base.put(h, off)
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
