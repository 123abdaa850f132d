package server

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyns/anyns/zone"
	"github.com/anyns/anyns/zone/xfr"
)

const xfrKey, xfrSecret = "xfr-key.", "a2V5IGZvciB0aGUgYW55bnMgeGZyIHRlc3RzIQ=="

// xfrZone parses a version of example.net. with serial and n hosts.
func xfrZone(t testing.TB, serial uint32, n int, extra ...string) *zone.Zone {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN example.net.\n$TTL 300\n@ SOA ns1 hostmaster %d 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\n", serial)
	for i := range n {
		fmt.Fprintf(&b, "host%d A 198.51.%d.%d\n", i, (i/250)%250, i%250+1)
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "example.net.zone")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	z, err := zone.ParseFile(p, dir)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func snapOf(t testing.TB, zs ...*zone.Zone) *zone.Snapshot {
	t.Helper()
	s, err := zone.NewSnapshot(zs...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type xfrEnv struct {
	addr    string
	store   *zone.Store
	journal *xfr.Journal
	s       *Server
}

func startXFR(t *testing.T, cfg Config, z *zone.Zone) *xfrEnv {
	t.Helper()
	e := &xfrEnv{store: zone.NewStore(snapOf(t, z)), journal: xfr.NewJournal(0)}
	e.journal.Observe(e.store.Load())
	if cfg.TSIGKeys == nil {
		cfg.TSIGKeys = map[string]TSIGKey{xfrKey: {Algorithm: "hmac-sha256", Secret: xfrSecret}}
	}
	cfg.IXFR = e.journal.IXFR
	e.s = newServer(t, cfg, e.store)
	e.addr = start(t, e.s)
	return e
}

// publish stores z and records it in the journal, as cmd/anyns does.
func (e *xfrEnv) publish(t testing.TB, z *zone.Zone) {
	e.store.Store(snapOf(t, z))
	e.journal.Observe(e.store.Load())
}

// transfer runs m with dns.Transfer and returns the envelopes.
func transfer(t *testing.T, addr string, m *dns.Msg, signed bool) ([]*dns.Envelope, error) {
	t.Helper()
	tr := &dns.Transfer{DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second}
	if signed {
		tr.TsigSecret = map[string]string{xfrKey: xfrSecret}
		m.SetTsig(xfrKey, dns.HmacSHA256, 300, time.Now().Unix())
	}
	ch, err := tr.In(m, addr)
	if err != nil {
		return nil, err
	}
	var envs []*dns.Envelope
	for e := range ch {
		if e.Error != nil {
			return envs, e.Error
		}
		envs = append(envs, e)
	}
	return envs, nil
}

func allRRs(envs []*dns.Envelope) []dns.RR {
	var out []dns.RR
	for _, e := range envs {
		out = append(out, e.RR...)
	}
	return out
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func TestAXFRMultiMessage(t *testing.T) {
	z := xfrZone(t, 1, 3000)
	e := startXFR(t, Config{Transfer: []TransferRule{{Zone: "example.net.", Allow: loopback}}}, z)
	m := new(dns.Msg)
	m.SetAxfr("example.net.")
	envs, err := transfer(t, e.addr, m, false)
	if err != nil {
		t.Fatal(err)
	}
	rrs := allRRs(envs)
	if len(envs) < 2 {
		t.Errorf("%d messages, want several", len(envs))
	}
	if want := z.Records + 1; len(rrs) != want {
		t.Fatalf("%d records, want %d", len(rrs), want)
	}
	if rrs[0].Header().Rrtype != dns.TypeSOA || rrs[len(rrs)-1].Header().Rrtype != dns.TypeSOA {
		t.Errorf("SOA not first and last")
	}
}

func TestTransferRefused(t *testing.T) {
	z := xfrZone(t, 1, 10)
	for _, tc := range []struct {
		name   string
		rules  []TransferRule
		signed bool
	}{
		{"no rules", nil, false},
		{"other prefix", []TransferRule{{Zone: "*", Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}}, false},
		{"other zone", []TransferRule{{Zone: "example.org.", Allow: loopback}}, false},
		{"key required", []TransferRule{{Zone: "example.net.", Keys: []string{xfrKey}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startXFR(t, Config{Transfer: tc.rules}, z)
			m := new(dns.Msg)
			m.SetAxfr("example.net.")
			r := exchange(t, "tcp", e.addr, m)
			if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
				t.Errorf("rcode %s, %d answers; want REFUSED", dns.RcodeToString[r.Rcode], len(r.Answer))
			}
		})
	}
	t.Run("unconfigured server", func(t *testing.T) {
		s := newServer(t, testConfig(), zone.NewStore(snapOf(t, z)))
		addr := start(t, s)
		m := new(dns.Msg)
		m.SetAxfr("example.net.")
		if r := exchange(t, "tcp", addr, m); r.Rcode != dns.RcodeRefused {
			t.Errorf("rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
		}
	})
}

func TestAXFRTSIG(t *testing.T) {
	z := xfrZone(t, 7, 2000)
	e := startXFR(t, Config{Transfer: []TransferRule{{Zone: "*", Keys: []string{xfrKey}}}}, z)
	m := new(dns.Msg)
	m.SetAxfr("example.net.")
	// dns.Transfer verifies the TSIG of every message.
	envs, err := transfer(t, e.addr, m, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) < 2 || len(allRRs(envs)) != z.Records+1 {
		t.Errorf("%d messages, %d records", len(envs), len(allRRs(envs)))
	}
}

func TestTSIGErrors(t *testing.T) {
	z := xfrZone(t, 7, 5)
	e := startXFR(t, Config{Transfer: []TransferRule{{Zone: "*", Keys: []string{xfrKey}}}}, z)
	for _, tc := range []struct {
		name, key, alg, secret string
		skew                   time.Duration
		want                   uint16
	}{
		{"good", xfrKey, dns.HmacSHA256, xfrSecret, 0, 0},
		{"bad key", "other.", dns.HmacSHA256, xfrSecret, 0, dns.RcodeBadKey},
		{"bad algorithm", xfrKey, dns.HmacSHA512, xfrSecret, 0, dns.RcodeBadKey},
		{"bad sig", xfrKey, dns.HmacSHA256, "b3RoZXIgc2VjcmV0", 0, dns.RcodeBadSig},
		{"bad time", xfrKey, dns.HmacSHA256, xfrSecret, -time.Hour, dns.RcodeBadTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, net := range []string{"udp", "tcp"} {
				m := question("example.net.", dns.TypeSOA)
				m.SetTsig(tc.key, tc.alg, 300, time.Now().Add(tc.skew).Unix())
				wire, reqMAC, err := dns.TsigGenerate(m, tc.secret, "", false)
				if err != nil {
					t.Fatal(err)
				}
				var out []byte
				if net == "udp" {
					out = rawUDP(t, e.addr, wire, 2*time.Second)
				} else {
					out = rawTCP(t, e.addr, wire)
				}
				r := unpack(t, out)
				ts := r.IsTsig()
				if ts == nil {
					t.Fatalf("%s: response not signed: %v", net, r)
				}
				if ts.Error != tc.want {
					t.Errorf("%s: TSIG error %d, want %d", net, ts.Error, tc.want)
				}
				if tc.want == 0 {
					if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
						t.Errorf("%s: %v", net, r)
					}
					if err := dns.TsigVerify(out, xfrSecret, reqMAC, false); err != nil {
						t.Errorf("%s: response MAC: %v", net, err)
					}
				} else if r.Rcode != dns.RcodeNotAuth {
					t.Errorf("%s: rcode %s, want NOTAUTH", net, dns.RcodeToString[r.Rcode])
				}
				if tc.want == dns.RcodeBadTime {
					if ts.OtherLen != 6 {
						t.Errorf("BADTIME without our time")
					}
					// miekg/dns verifies no NOTAUTH message: check that
					// it is signed at least.
					if ts.MACSize == 0 {
						t.Errorf("BADTIME response not signed")
					}
				}
			}
		})
	}
}

func TestIXFR(t *testing.T) {
	v1 := xfrZone(t, 1, 100)
	e := startXFR(t, Config{Transfer: []TransferRule{{Zone: "*", Allow: loopback}}}, v1)
	e.publish(t, xfrZone(t, 2, 100, "new1 A 192.0.2.9"))
	e.publish(t, xfrZone(t, 3, 99, "new1 A 192.0.2.9", "new2 TXT hello"))

	ixfr := func(serial uint32) []dns.RR {
		m := new(dns.Msg)
		m.SetIxfr("example.net.", serial, "ns1.example.net.", "hostmaster.example.net.")
		envs, err := transfer(t, e.addr, m, false)
		if err != nil {
			t.Fatal(err)
		}
		return allRRs(envs)
	}
	t.Run("from journal", func(t *testing.T) {
		rrs := ixfr(1)
		// SOA3, SOA1, -, SOA2, +new1, SOA2, -host99, SOA3, +new2, SOA3
		var soas []uint32
		for _, rr := range rrs {
			if s, ok := rr.(*dns.SOA); ok {
				soas = append(soas, s.Serial)
			}
		}
		if fmt.Sprint(soas) != "[3 1 2 2 3 3]" || len(rrs) != 9 {
			t.Errorf("SOA serials %v, %d records:\n%v", soas, len(rrs), rrs)
		}
	})
	t.Run("from 2", func(t *testing.T) {
		if rrs := ixfr(2); len(rrs) != 6 {
			t.Errorf("%d records:\n%v", len(rrs), rrs)
		}
	})
	t.Run("unknown serial falls back to full zone", func(t *testing.T) {
		rrs := ixfr(100000)
		// Serial 100000 is newer than 3: up to date, SOA only.
		if len(rrs) != 1 {
			t.Errorf("%d records", len(rrs))
		}
		rrs = ixfr(0)
		if want := e.store.Load().Zone("example.net.").Records + 1; len(rrs) != want {
			t.Errorf("%d records, want %d (AXFR-style)", len(rrs), want)
		}
	})
	t.Run("udp", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetIxfr("example.net.", 1, "ns1.example.net.", "hostmaster.example.net.")
		r := exchange(t, "udp", e.addr, m)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Serial != 3 {
			t.Errorf("IXFR over UDP: %v", r)
		}
		m.SetAxfr("example.net.")
		if r := exchange(t, "udp", e.addr, m); r.Rcode != dns.RcodeNotImplemented {
			t.Errorf("AXFR over UDP: %s", dns.RcodeToString[r.Rcode])
		}
	})
}

func TestNotifyIn(t *testing.T) {
	z := xfrZone(t, 1, 1)
	var got atomic.Value
	e := startXFR(t, Config{Notify: func(zone string, from netip.Addr) bool {
		got.Store(zone + " " + from.String())
		return zone == "example.net."
	}}, z)
	for _, tc := range []struct {
		zone string
		want int
	}{{"example.net.", dns.RcodeSuccess}, {"example.org.", dns.RcodeRefused}} {
		m := new(dns.Msg)
		m.SetNotify(tc.zone)
		r := exchange(t, "udp", e.addr, m)
		if r.Rcode != tc.want || r.Opcode != dns.OpcodeNotify || len(r.Question) != 1 {
			t.Errorf("%s: %v", tc.zone, r)
		}
		if tc.want == dns.RcodeSuccess && !r.Authoritative {
			t.Errorf("%s: AA not set", tc.zone)
		}
		if s, _ := got.Load().(string); s != tc.zone+" 127.0.0.1" {
			t.Errorf("Notify called with %q", s)
		}
	}
	m := new(dns.Msg)
	m.SetNotify("example.net.")
	m.SetTsig("other.", dns.HmacSHA256, 300, time.Now().Unix())
	wire, _, _ := dns.TsigGenerate(m, xfrSecret, "", false)
	if r := unpack(t, rawUDP(t, e.addr, wire, 2*time.Second)); r.Rcode != dns.RcodeNotAuth {
		t.Errorf("bad key NOTIFY: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestExpired(t *testing.T) {
	z := xfrZone(t, 1, 1)
	var expired atomic.Bool
	e := startXFR(t, Config{Expired: func(zone string) bool { return zone == "example.net." && expired.Load() }}, z)
	for _, exp := range []bool{false, true} {
		expired.Store(exp)
		want := dns.RcodeSuccess
		if exp {
			want = dns.RcodeServerFailure
		}
		for _, net := range []string{"udp", "tcp"} {
			if r := exchange(t, net, e.addr, question("Host0.example.net.", dns.TypeA)); r.Rcode != want {
				t.Errorf("expired=%v %s: rcode %s", exp, net, dns.RcodeToString[r.Rcode])
			}
		}
	}
}

func TestTransferConfigErrors(t *testing.T) {
	cfg := Config{
		TSIGKeys: map[string]TSIGKey{"k.": {Algorithm: "md5", Secret: "!!"}},
		Transfer: []TransferRule{{Zone: "bad..name", Keys: []string{"missing."}}},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"algorithm", "transfer[0].zone"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// rawTCP sends one framed message over TCP and returns the first reply.
func rawTCP(t *testing.T, addr string, wire []byte) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(append([]byte{byte(len(wire) >> 8), byte(len(wire))}, wire...)); err != nil {
		t.Fatal(err)
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, int(l[0])<<8|int(l[1]))
	if _, err := io.ReadFull(c, out); err != nil {
		t.Fatal(err)
	}
	return out
}
