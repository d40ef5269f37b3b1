package partition

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"
)

// fileStamp is what a clean close records of one file of the log's
// directory (segments, index sidecars, start-offset): enough to tell, with
// stats only, that the file was written, resized, replaced or removed since.
// Every fault a broker, a crash or the fault-injection tool can leave
// changes at least one of these fields; bit rot (which changes none) is
// left to the per-entry CRC, checked on every read.
type fileStamp struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	// Where the platform has them (linux): the inode, and its change time,
	// which no utimes can set back.
	Inode      uint64 `json:"ino,omitempty"`
	ChangeTime int64  `json:"ctime_ns,omitempty"`
}

// stampDir stamps every file of dir, sorted by name; a missing dir has
// none.
func stampDir(dir string) ([]fileStamp, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	stamps := make([]fileStamp, 0, len(ents))
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		s := fileStamp{Name: e.Name(), Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
		if !fi.Mode().IsRegular() {
			s.Size = -1 // a directory or link where none belongs: never matches
		}
		s.Inode, s.ChangeTime = inodeTimes(fi)
		stamps = append(stamps, s)
	}
	slices.SortFunc(stamps, func(a, b fileStamp) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return stamps, nil
}

// stampsChanged compares the stamps a clean close recorded with the files
// found now, and says how the first differing file changed; nil when they
// match. written is the modification time of the checkpoint holding want:
// a file stamped with a time not before it could have been written again
// within the same tick of the file system's clock without a visible change
// (git's "racy clean" problem), so it does not count as unchanged.
func stampsChanged(want, got []fileStamp, written time.Time) error {
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j == len(got) || i < len(want) && want[i].Name < got[j].Name:
			return fmt.Errorf("%s removed", want[i].Name)
		case i == len(want) || got[j].Name < want[i].Name:
			return fmt.Errorf("%s added", got[j].Name)
		}
		w, g := want[i], got[j]
		switch {
		case w.Size != g.Size:
			return fmt.Errorf("%s resized from %d to %d bytes", w.Name, w.Size, g.Size)
		case w.ModTime != g.ModTime:
			return fmt.Errorf("%s modified at %s (stamped %s)", w.Name, time.Unix(0, g.ModTime).UTC().Format(time.RFC3339Nano), time.Unix(0, w.ModTime).UTC().Format(time.RFC3339Nano))
		case w.Inode != g.Inode || w.ChangeTime != g.ChangeTime:
			return fmt.Errorf("%s replaced or its metadata changed (inode %d, ctime %d; stamped %d, %d)", w.Name, g.Inode, g.ChangeTime, w.Inode, w.ChangeTime)
		case w.ModTime >= written.UnixNano() || w.ChangeTime >= written.UnixNano():
			return fmt.Errorf("%s last written in the same clock tick as the checkpoint: a later write could be invisible", w.Name)
		}
		i++
		j++
	}
	return nil
}
