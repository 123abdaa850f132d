package zone

import "syscall"

// osYield gives the core to another runnable thread, if any
// (sched_yield(2)).
func osYield() { _, _, _ = syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }
