//go:build !unix

package broker

import "errors"

// raiseFileLimit: no open file rlimit on this platform.
func raiseFileLimit() (soft, hard uint64, err error) {
	return 0, 0, errors.New("no open file limit on this platform")
}
