package server

import (
	"encoding/binary"
	"testing"

	"github.com/miekg/dns"
)

// FuzzRespond feeds arbitrary bytes to Respond: it must not panic (a
// recovered panic counts as a failure too), and whatever it answers must
// unpack, carry the query's ID and fit the transport's limit.
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

	s := newServer(f, testConfig(), nil)
	buf := make([]byte, 65535)
	f.Fuzz(func(t *testing.T, req []byte) {
		for _, tr := range []Transport{UDP, TCP} {
			out, ok := s.Respond(req, buf, tr)
			if s.Stats().Panics != 0 {
				t.Fatalf("a panic was recovered on %x", req)
			}
			if !ok {
				continue
			}
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
	})
}
