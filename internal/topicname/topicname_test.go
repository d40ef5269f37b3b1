package topicname

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"orders", ""},
		{"a.b_c-D9", ""},
		{"bæd", `"b\u00e6d" has U+00E6 'æ' at byte 1`},
		{"日本", `"\u65e5\u672c" has U+65E5 '日' at byte 0`},
		{"a b", `"a b" has U+0020 at byte 1`},
		{"a/b", `"a/b" has U+002F '/' at byte 1`},
		{"a\x07", `"a\a" has U+0007 at byte 1`},
		{"a\xc3", `"a\xc3" has byte 0xC3 (not UTF-8) at byte 1`},
		{"", "empty"},
		{"..", "not allowed"},
		{"-x", "starts with '-'"},
		{"__x", "reserved"},
		{strings.Repeat("a", 250), "at most 249"},
	} {
		err := Check(c.name)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Check(%q): %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("Check(%q) = %v, want it to say %s", c.name, err, c.want)
		}
	}
}
