//go:build !linux

package broker

// processHandles is unknown off Linux: checks that use it pass.
func processHandles() (open, limit int, ok bool) { return 0, 0, false }
