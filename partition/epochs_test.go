package partition

import "testing"

func FuzzDecodeEpochs(f *testing.F) {
	f.Add(encodeEpochs([]EpochEntry{{0, 0}, {3, 17}, {9, 100}}))
	f.Add([]byte("1\n0\n"))
	f.Add([]byte("1\n2\n5 10\n4 20\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := decodeEpochs(data)
		if err != nil {
			return
		}
		// What decodes re-encodes to a file that decodes the same.
		again, err := decodeEpochs(encodeEpochs(entries))
		if err != nil || len(again) != len(entries) {
			t.Fatalf("round trip: %v %v", again, err)
		}
		for i := range entries {
			if again[i] != entries[i] || (i > 0 && (entries[i].Epoch <= entries[i-1].Epoch || entries[i].StartOffset <= entries[i-1].StartOffset)) {
				t.Fatalf("entries %v", entries)
			}
		}
	})
}
