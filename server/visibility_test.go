package server

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"

	"github.com/anyns/anyns/zone"
)

// queryCount returns the count of (transport, qtype, rcode) in m.
func queryCount(m Metrics, transport, qtype, rcode string) uint64 {
	for _, q := range m.Queries {
		if q.Transport == transport && q.Qtype == qtype && q.Rcode == rcode {
			return q.Count
		}
	}
	return 0
}

func TestMetricsCounts(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	buf := make([]byte, 65535)
	badvers := withEDNS(question("host1.example.com.", dns.TypeA), 1232, false)
	badvers.IsEdns0().SetVersion(1)
	formerr := question("host1.example.com.", dns.TypeA)
	formerr.Question = append(formerr.Question, formerr.Question[0])
	for _, tc := range []struct {
		name string
		m    *dns.Msg
		tr   Transport
		n    int
	}{
		{"hit", withEDNS(question("host1.example.com.", dns.TypeA), 1232, false), UDP, 3},
		{"precomputed-0x20", question("HOST1.example.COM.", dns.TypeA), UDP, 2},
		{"nxdomain", question("nope.example.com.", dns.TypeAAAA), UDP, 1},
		{"tcp-mx", question("example.com.", dns.TypeMX), TCP, 2},
		{"refused", question("nope.invalid.", dns.TypeA), UDP, 1},
		{"other-qtype", question("example.com.", dns.TypeNAPTR), UDP, 1},
		{"badvers", badvers, UDP, 1},
		{"formerr", formerr, UDP, 1},
		{"chaos", func() *dns.Msg {
			m := question("id.server.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), UDP, 1},
	} {
		req := pack(t, tc.m)
		for range tc.n {
			if _, ok := s.Respond(req, buf, tc.tr); !ok {
				t.Fatalf("%s: dropped", tc.name)
			}
		}
	}
	// A packet without a header is dropped before it is a query.
	s.Respond([]byte{1, 2, 3}, buf, UDP)

	m := s.Metrics()
	for _, want := range []struct {
		transport, qtype, rcode string
		n                       uint64
	}{
		{"udp", "A", "NOERROR", 5},
		{"udp", "AAAA", "NXDOMAIN", 1},
		{"tcp", "MX", "NOERROR", 2},
		{"udp", "A", "REFUSED", 1},
		{"udp", "other", "NOERROR", 1},
		{"udp", "A", "BADVERS", 1},
		{"udp", "other", "FORMERR", 1}, // two questions: no qtype
		{"udp", "TXT", "NOERROR", 1},
	} {
		if got := queryCount(m, want.transport, want.qtype, want.rcode); got != want.n {
			t.Errorf("queries{%s,%s,%s} = %d, want %d (all: %+v)", want.transport, want.qtype, want.rcode, got, want.n, m.Queries)
		}
	}
	var total uint64
	for _, q := range m.Queries {
		total += q.Count
	}
	if total != 13 {
		t.Errorf("%d queries counted, want 13", total)
	}
	// Zones: every query a zone answered (the REFUSED, CHAOS, BADVERS and
	// FORMERR ones are not).
	if got := m.Zones["example.com."]; got != 9 {
		t.Errorf("zone example.com. counted %d, want 9 (%v)", got, m.Zones)
	}
	if m.ResponseSize.Count != 13 || m.ResponseSize.Sum <= 0 {
		t.Errorf("response sizes: %+v", m.ResponseSize)
	}
	if n := len(m.ResponseSize.Buckets); n == 0 || m.ResponseSize.Buckets[n-1] != 13 ||
		!slices.IsSorted(m.ResponseSize.Buckets) || m.ResponseSize.Bounds[0] != 64 {
		t.Errorf("response size buckets: %+v", m.ResponseSize)
	}
	if m.Duration.Count != 0 {
		t.Errorf("Respond timed %d queries, want none", m.Duration.Count)
	}
}

// TestMetricsRRL checks that a response RRL drops counts as rcode "none".
func TestMetricsRRL(t *testing.T) {
	cfg := testConfig()
	cfg.RRL = RRLConfig{ResponsesPerSecond: 1, Slip: -1}
	s := newServer(t, cfg, nil)
	req := pack(t, question("host1.example.com.", dns.TypeA))
	buf := make([]byte, 65535)
	client := netip.MustParseAddr("192.0.2.1")
	for range 5 {
		s.RespondFrom(req, buf, UDP, client)
	}
	m := s.Metrics()
	dropped := s.Stats().RRLDropped
	if dropped == 0 || queryCount(m, "udp", "A", "none") != dropped ||
		queryCount(m, "udp", "A", "NOERROR") != 5-dropped || m.ResponseSize.Count != 5-dropped {
		t.Errorf("RRL dropped %d; metrics %+v, sizes %d", dropped, m.Queries, m.ResponseSize.Count)
	}
}

func TestMetricsZoneCap(t *testing.T) {
	// Zones of no snapshot of the store take the slow path, by origin.
	store := zone.NewStore(nil)
	s := &Server{store: store}
	for i := range maxMetricZones + 5 {
		s.metrics.zoneCounter(&zone.Zone{Origin: "z" + strconv.Itoa(i) + "."}, store).Add(1)
	}
	s.metrics.zoneCounter(&zone.Zone{Origin: "z0."}, store).Add(1)
	got := s.Metrics().Zones
	if len(got) != maxMetricZones+1 || got["other"] != 5 || got["z0."] != 2 {
		t.Errorf("%d zones, other %d, z0. %d", len(got), got["other"], got["z0."])
	}
}

// TestMetricsDuration checks that queries served over sockets are timed.
func TestMetricsDuration(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	addr := start(t, s)
	exchange(t, "udp", addr, question("host1.example.com.", dns.TypeA))
	exchange(t, "tcp", addr, question("host1.example.com.", dns.TypeA))
	// The UDP batch is timed after sendmmsg: the reply may arrive first.
	waitFor(t, "two timed queries", func() bool { return s.Metrics().Duration.Count == 2 })
	h := s.Metrics().Duration
	if h.Sum <= 0 || h.Sum > 5 || h.Bounds[0] != 1e-6 {
		t.Errorf("durations: %+v", h)
	}
	m := s.Metrics()
	if queryCount(m, "udp", "A", "NOERROR") != 1 || queryCount(m, "tcp", "A", "NOERROR") != 1 {
		t.Errorf("queries: %+v", m.Queries)
	}
}

func TestVisibilityConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" for valid
	}{
		{"defaults", Config{}, ""},
		{"all", Config{Whoami: "whoami.example.com.", QueryLog: 0.5, Dnstap: "unix:/run/tap.sock"}, ""},
		{"whoami not fqdn", Config{Whoami: "whoami.example.com"}, "diagnostics.whoami"},
		{"whoami root", Config{Whoami: "."}, "diagnostics.whoami"},
		{"querylog high", Config{QueryLog: 1.5}, "log.queries"},
		{"querylog negative", Config{QueryLog: -0.1}, "log.queries"},
		{"dnstap empty socket", Config{Dnstap: "unix:"}, "dnstap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: %v, want an error about %s", err, tc.want)
			}
		})
	}
}

