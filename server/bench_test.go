package server

import (
	"net/netip"
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
	b.Run("udp-hit-0x20", func(b *testing.B) {
		benchRespond(b, withEDNS(question("HoSt1.ExAmPlE.cOm.", dns.TypeA), 1232, true), UDP)
	})
	b.Run("udp-nodata", func(b *testing.B) {
		benchRespond(b, withEDNS(question("host1.example.com.", dns.TypeTXT), 1232, false), UDP)
	})
	b.Run("udp-general-path", func(b *testing.B) {
		// The same hit through the general (reference) path.
		s := newServer(b, testConfig(), nil)
		req := pack(b, withEDNS(question("host1.example.com.", dns.TypeA), 1232, false))
		buf := make([]byte, 65535)
		b.ReportAllocs()
		for b.Loop() {
			s.respondWith(req, buf, UDP, false)
		}
	})
	b.Run("udp-referral", func(b *testing.B) {
		benchRespond(b, withEDNS(question("www.sub.example.com.", dns.TypeA), 1232, false), UDP)
	})
	b.Run("udp-truncated", func(b *testing.B) {
		benchRespond(b, withEDNS(question("many.big.test.", dns.TypeTXT), 1232, false), UDP)
	})
	b.Run("udp-truncated-after-cname", func(b *testing.B) { // the general path
		benchRespond(b, withEDNS(question("alias.big.test.", dns.TypeTXT), 1232, false), UDP)
	})
	b.Run("tcp-hit", func(b *testing.B) {
		benchRespond(b, withEDNS(question("host1.example.com.", dns.TypeA), 1232, false), TCP)
	})
}

// BenchmarkRespondRRL measures the cost of RRL: the same queries through
// RespondFrom with RRL off, on (a rate never reached, so every response is
// accounted and passes), and limited (every response dropped or slipped).
func BenchmarkRespondRRL(b *testing.B) {
	client := netip.MustParseAddr("192.0.2.1")
	for _, q := range []struct {
		name string
		m    *dns.Msg
	}{
		{"hit", withEDNS(question("host1.example.com.", dns.TypeA), 1232, false)},
		{"nxdomain", withEDNS(question("nope.example.com.", dns.TypeA), 1232, false)},
		{"referral", withEDNS(question("www.sub.example.com.", dns.TypeA), 1232, false)},
	} {
		for _, mode := range []struct {
			name string
			rps  int
		}{{"off", 0}, {"on", 1_000_000}, {"limited", 1}} {
			b.Run(q.name+"/rrl-"+mode.name, func(b *testing.B) {
				cfg := testConfig()
				cfg.RRL.ResponsesPerSecond = mode.rps
				s := newServer(b, cfg, nil)
				req := pack(b, q.m)
				buf := make([]byte, 65535)
				b.ReportAllocs()
				for b.Loop() {
					s.RespondFrom(req, buf, UDP, client)
				}
			})
		}
	}
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
