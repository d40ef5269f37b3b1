package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadGossipKey(t *testing.T) {
	dir := t.TempDir()
	key := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", key+"\n")
	for _, tc := range []struct {
		key, file, err string
		want           []byte
	}{
		{"", "", "", nil},
		{key, "", "", []byte("0123456789abcdef0123456789abcdef")},
		{"", good, "", []byte("0123456789abcdef0123456789abcdef")},
		{"", write("empty", " \n"), "is empty", nil},
		{"", write("short", "c2hvcnQ=\n"), "the key is 5 bytes", nil},
		{"", write("junk", "not base64!\n"), "not base64", nil},
		{key, good, "both given", nil},
		{"", write("two", key+"\n\nc2hvcnQ=\n"), "key 2: the key is 5 bytes", nil},
	} {
		got, _, err := readGossipKey(tc.key, tc.file)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("key %q file %q: err %v, want %q", tc.key, tc.file, err, tc.err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("key %q file %q: %q %v, want %q", tc.key, tc.file, got, err, tc.want)
		}
	}
}

// A key file with several keys: the first encrypts, the others are
// accepted (rotation).
func TestReadGossipKeyring(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(p, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n  \nYWJjZGVmZ2hpamtsbW5vcA==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	primary, more, err := readGossipKey("", p)
	if err != nil || string(primary) != "0123456789abcdef0123456789abcdef" || len(more) != 1 || string(more[0]) != "abcdefghijklmnop" {
		t.Fatalf("%q %q %v", primary, more, err)
	}
}
