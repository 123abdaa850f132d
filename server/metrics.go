package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/anyns/anyns/zone"
)

// Query metrics. Every query that gets past the header check is counted
// once, when its response is final (after RRL), with plain atomic adds into
// fixed arrays: nothing allocates and nothing locks on the query path.
//
//   - queries by transport, qtype (a bounded set, "other" for the rest) and
//     rcode of the response sent ("NOERROR" … "BADVERS", or "none" when no
//     response left: RRL dropped it, or it could not be packed);
//   - responses by zone: the origin of the zone that answered (the first
//     zone of a CNAME chain), at most maxMetricZones origins, "other"
//     beyond; queries no zone answers (REFUSED, CHAOS, FORMERR…) are not
//     counted here;
//   - the size of each response sent, in bytes (a histogram);
//   - handling latency, in seconds (a histogram): over UDP, the time from
//     the return of recvmmsg to the return of sendmmsg for a batch,
//     counted once for every response of the batch (an upper bound of each
//     query's time in the server; a batch holds up to 32 datagrams); over
//     TCP, the time from a whole message read to its response framed into
//     the connection's write buffer (the write itself is not included).
//     Queries answered through Respond or RespondFrom directly are not
//     timed.
//
// The counters of queries and sizes are spread over metricShards copies,
// picked by the pooled query state (sync.Pool keeps it per P), so that
// readers on different cores do not fight over one cache line.

// maxMetricZones bounds the zones counted by name; queries of further
// zones are counted under the origin "other".
const maxMetricZones = 10000

// metricShards is the number of copies of the query counters.
const metricShards = 8

// metricQtypes are the qtypes counted by name; every other one is "other".
var metricQtypes = [...]uint16{
	dns.TypeA, dns.TypeAAAA, dns.TypeNS, dns.TypeSOA, dns.TypeMX, dns.TypeTXT,
	dns.TypeSRV, dns.TypeCNAME, dns.TypePTR, dns.TypeDS, dns.TypeDNSKEY,
	dns.TypeHTTPS, dns.TypeSVCB, dns.TypeCAA, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR,
}

const (
	numQtypes = len(metricQtypes) + 1 // + other
	numRcodes = 16 + 2                // 0-15, BADVERS, none
	rcodeNone = numRcodes - 1
	rcodeBad  = numRcodes - 2
)

// qtypeIndex returns the index of qtype in metricQtypes, or "other".
func qtypeIndex(qtype uint16) int {
	switch qtype {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypeNS:
		return 2
	case dns.TypeSOA:
		return 3
	case dns.TypeMX:
		return 4
	case dns.TypeTXT:
		return 5
	case dns.TypeSRV:
		return 6
	case dns.TypeCNAME:
		return 7
	case dns.TypePTR:
		return 8
	case dns.TypeDS:
		return 9
	case dns.TypeDNSKEY:
		return 10
	case dns.TypeHTTPS:
		return 11
	case dns.TypeSVCB:
		return 12
	case dns.TypeCAA:
		return 13
	case dns.TypeANY:
		return 14
	case dns.TypeAXFR:
		return 15
	case dns.TypeIXFR:
		return 16
	}
	return numQtypes - 1
}

func qtypeLabel(i int) string {
	if i < len(metricQtypes) {
		return dns.TypeToString[metricQtypes[i]]
	}
	return "other"
}

func rcodeLabel(i int) string {
	switch i {
	case rcodeNone:
		return "none"
	case rcodeBad:
		return "BADVERS"
	}
	if s, ok := dns.RcodeToString[i]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(i)
}

// Bucket upper bounds of the histograms, in their unit (bytes, nanoseconds).
var (
	sizeBounds = [...]uint64{64, 128, 256, 512, 1024, 1232, 1500, 2048, 4096, 8192, 16384, 32768, 65535}
	durBounds  = [...]uint64{
		1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5,
		1e6, 2.5e6, 5e6, 1e7, 2.5e7, 5e7, 1e8, 2.5e8, 1e9,
	}
)

// sizeHist and durHist are histograms with those bounds: counts[i] holds
// the observations in (bounds[i-1], bounds[i]], the last one those above
// every bound.
type sizeHist struct {
	counts [len(sizeBounds) + 1]atomic.Uint64
	sum    atomic.Uint64
}

