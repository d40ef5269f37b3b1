package batch

import (
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
)

// bomb builds a batch of one record of size zero bytes with codec: a few
// KiB that inflate to size.
func bomb(t testing.TB, codec Compression, size int) View {
	t.Helper()
	b := NewBuilder(codec)
	b.Add(&Record{Value: make([]byte, size)})
	raw, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return View(raw)
}

// withDeclared rewrites the uncompressed length a compressed batch declares
// (a lie) and fixes its length and CRC, so only the inflation can tell.
func withDeclared(v View, n uint64) View {
	_, k := binary.Uvarint(v[HeaderSize:])
	out := append(append([]byte{}, v[:HeaderSize]...), binary.AppendUvarint(nil, n)...)
	out = append(out, v[HeaderSize+k:]...)
	binary.LittleEndian.PutUint32(out[offLength:], uint32(len(out)-lengthFieldEnd))
	return View(recrc(out))
}

// allocated runs f and returns the bytes it allocated.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A batch that lies about its size (declares 1 KiB, inflates to 60 MiB) is
// refused when inflation passes the declared size, having allocated about
// that much, never the 60 MiB.
func TestBombInflationStopsAtDeclaredSize(t *testing.T) {
	for _, codec := range []Compression{Gzip, Snappy, LZ4, Zstd} {
		t.Run(codec.String(), func(t *testing.T) {
			honest := bomb(t, codec, 60<<20)
			if len(honest) > 4<<20 {
				t.Fatalf("%s bomb is %d bytes: not a bomb", codec, len(honest))
			}
			if n, ok := DeclaredUncompressedLen(honest); !ok || n < 60<<20 {
				t.Fatalf("declared %d %v, want 60 MiB", n, ok)
			}
			lie := withDeclared(honest, 1<<10)
			var err error
			got := allocated(func() { _, err = Validate(lie, Limits{}) })
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("lying %s bomb: %v", codec, err)
			}
			if got > 8<<20 {
				t.Fatalf("lying %s bomb: inflating allocated %d MiB", codec, got>>20)
			}
		})
	}
}

func TestDeclaredUncompressedLen(t *testing.T) {
	if _, ok := DeclaredUncompressedLen(bomb(t, None, 100)); ok {
		t.Fatal("an uncompressed batch declares a length")
	}
	if _, ok := DeclaredUncompressedLen(View(make([]byte, HeaderSize))); ok {
		t.Fatal("a header alone declares a length")
	}
	v := bomb(t, Zstd, 5000)
	if n, ok := DeclaredUncompressedLen(v); !ok || n < 5000 || n > 5100 {
		t.Fatalf("zstd batch of one 5000-byte record declares %d %v", n, ok)
	}
}
