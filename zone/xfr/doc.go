// Package xfr owns the secondary side of zone distribution: it keeps local
// copies of zones served by primaries current with SOA queries, IXFR
// (RFC 1995) and AXFR (RFC 5936) over TCP, signed with TSIG (RFC 8945)
// when configured, reacts to NOTIFY (RFC 1996) from a zone's primaries, and
// follows catalog zones (RFC 9432, version 2) to add and remove member
// zones.
//
// A Secondary does not serve anything itself. Each transferred zone is
// written, atomically (a temporary file renamed into place), as
// <state dir>/<zone>.zone, the state directory being watched by a
// zone.Loader like any zones directory: the new version is served once the
// Loader reloads it (OnChange is the moment to call Loader.Trigger), and a
// restart serves at once from disk without the primary. A transfer that
// fails, is inconsistent or does not load with zone.ParseFile never
// replaces the file in place. Catalog zones are written as
// <state dir>/<catalog>.catalog, which the Loader does not load.
//
// The SOA timers drive each zone (RFC 1034 section 4.3.5): a check every
// refresh, every retry after a failure, and the zone expires when no check
// succeeded for expire. An expired zone stays on disk (and in the Loader)
// but Expired reports it, so the server answers SERVFAIL for it rather than
// stale data. The time of the last successful check is kept as the zone
// file's modification time, so expiry survives a restart.
package xfr