type durHist struct {
	counts [len(durBounds) + 1]atomic.Uint64
	sum    atomic.Uint64
}

func (h *sizeHist) observe(v int) {
	i := 0
	for i < len(sizeBounds) && uint64(v) > sizeBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(uint64(v))
}

// observeN adds n observations of d.
func (h *durHist) observeN(d time.Duration, n int) {
	if n <= 0 {
		return
	}
	v := uint64(max(d, 0))
	i := 0
	for i < len(durBounds) && v > durBounds[i] {
		i++
	}
	h.counts[i].Add(uint64(n))
	h.sum.Add(v * uint64(n))
}

// metricShard is one copy of the query counters.
type metricShard struct {
	queries [2][numQtypes][numRcodes]atomic.Uint64 // [udp, tcp]
	size    sizeHist
	last    atomic.Pointer[zone.Zone] // zone of the last precomputed answer (countName)
	_       [64]byte                  // keep shards on their own cache lines
}

// metrics holds the query metrics of a Server.
type metrics struct {
	shards    [metricShards]metricShard
	dur       durHist
	nextShard atomic.Uint32

	// zones maps the zones of one snapshot to their counters; it is
	// rebuilt (under zonesMu) on the first query after the snapshot
	// changes. byOrigin holds the counters by origin, across snapshots.
	zones     atomic.Pointer[zoneIndex]
	zonesMu   sync.Mutex
	byOrigin  map[string]*atomic.Uint64 // under zonesMu
	zoneOther atomic.Uint64             // zones beyond maxMetricZones
}

// zoneIndex is the zone counters of the zones of snap, by pointer: the
// query path finds a zone's counter with one map access by pointer, no
// string hashing.
type zoneIndex struct {
	snap   *zone.Snapshot
	byZone map[*zone.Zone]zoneCount
}

// zoneCount is a zone's counter in a zoneIndex.
type zoneCount struct {
	n *atomic.Uint64 // shared by the zones of one origin, across snapshots
	// leaf is set when no zone of the snapshot is below this one: a
	// name under its origin then belongs to it.
	leaf bool
}

// shard returns the shard index for a new pooled query.
func (m *metrics) shard() uint8 {
	return uint8(m.nextShard.Add(1) % metricShards)
}

// zoneCounter returns the counter of the responses of zone z, answered
// from a snapshot of store.
func (m *metrics) zoneCounter(z *zone.Zone, store *zone.Store) *atomic.Uint64 {
	if idx := m.zones.Load(); idx != nil {
		if c := idx.byZone[z]; c.n != nil {
			return c.n
		}
	}
	return m.zoneCounterSlow(z, store)
}

// nameCounter returns the counter of a response for the canonical name
// qname, of a zone not known yet (a precomputed answer), or nil when no
// zone holds it: the zone last found on this shard is tried first, when
// no served zone is below it; else the snapshot's longest match.
func (m *metrics) nameCounter(sh *metricShard, qname string, store *zone.Store) *atomic.Uint64 {
	snap := store.Load()
	if idx := m.zones.Load(); idx != nil && idx.snap == snap {
		if last := sh.last.Load(); last != nil {
			if c := idx.byZone[last]; c.n != nil && c.leaf && inZone(qname, last.Origin) {
				return c.n
			}
		}
	}
	z := snap.Find(qname)
	if z == nil {
		return nil
	}
	sh.last.Store(z)
	return m.zoneCounter(z, store)
}

// inZone reports whether the canonical name is origin or below it.
func inZone(name, origin string) bool {
	if origin == "." {
		return true
	}
	n, o := len(name), len(origin)
	return n >= o && name[n-o:] == origin && (n == o || name[n-o-1] == '.')
}

