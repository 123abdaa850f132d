//go:build !linux

package zone

// osYield does nothing where sched_yield is not used (see yield_linux.go).
func osYield() {}
