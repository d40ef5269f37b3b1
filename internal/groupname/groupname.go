// Package groupname holds the rule for consumer group names, shared by the
// broker (which refuses anything else) and the client (which says so before
// asking a broker): 1 to 249 characters among letters, digits, '.', '_',
// '-' and ':', not starting with '-' or '.'. Group names appear in
// records of the internal offsets topic, in logs and in metric labels, so
// the rule keeps them printable and short.
package groupname

import "fmt"

// MaxLen is the longest group name.
const MaxLen = 249

// Check returns why name is not a valid group name, or nil.
func Check(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("the group name is empty")
	case len(name) > MaxLen:
		return fmt.Errorf("group name of %d characters, at most %d", len(name), MaxLen)
	case name[0] == '-' || name[0] == '.':
		return fmt.Errorf("group name %q starts with %q", name, name[0])
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':') {
			return fmt.Errorf("group name %q has %q at position %d; use letters, digits, '.', '_', '-' and ':'", name, c, i)
		}
	}
	return nil
}
