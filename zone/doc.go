// Package zone owns zone data: it parses zone files into validated, immutable
// zones, groups them into snapshots indexed for longest-match zone selection,
// publishes snapshots through a lock-free Store (one atomic pointer swap per
// change), and answers queries per RFC 1034 section 4.3.2.
//
// A published Snapshot, and every Zone and dns.RR reachable from it, is
// immutable: callers must not modify them. Store.Load is safe from any
// goroutine and takes no lock.
package zone
