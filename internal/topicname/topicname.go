// Package topicname holds the rule for topic names, shared by the broker
// (which refuses to create anything else) and the client (which says so
// before asking a broker): [a-zA-Z0-9._-]{1,249}, not "." or "..", no
// leading "-", no reserved "__" prefix. Topic names become directory
// names, so the rule also keeps path tricks out of the data directory.
package topicname

import (
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

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
	for i, r := range name {
		if !allowed(r) {
			return fmt.Errorf("%s has %s at byte %d; use ASCII letters, digits, '.', '_' and '-'", strconv.QuoteToASCII(name), describe(name, i, r), i)
		}
	}
	return nil
}

func allowed(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// describe names the character r found at byte i of name readably: its
// code point, with the character itself when it prints, or the byte when
// name is not UTF-8 there.
func describe(name string, i int, r rune) string {
	if r == utf8.RuneError {
		if _, size := utf8.DecodeRuneInString(name[i:]); size <= 1 {
			return fmt.Sprintf("byte 0x%02X (not UTF-8)", name[i])
		}
	}
	if unicode.IsPrint(r) && r != ' ' {
		return fmt.Sprintf("%U '%c'", r, r)
	}
	return fmt.Sprintf("%U", r)
}
