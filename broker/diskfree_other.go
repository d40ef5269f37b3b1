//go:build !linux && !darwin

package broker

// diskFree is unknown on this platform: readiness does not check it.
func diskFree(dir string) (uint64, bool) { return 0, false }