// zoneCounterSlow returns z's counter when the index does not hold it:
// the snapshot changed (the index is rebuilt, once per snapshot:
// O(zones)), or z is of an older snapshot than the index (found by
// origin, under the lock).
func (m *metrics) zoneCounterSlow(z *zone.Zone, store *zone.Store) *atomic.Uint64 {
	m.zonesMu.Lock()
	defer m.zonesMu.Unlock()
	idx := m.zones.Load()
	if snap := store.Load(); idx == nil || idx.snap != snap {
		zs := snap.Zones()
		idx = &zoneIndex{snap: snap, byZone: make(map[*zone.Zone]zoneCount, len(zs))}
		for _, sz := range zs {
			idx.byZone[sz] = zoneCount{n: m.counterLocked(sz.Origin), leaf: true}
		}
		for _, sz := range zs {
			// Every served ancestor of sz is not a leaf.
			for off, end := dns.NextLabel(sz.Origin, 0); !end; off, end = dns.NextLabel(sz.Origin, off) {
				if p := snap.Zone(sz.Origin[off:]); p != nil {
					c := idx.byZone[p]
					c.leaf = false
					idx.byZone[p] = c
				}
			}
			if sz.Origin != "." {
				if root := snap.Zone("."); root != nil {
					c := idx.byZone[root]
					c.leaf = false
					idx.byZone[root] = c
				}
			}
		}
		m.zones.Store(idx)
	}
	if c := idx.byZone[z]; c.n != nil {
		return c.n
	}
	return m.counterLocked(z.Origin)
}

// counterLocked returns the counter of origin, creating it (within
// maxMetricZones) as needed. zonesMu must be held.
func (m *metrics) counterLocked(origin string) *atomic.Uint64 {
	if c := m.byOrigin[origin]; c != nil {
		return c
	}
	if len(m.byOrigin) >= maxMetricZones {
		return &m.zoneOther
	}
	if m.byOrigin == nil {
		m.byOrigin = make(map[string]*atomic.Uint64)
	}
	c := new(atomic.Uint64)
	m.byOrigin[origin] = c
	return c
}

// Metrics is a snapshot of the query metrics, read at scrape time. See
// Server.Metrics for the suggested Prometheus names.
type Metrics struct {
	// Queries holds one entry per (transport, qtype, rcode) seen.
	Queries []QueryCount
	// Zones counts responses by origin of the zone that answered;
	// "other" holds the zones beyond the first 10000 seen.
	Zones map[string]uint64
	// ResponseSize is the size of the responses sent, in bytes.
	ResponseSize Histogram
	// Duration is the handling latency, in seconds (see Server.Metrics).
	Duration Histogram
}

// QueryCount is the number of queries of one transport ("udp", "tcp"),
// qtype ("A", …, "other") and rcode ("NOERROR", …, "BADVERS", or "none"
// when no response was sent).
type QueryCount struct {
	Transport, Qtype, Rcode string
	Count                   uint64
}

// Histogram is a cumulative histogram, as Prometheus wants it: Buckets[i]
// is the number of observations at most Bounds[i]; Count holds them all
// (those above the last bound included) and Sum their total.
type Histogram struct {
	Bounds  []float64
	Buckets []uint64
	Count   uint64
	Sum     float64
}

// Metrics returns a snapshot of the query metrics; it allocates, and is
// safe from any goroutine. Suggested Prometheus mapping:
//
//	anyns_queries_total{transport,qtype,rcode}  counter    Queries
//	anyns_zone_queries_total{zone}              counter    Zones
//	anyns_response_size_bytes                   histogram  ResponseSize
//	anyns_request_duration_seconds              histogram  Duration
//
// (prometheus.MustNewConstHistogram takes Count, Sum and a map of
// Bounds[i] to Buckets[i].) Dropped and malformed packets, truncation and
// dnstap drops are in Stats.
func (s *Server) Metrics() Metrics {
	m := &s.metrics
	var out Metrics
	var sizes [len(sizeBounds) + 1]uint64
	var sizeSum uint64
	for t := range 2 {
		for qi := range numQtypes {
			for ri := range numRcodes {
				var n uint64
				for i := range m.shards {
					n += m.shards[i].queries[t][qi][ri].Load()
				}
				if n == 0 {
					continue
				}
				tr := "udp"
				if t == 1 {
					tr = "tcp"
				}
				out.Queries = append(out.Queries, QueryCount{Transport: tr, Qtype: qtypeLabel(qi), Rcode: rcodeLabel(ri), Count: n})
			}
		}
	}
	for i := range m.shards {
		sh := &m.shards[i].size
		for j := range sizes {
			sizes[j] += sh.counts[j].Load()
		}
		sizeSum += sh.sum.Load()
	}
	out.ResponseSize = cumulative(sizeBounds[:], sizes[:], float64(sizeSum), 1)
	var durs [len(durBounds) + 1]uint64
	for j := range durs {
		durs[j] = m.dur.counts[j].Load()
	}
	out.Duration = cumulative(durBounds[:], durs[:], float64(m.dur.sum.Load())/1e9, 1e9)

	m.zonesMu.Lock()
	out.Zones = make(map[string]uint64, len(m.byOrigin)+1)
	for k, v := range m.byOrigin {
		if n := v.Load(); n > 0 {
			out.Zones[k] = n
		}
	}
	m.zonesMu.Unlock()
	if n := m.zoneOther.Load(); n > 0 {
		out.Zones["other"] += n
	}
	return out
}

