package server

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"go/parser"
	"go/token"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestIntegrationAnswers(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	addr := start(t, s)
	soa := "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2026112201 7200 3600 1209600 300"
	cases := []Case{
		{Name: "A", Qname: "host1.example.com.", Qtype: dns.TypeA, AA: true,
			Answer: []string{"host1.example.com. 3600 IN A 192.0.2.10"}},
		{Name: "referral", Qname: "sub.example.com.", Qtype: dns.TypeA,
			Ns: []string{
				"sub.example.com. 3600 IN NS ns1.sub.example.com.",
				"sub.example.com. 3600 IN NS ns2.sub.example.com.",
				"sub.example.com. 3600 IN NS ns.example.net.",
			},
			Extra: []string{
				"ns1.sub.example.com. 3600 IN A 192.0.2.101",
				"ns2.sub.example.com. 3600 IN AAAA 2001:db8::102",
			}},
		{Name: "NXDOMAIN", Qname: "nope.example.com.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, AA: true, Ns: []string{soa}},
		{Name: "REFUSED", Qname: "www.example.org.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
	}
	for _, tc := range cases {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.Name+"/"+network, func(t *testing.T) {
				checkCase(t, exchange(t, network, addr, question(tc.Qname, tc.Qtype)), tc)
			})
		}
	}
	if st := s.Stats(); st.QueriesUDP != uint64(len(cases)) || st.QueriesTCP != uint64(len(cases)) {
		t.Errorf("Queries UDP %d TCP %d, want %d each", st.QueriesUDP, st.QueriesTCP, len(cases))
	}
}

func TestIntegrationIdentity(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	addr := start(t, s)
	for _, network := range []string{"udp", "tcp"} {
		q := withEDNS(question("example.com.", dns.TypeSOA), 1232, false, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
		r := exchange(t, network, addr, q)
		o := r.IsEdns0()
		if o == nil || len(o.Option) != 1 {
			t.Fatalf("%s: OPT %v, want NSID", network, o)
		}
		if got, _ := hex.DecodeString(o.Option[0].(*dns.EDNS0_NSID).Nsid); string(got) != "anyns-test-1" {
			t.Errorf("%s: NSID %q", network, got)
		}
		for name, want := range map[string]string{"id.server.": "anyns-test-1", "hostname.bind.": "anyns-test-1", "version.bind.": "anyns 0.0-test"} {
			q := question(name, dns.TypeTXT)
			q.Question[0].Qclass = dns.ClassCHAOS
			r := exchange(t, network, addr, q)
			if len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != want {
				t.Errorf("%s CH TXT %s: %v", network, name, r.Answer)
			}
		}
	}
}

func TestIntegrationTruncationThenTCP(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	addr := start(t, s)
	q := withEDNS(question("alias.big.test.", dns.TypeTXT), 1232, false)
	r := exchange(t, "udp", addr, q)
	if !r.Truncated || len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeCNAME {
		t.Fatalf("UDP: TC=%v answer %v, want TC and the CNAME only", r.Truncated, r.Answer)
	}
	r = exchange(t, "tcp", addr, q)
	if r.Truncated || len(r.Answer) != 41 {
		t.Fatalf("TCP: TC=%v %d answers, want 41", r.Truncated, len(r.Answer))
	}
	if st := s.Stats(); st.Truncated != 1 {
		t.Errorf("Truncated %d, want 1", st.Truncated)
	}
}

func TestIntegrationEDNSErrors(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	addr := start(t, s)
	q := withEDNS(question("example.com.", dns.TypeSOA), 1232, true)
	q.IsEdns0().SetVersion(1)
	r := exchange(t, "udp", addr, q)
	if r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil || r.IsEdns0().Version() != 0 || !r.IsEdns0().Do() {
		t.Errorf("BADVERS: rcode %d OPT %v", r.Rcode, r.IsEdns0())
	}
	two := question("example.com.", dns.TypeSOA)
	two.SetEdns0(1232, false)
	two.Extra = append(two.Extra, two.Extra[0])
	if r := exchange(t, "udp", addr, two); r.Rcode != dns.RcodeFormatError {
		t.Errorf("two OPTs: rcode %d", r.Rcode)
	}
	ka := withEDNS(question("example.com.", dns.TypeSOA), 1232, false, &dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE})
	r = exchange(t, "tcp", addr, ka)
	if o := r.IsEdns0(); o == nil || len(o.Option) != 1 || o.Option[0].(*dns.EDNS0_TCP_KEEPALIVE).Timeout != 100 {
		t.Errorf("keepalive over TCP: %v", r.IsEdns0())
	}
	for _, op := range []int{dns.OpcodeNotify, dns.OpcodeUpdate} {
		m := question("example.com.", dns.TypeSOA)
		m.Opcode = op
		if r := exchange(t, "udp", addr, m); r.Rcode != dns.RcodeNotImplemented {
			t.Errorf("opcode %d: rcode %d", op, r.Rcode)
		}
	}
}

