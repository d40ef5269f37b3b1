package groupname

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"billing", true},
		{"team.a:billing_v2-x", true},
		{strings.Repeat("g", MaxLen), true},
		{"", false},
		{strings.Repeat("g", MaxLen+1), false},
		{"-x", false},
		{".hidden", false},
		{"a/b", false},
		{"a b", false},
		{"é", false},
		{"a\x00b", false},
	} {
		if err := Check(tc.name); (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