func whoamiConfig() Config {
	cfg := testConfig()
	cfg.Whoami = "Whoami.Example.COM."
	return cfg
}

func TestWhoamiRespond(t *testing.T) {
	s := newServer(t, whoamiConfig(), nil)
	v4 := netip.MustParseAddr("192.0.2.7")
	v6 := netip.MustParseAddr("2001:db8::7")
	ecs := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("198.51.100.0").To4()}
	for _, tc := range []struct {
		name   string
		m      *dns.Msg
		tr     Transport
		client netip.Addr
		answer []string
		nodata bool
	}{
		{"txt", question("whoami.example.com.", dns.TypeTXT), UDP, v4,
			[]string{`whoami.example.com. 0 IN TXT "id=anyns-test-1" "client=192.0.2.7" "transport=udp"`}, false},
		{"txt-0x20-ecs", withEDNS(question("WHOAMI.example.com.", dns.TypeTXT), 1232, false, ecs), UDP, v6,
			// The owner compresses against the question: the query's case.
			[]string{`WHOAMI.example.com. 0 IN TXT "id=anyns-test-1" "client=2001:db8::7" "ecs=198.51.100.0/24" "transport=udp"`}, false},
		{"txt-tcp-no-client", question("whoami.example.com.", dns.TypeTXT), TCP, netip.Addr{},
			[]string{`whoami.example.com. 0 IN TXT "id=anyns-test-1" "client=unknown" "transport=tcp"`}, false},
		{"a-v4", withEDNS(question("whoami.example.com.", dns.TypeA), 1232, false), UDP, v4,
			[]string{"whoami.example.com. 0 IN A 192.0.2.7"}, false},
		{"aaaa-v6", question("whoami.example.com.", dns.TypeAAAA), UDP, v6,
			[]string{"whoami.example.com. 0 IN AAAA 2001:db8::7"}, false},
		{"aaaa-v4", question("whoami.example.com.", dns.TypeAAAA), UDP, v4, nil, true},
		{"a-v6", question("whoami.example.com.", dns.TypeA), UDP, v6, nil, true},
		{"mx", question("whoami.example.com.", dns.TypeMX), UDP, v4, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := s.respondInfo(pack(t, tc.m), make([]byte, 65535),
				reqInfo{t: tc.tr, client: netip.AddrPortFrom(tc.client, 0)})
			if !ok {
				t.Fatal("dropped")
			}
			r := unpack(t, out)
			if r.Rcode != dns.RcodeSuccess || !r.Authoritative || r.Question[0].Name != tc.m.Question[0].Name {
				t.Fatalf("rcode %d, AA %v, question %v", r.Rcode, r.Authoritative, r.Question)
			}
			if !sameRRs(r.Answer, tc.answer) {
				t.Errorf("answer %v, want %v", r.Answer, tc.answer)
			}
			if tc.nodata {
				if soa, ok := r.Ns[0].(*dns.SOA); len(r.Ns) != 1 || !ok || soa.Hdr.Name != "example.com." || soa.Hdr.Ttl != 0 {
					t.Errorf("authority %v, want the SOA with TTL 0", r.Ns)
				}
			}
			if (tc.m.IsEdns0() != nil) != (r.IsEdns0() != nil) {
				t.Errorf("OPT in response: %v", r.IsEdns0())
			}
		})
	}
	// Names below whoami and whoami without the option are zone lookups.
	if r := respond(t, s, question("x.whoami.example.com.", dns.TypeTXT), UDP); r.Rcode != dns.RcodeNameError {
		t.Errorf("below whoami: rcode %d, want NXDOMAIN", r.Rcode)
	}
	off := newServer(t, testConfig(), nil)
	if r := respond(t, off, question("whoami.example.com.", dns.TypeTXT), UDP); r.Rcode != dns.RcodeNameError {
		t.Errorf("whoami off: rcode %d, want NXDOMAIN", r.Rcode)
	}
	// Outside every served zone: REFUSED as any other name.
	cfg := testConfig()
	cfg.Whoami = "whoami.nowhere.invalid."
	if r := respond(t, newServer(t, cfg, nil), question("whoami.nowhere.invalid.", dns.TypeTXT), UDP); r.Rcode != dns.RcodeRefused {
		t.Errorf("whoami outside zones: rcode %d, want REFUSED", r.Rcode)
	}
	if got := s.Metrics().Zones["example.com."]; got == 0 {
		t.Errorf("whoami answers not counted for their zone")
	}
}