// cumulative builds a Histogram from per-bucket counts; bounds are divided
// by unit.
func cumulative(bounds []uint64, counts []uint64, sum float64, unit float64) Histogram {
	h := Histogram{Bounds: make([]float64, len(bounds)), Buckets: make([]uint64, len(bounds)), Sum: sum}
	var acc uint64
	for i, b := range bounds {
		acc += counts[i]
		h.Bounds[i] = float64(b) / unit
		h.Buckets[i] = acc
	}
	h.Count = acc + counts[len(bounds)]
	return h
}

// reqInfo is what the transport knows of a query.
type reqInfo struct {
	t      Transport
	client netip.AddrPort // the query's source; invalid: unknown
	local  netip.AddrPort // where it arrived; invalid: unknown
	recv   time.Time      // when it was read; zero: unknown
	logIt  bool           // sampled for the query log (startObserve)
	batch  *udpCounts     // counts the query for its batch; nil: counted at once
}

// observe counts the query q (req, answered out, sent when ok) in the
// metrics and hands it to dnstap and the query log when they are on. It
// runs before q is released.
func (s *Server) observe(q *query, req, out []byte, ok bool) {
	var qtype uint16
	switch {
	case q.qname != "" && q.qtype != 0:
		qtype = q.qtype
	case q.qname != "" && q.slow:
		qtype = q.qs[0].Qtype
	default:
		qtype = requestQtype(req)
	}
	rcode := rcodeNone
	if ok && len(out) >= headerLen {
		rcode = responseRcode(out)
	}
	t := 0
	if q.info.t == TCP {
		t = 1
	}
	sh := &s.metrics.shards[q.shard%metricShards]
	var zc *atomic.Uint64
	if z := q.zr.Zone; z != nil {
		zc = s.metrics.zoneCounter(z, s.store)
	} else if !q.slow && q.qname != "" {
		// A precomputed answer: the fast path did not look the name up.
		zc = s.metrics.nameCounter(sh, q.qname, s.store)
	}
	if b := q.info.batch; b != nil && t == 0 {
		b.add(qtypeIndex(qtype)*numRcodes+rcode, ok, len(out), zc)
	} else {
		sh.queries[t][qtypeIndex(qtype)][rcode].Add(1)
		if ok {
			sh.size.observe(len(out))
		}
		if zc != nil {
			zc.Add(1)
		}
	}
	if s.tap != nil || q.info.logIt {
		s.observeSlow(q, req, out, ok, qtype, rcode)
	}
}

// udpCounts gathers the counts of one batch of UDP queries, read and
// answered by one goroutine, so that the batch costs a few atomic
// additions (flush) rather than four for every query. They are added to
// the server's, in shard, before the answers are sent.
type udpCounts struct {
	s     *Server
	shard uint8

	queries uint64                      // datagrams read (Stats.QueriesUDP)
	keys    [udpBatch]uint16            // distinct qtype index * numRcodes + rcode
	counts  [udpBatch]uint64            // queries of keys[i]
	nkeys   int                         //
	sizes   [len(sizeBounds) + 1]uint64 // as sizeHist.counts
	sizeSum uint64
	zone    *atomic.Uint64 // counter of the zone of the last query counted
	zoneN   uint64         // queries of zone not added to it yet
}

// add counts one query of the batch (see observe).
func (b *udpCounts) add(key int, sent bool, size int, zc *atomic.Uint64) {
	i := 0
	for i < b.nkeys && b.keys[i] != uint16(key) {
		i++
	}
	if i == b.nkeys {
		if i == len(b.keys) { // more queries than a batch: not expected
			b.flush()
			i = 0
		}
		b.keys[i], b.counts[i] = uint16(key), 0
		b.nkeys++
	}
	b.counts[i]++
	if sent {
		k := 0
		for k < len(sizeBounds) && uint64(size) > sizeBounds[k] {
			k++
		}
		b.sizes[k]++
		b.sizeSum += uint64(size)
	}
	if zc != b.zone {
		if b.zone != nil {
			b.zone.Add(b.zoneN)
		}
		b.zone, b.zoneN = zc, 0
	}
	if zc != nil {
		b.zoneN++
	}
}

