// Package fsutil holds the file-system habits Skein's metadata files share:
// a write that a crash leaves whole or not at all, and the directory fsync
// that makes a new or renamed name durable. (wal keeps its own copy: it is
// the leaf package and imports nothing of ours.)
package fsutil

import (
	"os"
	"path/filepath"
)

// WriteFileAtomic writes data to path via a temp file, fsync, rename and a
// directory fsync: after a crash the file is the old or the new, never a mix.
func WriteFileAtomic(path string, data []byte) error {
	return WriteFileAtomicPerm(path, data, 0o644)
}

// WriteFileAtomicPerm is WriteFileAtomic with the file's mode: a key
// written 0600 is never readable by others, not even for a moment.
func WriteFileAtomicPerm(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	werr := f.Chmod(perm)
	if werr == nil {
		_, werr = f.Write(data)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(tmp)
		return werr
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, making the names in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