func TestIntegrationDrop(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	addr := start(t, s)
	qr := pack(t, question("example.com.", dns.TypeSOA))
	qr[2] |= 0x80
	for name, wire := range map[string][]byte{"short": {0, 1, 2, 3, 4}, "QR=1": qr} {
		before := s.Stats().Dropped
		if reply := rawUDP(t, addr, wire, 300*time.Millisecond); reply != nil {
			t.Errorf("%s: got a reply", name)
		}
		waitFor(t, "Dropped counter", func() bool { return s.Stats().Dropped == before+1 })
	}
}

// tcpQuery frames m for TCP.
func tcpQuery(t *testing.T, m *dns.Msg) []byte {
	b := pack(t, m)
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

func readFrame(t *testing.T, c net.Conn) *dns.Msg {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		t.Fatalf("read length: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read message: %v", err)
	}
	return unpack(t, b)
}

// waitClosed reads c until the server closes it (EOF or reset).
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1024)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection still open")
		}
		return
	}
}

func TestTCPPipelined(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	addr := start(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := []string{"host1.example.com.", "www.example.com.", "nope.example.com.", "example.net.", "many.big.test.", "mail.example.com."}
	var all []byte
	want := map[uint16]string{}
	for i, n := range names {
		q := question(n, dns.TypeA)
		q.Id = uint16(1000 + i)
		want[q.Id] = n
		all = append(all, tcpQuery(t, q)...)
	}
	// A zero-length frame in between is dropped and the connection lives on.
	all = append(all, 0, 0)
	if _, err := c.Write(all); err != nil {
		t.Fatal(err)
	}
	for range names {
		r := readFrame(t, c)
		n, ok := want[r.Id]
		if !ok || r.Question[0].Name != n {
			t.Fatalf("unexpected response %d %v", r.Id, r.Question)
		}
		delete(want, r.Id)
	}
	// A query sent byte by byte.
	q := question("host1.example.com.", dns.TypeA)
	q.Id = 4242
	for _, b := range tcpQuery(t, q) {
		if _, err := c.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	if r := readFrame(t, c); r.Id != 4242 || len(r.Answer) != 1 {
		t.Fatalf("byte by byte: %v", r)
	}
	if st := s.Stats(); st.QueriesTCP != uint64(len(names)+2) || st.Dropped != 1 {
		t.Errorf("QueriesTCP %d Dropped %d, want %d and 1", st.QueriesTCP, st.Dropped, len(names)+2)
	}
}

func TestTCPLimits(t *testing.T) {
	cfg := testConfig()
	cfg.TCPMaxConnections = 2
	cfg.TCPIdleTimeout = 300 * time.Millisecond
	s := newServer(t, cfg, nil)
	addr := start(t, s)

	t.Run("idle timeout", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(tcpQuery(t, question("host1.example.com.", dns.TypeA))); err != nil {
			t.Fatal(err)
		}
		readFrame(t, c)
		waitClosed(t, c)
	})
	t.Run("too large", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte{0xff, 0xff, 1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c)
	})
	t.Run("cut short", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte{0, 40, 1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		waitClosed(t, c)
	})
	waitFor(t, "connections closed", func() bool { return s.Stats().TCPConns == 0 })
	t.Run("max connections", func(t *testing.T) {
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for i := range 2 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
			q := question("host1.example.com.", dns.TypeA)
			q.Id = uint16(i)
			if _, err := c.Write(tcpQuery(t, q)); err != nil {
				t.Fatal(err)
			}
			readFrame(t, c)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		waitClosed(t, c)
		if st := s.Stats(); st.TCPRefused != 1 {
			t.Errorf("TCPRefused %d, want 1", st.TCPRefused)
		}
	})
}

