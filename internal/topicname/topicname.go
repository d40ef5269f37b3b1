// Package topicname holds the rule for topic names, shared by the broker
// (which refuses to create anything else) and the client (which says so
// before asking a broker): [a-zA-Z0-9._-]{1,249}, not "." or "..", no
// leading "-", no reserved "__" prefix. Topic names become directory
// names, so the rule also keeps path tricks out of the data directory.
package topicname

import "fmt"

// MaxLen is the longest topic name.
const MaxLen = 249

// Check returns why name is not a valid topic name, or nil.
func Check(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("the name is empty")
	case len(name) > MaxLen:
		return fmt.Errorf("%d characters, at most %d", len(name), MaxLen)
	case name == "." || name == "..":
		return fmt.Errorf("%q is not allowed", name)
	case name[0] == '-':
		return fmt.Errorf("%q starts with '-'", name)
	case len(name) >= 2 && name[:2] == "__":
		return fmt.Errorf("%q: names starting with \"__\" are reserved", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q has %q at position %d; use letters, digits, '.', '_' and '-'", name, c, i)
		}
	}
	return nil
}