// TestWhoamiRRL checks that whoami answers are rate limited like others.
func TestWhoamiRRL(t *testing.T) {
	cfg := whoamiConfig()
	cfg.RRL = RRLConfig{ResponsesPerSecond: 1, Slip: -1}
	s := newServer(t, cfg, nil)
	req := pack(t, question("whoami.example.com.", dns.TypeTXT))
	buf := make([]byte, 65535)
	answered := 0
	for range 5 {
		if _, ok := s.RespondFrom(req, buf, UDP, netip.MustParseAddr("192.0.2.9")); ok {
			answered++
		}
	}
	if answered == 5 || s.Stats().RRLDropped == 0 {
		t.Errorf("%d of 5 answered, %d dropped by RRL", answered, s.Stats().RRLDropped)
	}
}

// TestWhoamiSockets asks whoami over real UDP and TCP sockets, as dig
// would (with an EDNS Client Subnet option over TCP).
func TestWhoamiSockets(t *testing.T) {
	s := newServer(t, whoamiConfig(), nil)
	addr := start(t, s)
	r := exchange(t, "udp", addr, question("whoami.example.com.", dns.TypeTXT))
	want := `whoami.example.com. 0 IN TXT "id=anyns-test-1" "client=127.0.0.1" "transport=udp"`
	if !sameRRs(r.Answer, []string{want}) || !r.Authoritative {
		t.Errorf("udp: %v", r)
	}
	ecs := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 56, Address: net.ParseIP("2001:db8:1:2ff::")}
	r = exchange(t, "tcp", addr, withEDNS(question("whoami.example.com.", dns.TypeTXT), 1232, false, ecs))
	want = `whoami.example.com. 0 IN TXT "id=anyns-test-1" "client=127.0.0.1" "ecs=2001:db8:1:200::/56" "transport=tcp"`
	if !sameRRs(r.Answer, []string{want}) {
		t.Errorf("tcp: %v", r.Answer)
	}
	r = exchange(t, "tcp", addr, question("whoami.example.com.", dns.TypeA))
	if !sameRRs(r.Answer, []string{"whoami.example.com. 0 IN A 127.0.0.1"}) {
		t.Errorf("tcp A: %v", r.Answer)
	}
}