func TestWildcardListenerSource(t *testing.T) {
	for _, tc := range []struct{ network, listen, query string }{
		{"udp4", "0.0.0.0:0", "127.0.0.2"},
		{"udp", "[::]:0", "127.0.0.2"}, // dual stack
		{"udp6", "[::]:0", "::1"},
	} {
		t.Run(tc.network+"/"+tc.query, func(t *testing.T) {
			pc, err := net.ListenPacket(tc.network, tc.listen)
			if err != nil {
				t.Skipf("listen %s: %v", tc.listen, err)
			}
			if tc.query == "::1" {
				if c, err := net.ListenPacket("udp", "[::1]:0"); err != nil {
					pc.Close()
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					c.Close()
				}
			}
			s := newServer(t, testConfig(), nil)
			serve(t, s, nil, pc)
			port := pc.LocalAddr().(*net.UDPAddr).Port
			addr := net.JoinHostPort(tc.query, strconv.Itoa(port))
			// dns.Client uses a connected socket: a reply from any other
			// source address is not delivered and the exchange times out.
			r := exchange(t, "udp", addr, question("host1.example.com.", dns.TypeA))
			if len(r.Answer) != 1 {
				t.Errorf("answer %v", r.Answer)
			}
		})
	}
}

func TestIntegrationPanic(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	s.testHookRespond = func(m *dns.Msg) {
		if len(m.Question) == 1 && m.Question[0].Name == "panic.example.com." {
			panic("injected")
		}
	}
	addr := start(t, s)
	for _, network := range []string{"udp", "tcp"} {
		if r := exchange(t, network, addr, question("panic.example.com.", dns.TypeA)); r.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: rcode %d, want SERVFAIL", network, r.Rcode)
		}
		if r := exchange(t, network, addr, question("host1.example.com.", dns.TypeA)); r.Rcode != dns.RcodeSuccess {
			t.Errorf("%s after panic: rcode %d", network, r.Rcode)
		}
	}
	if st := s.Stats(); st.Panics != 2 {
		t.Errorf("Panics %d, want 2", st.Panics)
	}
}

func TestShutdown(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	ln, pc := listenBoth(t, "127.0.0.1")
	defer pc.Close()
	udpDone := make(chan error, 1)
	tcpDone := make(chan error, 1)
	go func() { udpDone <- s.ServeUDP(pc) }()
	go func() { tcpDone <- s.ServeTCP(ln) }()
	addr := ln.Addr().String()
	exchange(t, "udp", addr, question("host1.example.com.", dns.TypeA))
	// An idle TCP connection must not hold Shutdown up.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(tcpQuery(t, question("host1.example.com.", dns.TypeA))); err != nil {
		t.Fatal(err)
	}
	readFrame(t, c)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	for name, ch := range map[string]chan error{"ServeUDP": udpDone, "ServeTCP": tcpDone} {
		select {
		case err := <-ch:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("%s: %v", name, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s did not return", name)
		}
	}
	waitClosed(t, c)
	if err := s.ServeUDP(pc); !errors.Is(err, ErrServerClosed) {
		t.Errorf("ServeUDP after Shutdown: %v", err)
	}
}

// TestNoFmtInQueryPath keeps fmt out of the files on the query path (STYLE
// section 6): fmt is only for configuration errors.
func TestNoFmtInQueryPath(t *testing.T) {
	fset := token.NewFileSet()
	for _, file := range []string{"respond.go", "fast.go", "rrl.go", "udp.go", "tcp.go"} {
		f, err := parser.ParseFile(fset, file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if imp.Path.Value == `"fmt"` {
				t.Errorf("%s imports fmt", file)
			}
		}
	}
}
