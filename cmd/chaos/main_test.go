package main

import (
	"bytes"
	"strings"
	"testing"
)

// Bad usage is refused before anything is built or started, naming what
// to fix.
func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-scenario", "earthquake"}, `unknown scenario "earthquake"`},
		{[]string{"-scenario", "kill,nope"}, `unknown scenario "nope"`},
		{[]string{"-runs", "0"}, "-runs must be at least 1"},
		{[]string{"-duration", "1s"}, "-duration at least 10s"},
		{[]string{"-rate", "0"}, "-rate, -partitions and -keys at least 1"},
		{[]string{"-key-writers", "-1"}, "-key-writers at least 0"},
		{[]string{"-keys", "0"}, "-keys at least 1"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-seed", "x"}, "invalid value"},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		if !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: stderr %q does not say %q", tc.args, errb.String(), tc.want)
		}
		if out.Len() != 0 {
			t.Errorf("%v: printed %q on stdout", tc.args, out.String())
		}
	}
}