func TestQueryLog(t *testing.T) {
	for _, rate := range []float64{0, 1} {
		cfg := testConfig()
		cfg.QueryLog = rate
		core, logs := observer.New(zap.InfoLevel)
		s, err := New(cfg, testStore(t), zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		addr := start(t, s)
		exchange(t, "udp", addr, question("Host1.Example.com.", dns.TypeA))
		exchange(t, "tcp", addr, question("nope.example.com.", dns.TypeAAAA))
		s.Respond(pack(t, question("host1.example.com.", dns.TypeMX)), make([]byte, 65535), UDP)
		entries := logs.FilterMessage("query").AllUntimed()
		if rate == 0 {
			if len(entries) != 0 {
				t.Errorf("rate 0: %d lines logged", len(entries))
			}
			continue
		}
		if len(entries) != 3 {
			t.Fatalf("rate 1: %d lines logged, want 3", len(entries))
		}
		for i, want := range []map[string]any{
			{"qname": "host1.example.com.", "qtype": "A", "rcode": "NOERROR", "transport": "udp"},
			{"qname": "nope.example.com.", "qtype": "AAAA", "rcode": "NXDOMAIN", "transport": "tcp"},
			{"qname": "host1.example.com.", "qtype": "MX", "rcode": "NOERROR", "transport": "udp", "client": "unknown"},
		} {
			f := entries[i].ContextMap()
			for k, v := range want {
				if f[k] != v {
					t.Errorf("line %d: %s = %v, want %v (%v)", i, k, f[k], v, f)
				}
			}
			if i < 2 && !strings.HasPrefix(f["client"].(string), "127.0.0.1:") {
				t.Errorf("line %d: client %v", i, f["client"])
			}
			if size, _ := f["size"].(int64); size < headerLen {
				t.Errorf("line %d: size %v", i, f["size"])
			}
			if _, ok := f["duration"].(time.Duration); !ok {
				t.Errorf("line %d: duration %v", i, f["duration"])
			}
		}
	}
}

func TestSampleThreshold(t *testing.T) {
	if sampleThreshold(0) != 0 || sampleThreshold(-1) != 0 {
		t.Error("rate 0 samples")
	}
	n := 0
	th := sampleThreshold(0.25)
	for range 10000 {
		if sampled(th) {
			n++
		}
	}
	if n < 2000 || n > 3000 { // 25% ± 5 points: failing is a 1e-30 event
		t.Errorf("rate 0.25: %d of 10000 sampled", n)
	}
	if !sampled(sampleThreshold(1)) {
		t.Error("rate 1 does not sample")
	}
}

// readTap decodes dnstap frames from ch until want messages arrived.
func readTap(t *testing.T, ch <-chan []byte, want int) []*dnstap.Dnstap {
	t.Helper()
	var out []*dnstap.Dnstap
	timeout := time.After(10 * time.Second)
	for len(out) < want {
		select {
		case frame := <-ch:
			d := new(dnstap.Dnstap)
			if err := proto.Unmarshal(frame, d); err != nil {
				t.Fatalf("decode frame: %v", err)
			}
			out = append(out, d)
		case <-timeout:
			t.Fatalf("%d of %d dnstap messages", len(out), want)
		}
	}
	return out
}

// checkTap checks a query and response pair for qname and rcode.
func checkTap(t *testing.T, msgs []*dnstap.Dnstap, proto dnstap.SocketProtocol, qname string, rcode int) {
	t.Helper()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	for i, typ := range []dnstap.Message_Type{dnstap.Message_AUTH_QUERY, dnstap.Message_AUTH_RESPONSE} {
		d := msgs[i]
		m := d.GetMessage()
		if string(d.GetIdentity()) != "anyns-test-1" || string(d.GetVersion()) != "anyns 0.0-test" || d.GetType() != dnstap.Dnstap_MESSAGE {
			t.Errorf("message %d: identity %q version %q type %v", i, d.GetIdentity(), d.GetVersion(), d.GetType())
		}
		if m.GetType() != typ || m.GetSocketProtocol() != proto || m.GetSocketFamily() != dnstap.SocketFamily_INET {
			t.Errorf("message %d: type %v protocol %v family %v", i, m.GetType(), m.GetSocketProtocol(), m.GetSocketFamily())
		}
		if net.IP(m.GetQueryAddress()).String() != "127.0.0.1" || m.GetQueryPort() == 0 ||
			net.IP(m.GetResponseAddress()).String() != "127.0.0.1" || m.GetResponsePort() == 0 {
			t.Errorf("message %d: query %v:%d response %v:%d", i, net.IP(m.GetQueryAddress()), m.GetQueryPort(),
				net.IP(m.GetResponseAddress()), m.GetResponsePort())
		}
		if m.GetQueryTimeSec() == 0 {
			t.Errorf("message %d: no query time", i)
		}
		wire := m.GetQueryMessage()
		if typ == dnstap.Message_AUTH_RESPONSE {
			wire = m.GetResponseMessage()
			if m.GetResponseTimeSec() == 0 {
				t.Errorf("response: no response time")
			}
		}
		var msg dns.Msg
		if err := msg.Unpack(wire); err != nil {
			t.Fatalf("message %d: unpack: %v", i, err)
		}
		if len(msg.Question) != 1 || msg.Question[0].Name != qname || msg.Response != (i == 1) {
			t.Errorf("message %d: %v", i, msg.Question)
		}
		if i == 1 && msg.Rcode != rcode {
			t.Errorf("response rcode %d, want %d", msg.Rcode, rcode)
		}
	}
}

func TestDnstapSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tap.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	in := dnstap.NewFrameStreamSockInput(ln)
	frames := make(chan []byte, 64)
	go in.ReadInto(frames)
	t.Cleanup(func() { ln.Close() })

	cfg := testConfig()
	cfg.Dnstap = "unix:" + path
	s := newServer(t, cfg, nil)
	addr := start(t, s)
	exchange(t, "udp", addr, question("host1.example.com.", dns.TypeA))
	checkTap(t, readTap(t, frames, 2), dnstap.SocketProtocol_UDP, "host1.example.com.", dns.RcodeSuccess)
	exchange(t, "tcp", addr, question("Nope.example.com.", dns.TypeA))
	checkTap(t, readTap(t, frames, 2), dnstap.SocketProtocol_TCP, "Nope.example.com.", dns.RcodeNameError)
	if n := s.Stats().DnstapDropped; n != 0 {
		t.Errorf("%d dropped", n)
	}
}

func TestDnstapFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "anyns.dnstap")
	cfg := testConfig()
	cfg.Dnstap = path
	s := newServer(t, cfg, nil)
	addr := start(t, s)
	exchange(t, "udp", addr, question("host1.example.com.", dns.TypeTXT))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil { // flushes and closes the file
		t.Fatal(err)
	}
	in, err := dnstap.NewFrameStreamInputFromFilename(path)
	if err != nil {
		t.Fatal(err)
	}
	frames := make(chan []byte, 8)
	go in.ReadInto(frames)
	checkTap(t, readTap(t, frames, 2), dnstap.SocketProtocol_UDP, "host1.example.com.", dns.RcodeSuccess)
}

// TestDnstapDrops checks that a full queue drops (and counts) instead of
// waiting, and that nothing is queued after close.
func TestDnstapDrops(t *testing.T) {
	tp := &tap{ch: make(chan *tapItem, 1), stop: make(chan struct{}), done: make(chan struct{})}
	tp.pool.New = func() any { return &tapItem{} }
	in := &reqInfo{t: UDP}
	req := pack(t, question("host1.example.com.", dns.TypeA))
	for range 3 {
		tp.send(req, req, true, in, time.Now()) // no writer: the queue fills
	}
	if n := tp.droppedCount(); n != 2 {
		t.Errorf("%d dropped, want 2", n)
	}
	close(tp.done) // as if the writer had returned
	if err := tp.close(t.Context()); err != nil {
		t.Fatal(err)
	}
	tp.send(req, req, true, in, time.Now())
	if n := tp.droppedCount(); n != 3 {
		t.Errorf("%d dropped after close, want 3", n)
	}
	var nilTap *tap
	if nilTap.droppedCount() != 0 {
		t.Error("nil tap drops")
	}
}

