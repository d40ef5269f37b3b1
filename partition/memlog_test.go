package partition

import (
	"fmt"
	"os"
	"sync"

	"github.com/skeinlog/skein/wal"
)

// memLog is the in-memory twin of wal.Log (STYLE H5), with fault injection.
// Sealed "segments" are every segEntries entries.
type memLog struct {
	mu         sync.Mutex
	entries    []wal.Entry
	start      int64 // next offset when empty
	segEntries int
	closed     bool
	failNext   error // returned by the next Append, which writes nothing
	failReopen error // returned by the next reopen
	appends    int   // Append calls (group commits)
}

func newMemLog() *memLog { return &memLog{segEntries: 4} }

// reopen is the twin of closing and opening the log again.
func (m *memLog) reopen() (Log, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failReopen; err != nil {
		m.failReopen = nil
		return nil, err
	}
	m.closed = false
	return m, nil
}

func (m *memLog) Append(entries ...wal.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return wal.ErrClosed
	}
	if m.failNext != nil {
		err := m.failNext
		m.failNext = nil
		return err
	}
	next := m.nextLocked()
	for _, e := range entries {
		if e.BaseOffset != next || e.LastOffset < e.BaseOffset {
			return fmt.Errorf("%w: entry at %d, want %d", wal.ErrOutOfOrder, e.BaseOffset, next)
		}
		next = e.LastOffset + 1
	}
	for _, e := range entries {
		e.Data = append([]byte(nil), e.Data...)
		m.entries = append(m.entries, e)
	}
	m.appends++
	return nil
}

func (m *memLog) Write(entries ...wal.Entry) error { return m.Append(entries...) }
func (m *memLog) Sync() error                      { return nil }

func (m *memLog) nextLocked() int64 {
	if len(m.entries) == 0 {
		return m.start
	}
	return m.entries[len(m.entries)-1].LastOffset + 1
}

func (m *memLog) NextOffset() int64 { m.mu.Lock(); defer m.mu.Unlock(); return m.nextLocked() }
func (m *memLog) StartOffset() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.entries) == 0 {
		return m.start
	}
	return m.entries[0].BaseOffset
}
func (m *memLog) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, e := range m.entries {
		n += int64(len(e.Data))
	}
	return n
}

func (m *memLog) ReadEntries(offset int64, maxBytes int, limit int64, fn func(wal.Entry) error) (int64, error) {
	m.mu.Lock()
	ents := m.entries
	start := m.start
	if len(ents) > 0 {
		start = ents[0].BaseOffset
	}
	m.mu.Unlock()
	if offset < start {
		return offset, wal.ErrOffsetOutOfRange
	}
	next, n := offset, 0
	for _, e := range ents {
		if e.LastOffset < offset {
			continue
		}
		if e.BaseOffset >= limit || (n > 0 && n >= maxBytes) {
			break
		}
		if err := fn(e); err != nil {
			return next, err
		}
		n += len(e.Data)
		next = e.LastOffset + 1
	}
	return next, nil
}

func (m *memLog) Read(dst []byte, offset int64, maxBytes int, limit int64) ([]byte, int64, error) {
	next, err := m.ReadEntries(offset, maxBytes, limit, func(e wal.Entry) error {
		dst = append(dst, e.Data...)
		return nil
	})
	return dst, next, err
}

func (m *memLog) OffsetForTimestamp(ts int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.entries {
		if e.MaxTimestamp >= ts {
			return e.BaseOffset, nil
		}
	}
	return m.nextLocked(), nil
}

func (m *memLog) TruncateTo(offset int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	oldStart := m.start
	if len(m.entries) > 0 {
		oldStart = m.entries[0].BaseOffset
	}
	i := 0
	for i < len(m.entries) && m.entries[i].LastOffset < offset {
		i++
	}
	m.entries = m.entries[:i]
	if len(m.entries) == 0 {
		m.start = min(offset, oldStart)
	}
	return m.nextLocked(), nil
}

func (m *memLog) Reset(next int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries, m.start = nil, next
	return nil
}

func (m *memLog) Segments() []wal.SegmentInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	var segs []wal.SegmentInfo
	for i := 0; i < len(m.entries); i += m.segEntries {
		j := min(i+m.segEntries, len(m.entries))
		s := wal.SegmentInfo{BaseOffset: m.entries[i].BaseOffset, NextOffset: m.entries[j-1].LastOffset + 1, Sealed: j < len(m.entries) || j-i == m.segEntries}
		for _, e := range m.entries[i:j] {
			s.Bytes += int64(len(e.Data))
			s.MaxTimestamp = max(s.MaxTimestamp, e.MaxTimestamp)
		}
		segs = append(segs, s)
	}
	if n := len(segs); n > 0 {
		segs[n-1].Sealed = false
	}
	return segs
}

func (m *memLog) DeleteSegmentsBefore(offset int64) (int64, error) {
	segs := m.Segments()
	m.mu.Lock()
	defer m.mu.Unlock()
	var freed int64
	drop := 0
	for _, s := range segs {
		if !s.Sealed || s.NextOffset > offset {
			break
		}
		freed += s.Bytes
		drop += m.segEntries
	}
	m.entries = append([]wal.Entry(nil), m.entries[drop:]...)
	return freed, nil
}

func (m *memLog) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	return nil
}

func removeFile(path string) error { return os.Remove(path) }