// flush adds the batch's counts to the server's and empties b.
func (b *udpCounts) flush() {
	if b.queries > 0 {
		b.s.stats.queriesUDP.Add(b.queries)
	}
	sh := &b.s.metrics.shards[b.shard%metricShards]
	for i := range b.nkeys {
		k := int(b.keys[i])
		sh.queries[0][k/numRcodes][k%numRcodes].Add(b.counts[i])
	}
	for i, n := range b.sizes {
		if n > 0 {
			sh.size.counts[i].Add(n)
		}
	}
	if b.sizeSum > 0 {
		sh.size.sum.Add(b.sizeSum)
	}
	if b.zone != nil && b.zoneN > 0 {
		b.zone.Add(b.zoneN)
	}
	*b = udpCounts{s: b.s, shard: b.shard}
}

// observeSlow feeds dnstap and the sampled query log.
func (s *Server) observeSlow(q *query, req, out []byte, ok bool, qtype uint16, rcode int) {
	now := time.Now()
	if s.tap != nil {
		s.tap.send(req, out, ok, &q.info, now)
	}
	if q.info.logIt {
		s.logQuery(q, req, out, ok, qtype, rcode, now)
	}
}

// requestQtype returns the qtype of the first question of req, or 0.
func requestQtype(req []byte) uint16 {
	if len(req) < headerLen || binary.BigEndian.Uint16(req[4:]) == 0 {
		return 0
	}
	end := questionEnd(req)
	if end < headerLen+4 {
		return 0
	}
	return binary.BigEndian.Uint16(req[end-4:])
}

// responseRcode returns the metrics index of the rcode of out: the header's,
// or BADVERS when the OPT RR right after the question carries it (the only
// extended rcode we send).
func responseRcode(out []byte) int {
	rcode := int(out[3] & 0xf)
	if rcode != 0 || binary.BigEndian.Uint16(out[6:]) != 0 || binary.BigEndian.Uint16(out[8:]) != 0 ||
		binary.BigEndian.Uint16(out[10:]) == 0 {
		return rcode
	}
	end := questionEnd(out)
	if end < headerLen || end+11 > len(out) || out[end] != 0 || binary.BigEndian.Uint16(out[end+1:]) != dns.TypeOPT {
		return rcode
	}
	if out[end+5] == 1 { // extended rcode 16 >> 4
		return rcodeBad
	}
	return rcode
}

// addrPortOf returns the address and port of a (*net.UDPAddr or
// *net.TCPAddr), IPv4-mapped addresses unmapped, or an invalid AddrPort.
func addrPortOf(a net.Addr) netip.AddrPort {
	var port int
	switch a := a.(type) {
	case *net.UDPAddr:
		port = a.Port
	case *net.TCPAddr:
		port = a.Port
	}
	addr := addrOf(a)
	if !addr.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(addr, uint16(port))
}

// validateVisibility reports the problems of Whoami, QueryLog and Dnstap.
func (c Config) validateVisibility() error {
	var errs []error
	if c.Whoami != "" {
		if _, ok := dns.IsDomainName(c.Whoami); !ok || !dns.IsFqdn(c.Whoami) || c.Whoami == "." {
			errs = append(errs, fmt.Errorf("diagnostics.whoami: %q is not a fully qualified domain name", c.Whoami))
		} else if strings.ContainsAny(c.Whoami, `\`) {
			errs = append(errs, fmt.Errorf("diagnostics.whoami: %q: escapes are not supported", c.Whoami))
		}
	}
	if !(c.QueryLog >= 0 && c.QueryLog <= 1) { // NaN too
		errs = append(errs, fmt.Errorf("log.queries: %v, must be between 0 and 1", c.QueryLog))
	}
	if c.Dnstap == "unix:" {
		errs = append(errs, errors.New("dnstap: empty socket path"))
	}
	return errors.Join(errs...)
}