// TestVisibilityAllocs checks that configuring whoami adds no allocation
// to the fast path (dnstap and the query log off: their allocations are
// covered by TestRespondAllocs and TestUDPAllocs).
func TestVisibilityAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	s := newServer(t, whoamiConfig(), nil)
	req := pack(t, withEDNS(question("host1.example.com.", dns.TypeA), 1232, false))
	buf := make([]byte, 65535)
	client := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 5353)
	ask := func() { s.respondInfo(req, buf, reqInfo{t: UDP, client: client}) }
	ask()
	if n := testing.AllocsPerRun(200, ask); n != 0 {
		t.Errorf("%v allocs per query with whoami on, want 0", n)
	}
}

// TestMetricsZoneNested checks the zone counts of precomputed answers
// (the fast path does not say which zone answered) with a zone served
// below another, before and after a reload adds the child zone.
func TestMetricsZoneNested(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("example.org.zone", `$ORIGIN example.org.
@ 300 IN SOA ns1 h 1 2 3 4 5
@ 300 IN NS ns1
ns1 300 IN A 192.0.2.1
www.child 300 IN A 192.0.2.8
`)
	write("child.example.org.zone", `$ORIGIN child.example.org.
@ 300 IN SOA ns1 h 1 2 3 4 5
@ 300 IN NS ns1
ns1 300 IN A 192.0.2.2
www 300 IN A 192.0.2.3
`)
	zs, err := zone.LoadDir(dir) // sorted: child first
	if err != nil {
		t.Fatal(err)
	}
	parentOnly, err := zone.NewSnapshot(zs[1])
	if err != nil {
		t.Fatal(err)
	}
	both, err := zone.NewSnapshot(zs...)
	if err != nil {
		t.Fatal(err)
	}
	store := zone.NewStore(parentOnly)
	s := newServer(t, testConfig(), store)
	buf := make([]byte, 65535)
	ask := func(name string) {
		t.Helper()
		if _, ok := s.Respond(pack(t, question(name, dns.TypeA)), buf, UDP); !ok {
			t.Fatal("dropped")
		}
	}
	want := func(parent, child uint64) {
		t.Helper()
		got := s.Metrics().Zones
		if got["example.org."] != parent || got["child.example.org."] != child {
			t.Errorf("zones %v, want example.org. %d, child.example.org. %d", got, parent, child)
		}
	}
	for range 3 {
		ask("ns1.example.org.")
		ask("www.child.example.org.") // the parent's name until the reload
	}
	want(6, 0)
	store.Store(both)
	for range 3 {
		ask("ns1.example.org.")
		ask("www.child.example.org.")
		ask("ns1.child.example.org.")
	}
	want(9, 6)
}

