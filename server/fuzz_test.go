package server

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// FuzzRespond feeds arbitrary bytes to Respond: it must not panic (a
// recovered panic counts as a failure too), and whatever it answers must
// unpack, carry the query's ID and fit the transport's limit. When the fast
// path answers, its bytes must be the general path's. The same bytes then
// go through RespondFrom with RRL on (one response a second, slip 2, a
// clock that never moves) from a client picked by the first byte: passed,
// slipped and dropped responses all take their turn.
func FuzzRespond(f *testing.F) {
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(question("host1.example.com.", dns.TypeA))
	seed(question("WwW.ExAmPlE.CoM.", dns.TypeA))
	seed(question("example.com.", dns.TypeANY))
	seed(question("x.deleg.big.test.", dns.TypeA))
	seed(withEDNS(question("alias.big.test.", dns.TypeTXT), 1232, true, &dns.EDNS0_NSID{Code: dns.EDNS0NSID},
		&dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE}))
	ch := question("id.server.", dns.TypeTXT)
	ch.Question[0].Qclass = dns.ClassCHAOS
	seed(ch)
	two := question("example.com.", dns.TypeSOA)
	two.SetEdns0(4096, false)
	two.Extra = append(two.Extra, two.Extra[0])
	seed(two)
	notify := question("example.com.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	seed(notify)
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0xc0, 0x0c, 0, 1, 0, 1})
	for _, tc := range malformedCases(f) {
		f.Add(tc.wire)
	}

	s := newServer(f, testConfig(), nil)
	limited, _ := rrlServer(f, RRLConfig{ResponsesPerSecond: 1})
	buf := make([]byte, 65535)
	slowBuf := make([]byte, 65535)
	f.Fuzz(func(t *testing.T, req []byte) {
		check := func(s *Server, tr Transport, out []byte) {
			var m dns.Msg
			if err := m.Unpack(out); err != nil {
				t.Fatalf("response does not unpack: %v\nquery %x\nresponse %x", err, req, out)
			}
			if m.Id != binary.BigEndian.Uint16(req) || !m.Response {
				t.Fatalf("response ID %d QR=%v to query %x", m.Id, m.Response, req)
			}
			if tr == UDP && len(out) > s.cfg.UDPSize {
				t.Fatalf("UDP response of %d bytes", len(out))
			}
		}
		for _, tr := range []Transport{UDP, TCP} {
			q := s.queries.Get().(*query)
			fast, fastOK := s.respondFast(q, req, buf, tr)
			if fastOK {
				slow, ok := s.respondWith(req, slowBuf, tr, false)
				if !ok || !bytes.Equal(fast, slow) {
					t.Fatalf("fast path differs from the general path on %x\nfast %x\nslow %x", req, fast, slow)
				}
			}
			s.release(q)

			client := netip.AddrFrom4([4]byte{192, 0, 2, 0})
			if len(req) > 0 {
				client = netip.AddrFrom4([4]byte{192, 0, req[0] & 3, 1})
			}
			if out, ok := limited.RespondFrom(req, buf, tr, client); ok {
				check(limited, tr, out)
			}
			if limited.Stats().Panics != 0 {
				t.Fatalf("a panic was recovered with RRL on %x", req)
			}

			out, ok := s.Respond(req, buf, tr)
			if s.Stats().Panics != 0 {
				t.Fatalf("a panic was recovered on %x", req)
			}
			if !ok {
				continue
			}
			check(s, tr, out)
		}
	})
}
