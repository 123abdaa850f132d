package server

import (
	"testing"

	"github.com/miekg/dns"
)

func benchRespond(b *testing.B, m *dns.Msg, tr Transport) {
	s := newServer(b, testConfig(), nil)
	req := pack(b, m)
	buf := make([]byte, 65535)
	if _, ok := s.Respond(req, buf, tr); !ok {
		b.Fatal("dropped")
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Respond(req, buf, tr)
	}
}

func BenchmarkRespond(b *testing.B) {
	b.Run("udp-hit", func(b *testing.B) {
		benchRespond(b, withEDNS(question("host1.example.com.", dns.TypeA), 1232, false), UDP)
	})
	b.Run("udp-hit-noedns", func(b *testing.B) { benchRespond(b, question("host1.example.com.", dns.TypeA), UDP) })
	b.Run("udp-nxdomain", func(b *testing.B) {
		benchRespond(b, withEDNS(question("nope.example.com.", dns.TypeA), 1232, false), UDP)
	})
	b.Run("udp-referral", func(b *testing.B) {
		benchRespond(b, withEDNS(question("www.sub.example.com.", dns.TypeA), 1232, false), UDP)
	})
	b.Run("udp-truncated", func(b *testing.B) {
		benchRespond(b, withEDNS(question("alias.big.test.", dns.TypeTXT), 1232, false), UDP)
	})
	b.Run("tcp-hit", func(b *testing.B) {
		benchRespond(b, withEDNS(question("host1.example.com.", dns.TypeA), 1232, false), TCP)
	})
}

func BenchmarkRespondParallel(b *testing.B) {
	s := newServer(b, testConfig(), nil)
	req := pack(b, withEDNS(question("host1.example.com.", dns.TypeA), 1232, false))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 65535)
		for pb.Next() {
			s.Respond(req, buf, UDP)
		}
	})
}

// TestRespondAllocs documents the allocations per answered query. It does
// not fail yet: issue 6 sets the budget (zero) and turns this into a check.
func TestRespondAllocs(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	buf := make([]byte, 65535)
	for _, tc := range []struct {
		name string
		m    *dns.Msg
	}{
		{"udp-hit", withEDNS(question("host1.example.com.", dns.TypeA), 1232, false)},
		{"udp-nxdomain", withEDNS(question("nope.example.com.", dns.TypeA), 1232, false)},
		{"chaos", func() *dns.Msg {
			m := question("id.server.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}()},
	} {
		req := pack(t, tc.m)
		n := testing.AllocsPerRun(100, func() { s.Respond(req, buf, UDP) })
		t.Logf("%s: %.0f allocs/op", tc.name, n)
	}
}