// BenchmarkRespondVisibility measures a precomputed hit with each
// visibility feature on: dnstap (to a file; the writer runs on another
// goroutine, and queries it cannot keep up with are dropped), a query log
// sampling 1% (to a no-op logger: the cost of sampling, not of writing),
// and a whoami TXT answer (general path).
func BenchmarkRespondVisibility(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
	}{
		{"off", func(*Config) {}},
		{"dnstap", func(c *Config) { c.Dnstap = filepath.Join(b.TempDir(), "tap") }},
		{"querylog-1pct", func(c *Config) { c.QueryLog = 0.01 }},
		{"whoami-txt", func(c *Config) { c.Whoami = "whoami.example.com." }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := testConfig()
			tc.cfg(&cfg)
			s, err := New(cfg, testStore(b), zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Shutdown(context.Background()) })
			name := "host1.example.com."
			if cfg.Whoami != "" {
				name = cfg.Whoami
			}
			req := pack(b, withEDNS(question(name, dns.TypeA), 1232, false))
			if cfg.Whoami != "" {
				req = pack(b, withEDNS(question(name, dns.TypeTXT), 1232, false))
			}
			buf := make([]byte, 65535)
			in := reqInfo{t: UDP, client: netip.MustParseAddrPort("192.0.2.1:5353"), local: netip.MustParseAddrPort("192.0.2.53:53")}
			b.ReportAllocs()
			for b.Loop() {
				s.respondInfo(req, buf, in)
			}
		})
	}
}

// TestMetricsUDPBatches checks the counts of queries answered in batches
// over UDP (counted per batch, see udpCounts): a burst of queries of four
// kinds, sent without waiting so that the server reads several at once,
// must be counted exactly, each under its qtype, rcode and zone, with one
// response size and one duration per answer, and every datagram, a
// runt included, in Stats.QueriesUDP.
func TestMetricsUDPBatches(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	addr := start(t, s)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kinds := []*dns.Msg{
		question("host1.example.com.", dns.TypeA),   // precomputed hit
		question("nope.example.com.", dns.TypeAAAA), // NXDOMAIN
		question("example.com.", dns.TypeMX),        // hit with additional data
		question("nope.invalid.", dns.TypeA),        // REFUSED: no zone
	}
	const rounds = 50
	var reqs [][]byte
	for i := range rounds * len(kinds) {
		m := kinds[i%len(kinds)].Copy()
		m.Id = uint16(i + 1)
		reqs = append(reqs, pack(t, m))
	}
	answered := map[uint16]bool{}
	buf := make([]byte, 65535)
	// Bursts of 20, then the answers; a lost datagram is sent again (it
	// is then counted twice, as the server saw it twice).
	sent := 0
	for len(answered) < len(reqs) {
		burst := 0
		for i, r := range reqs {
			if !answered[uint16(i+1)] && burst < 20 {
				if _, err := c.Write(r); err != nil {
					t.Fatal(err)
				}
				sent++
				burst++
			}
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for range burst {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			if n < 2 {
				continue
			}
			answered[binary.BigEndian.Uint16(buf[:2])] = true
		}
	}
	if _, err := c.Write([]byte{1, 2, 3}); err != nil { // a runt: dropped, still read
		t.Fatal(err)
	}
	sent++
	waitFor(t, "every datagram counted", func() bool { return s.Stats().QueriesUDP == uint64(sent) })

	m := s.Metrics()
	resent := uint64(sent - 1 - len(reqs))
	for _, want := range []struct {
		qtype, rcode string
	}{{"A", "NOERROR"}, {"AAAA", "NXDOMAIN"}, {"MX", "NOERROR"}, {"A", "REFUSED"}} {
		if got := queryCount(m, "udp", want.qtype, want.rcode); got < rounds || got > rounds+resent {
			t.Errorf("queries{udp,%s,%s} = %d, want %d (+ up to %d sent again)", want.qtype, want.rcode, got, rounds, resent)
		}
	}
	var total uint64
	for _, q := range m.Queries {
		total += q.Count
	}
	if total != uint64(sent-1) {
		t.Errorf("%d queries counted, want %d", total, sent-1)
	}
	if got, want := m.Zones["example.com."], total-queryCount(m, "udp", "A", "REFUSED"); got != want {
		t.Errorf("zone example.com. counted %d, want %d", got, want)
	}
	if m.ResponseSize.Count != total || m.Duration.Count != total {
		t.Errorf("%d response sizes and %d durations, want %d each", m.ResponseSize.Count, m.Duration.Count, total)
	}
}
