// Package zone owns zone data: it parses zone files into validated, immutable
// zones, groups them into snapshots indexed for longest-match zone selection,
// publishes snapshots through a lock-free Store (one atomic pointer swap per
// change), and answers queries per RFC 1034 section 4.3.2.
//
// A published Snapshot, and every Zone and dns.RR reachable from it, is
// immutable: callers must not modify them. Store.Load is safe from any
// goroutine and takes no lock.
//
// # Loading
//
// ParseFile reads a zone with the miekg/dns ZoneParser ($ORIGIN, $TTL,
// $INCLUDE, $GENERATE) and rejects, with "file:line: reason" errors (all of
// them, joined): a syntax error; a class other than IN; no SOA, an SOA that
// is not at the apex or a second one; no NS at the apex; a record outside the
// origin; a CNAME beside other data (RRSIG and NSEC excepted, RFC 2181
// section 10.1) or a second CNAME; a second DNAME at one owner; NS at a
// wildcard owner; a record without RDATA. Identical records are dropped
// (RFC 2181 section 5). Data below a DNAME loads but is never answered (it
// is occluded, as in Knot DNS, which only warns). RRsets with differing TTLs
// are kept as written. $INCLUDE may name files inside the zones directory
// only, also through "..", absolute paths and symbolic links.
//
// # Storage
//
// A zone keeps its data in a few large arrays without pointers, which the
// garbage collector does not scan: a GC cycle costs about the same with a
// 1M-record zone live as without it. Every canonical owner name (lower
// case, escaped as miekg/dns unpacks names from the wire) has a node, and
// so does every ancestor of one up to the apex: empty non-terminals are
// nodes without RRsets. The names sit in one string per zone (an empty
// non-terminal's is a suffix of a name made before it); the nodes in one
// array, each with its name's offset and length, flags, and the range of
// its RRsets in the zone's array of RRsets; an open-addressing hash table
// of node indexes (hash/maphash) finds a node by name. The RRs are kept in
// wire form in one byte array (records.go), but for the few that a
// referral sends, kept as dns.RR objects. Finding a node or an RRset does
// not allocate; Lookup unpacks the RRs it answers with (a referral, an
// NXDOMAIN or a NODATA answer needs none), while the server's fast path
// copies precomputed answers and unpacks nothing. Each RRset has an index into the zone's precomputed
// wire-format answers (wire.go), which a copy of the parsed zone carries
// (Zone.Precompute), so that the Loader can serve a zone as soon as it is
// parsed and add the answers when they are built, without writing
// anything published. A large file is parsed in parallel parts when they
// cannot depend on each other (split.go).
//
// # Lookup
//
// Snapshot.Lookup returns data only, into a caller-owned Response; the
// server turns it into a message (and applies RFC 8482 to ANY, for which
// Lookup returns every RRset of the node). Referrals carry in-domain glue
// only: addresses of NS targets at or below the zone cut.
package zone
