package server

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// malformedCase is a hostile packet and what the server must do with it:
// drop it (no reply), or reply with rcode (question present or not).
type malformedCase struct {
	name     string
	wire     []byte
	drop     bool
	rcode    int
	question bool
}

// hdr returns a query header with ID 0x4242 and the given counts.
func hdr(qd, an, ns, ar uint16) []byte {
	b := []byte{0x42, 0x42, 0, 0}
	for _, c := range []uint16{qd, an, ns, ar} {
		b = binary.BigEndian.AppendUint16(b, c)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// malformedCases are the hostile packets of issue 7. They also seed
// FuzzRespond.
func malformedCases(t testing.TB) []malformedCase {
	qname := []byte("\x05host1\x07example\x03com\x00")
	typeA := []byte{0, 1, 0, 1}
	good := cat(hdr(1, 0, 0, 0), qname, typeA)
	long := []byte{}
	for range 5 {
		long = append(long, 60)
		for range 60 {
			long = append(long, 'a')
		}
	}
	long = append(long, 0) // 306 bytes: over 255
	opt := func(rdata []byte) []byte {
		b := []byte{0, 0, 41, 0x10, 0, 0, 0, 0, 0}
		b = binary.BigEndian.AppendUint16(b, uint16(len(rdata)))
		return append(b, rdata...)
	}
	qr := cat(good)
	qr[2] |= 0x80
	return []malformedCase{
		{name: "empty", wire: []byte{}, drop: true},
		{name: "one byte", wire: []byte{0x42}, drop: true},
		{name: "header cut at 11 bytes", wire: hdr(1, 0, 0, 0)[:11], drop: true},
		{name: "response (QR=1)", wire: qr, drop: true},
		{name: "header only, QDCOUNT 0", wire: hdr(0, 0, 0, 0), rcode: dns.RcodeFormatError},
		{name: "QDCOUNT 1, no question", wire: hdr(1, 0, 0, 0), rcode: dns.RcodeFormatError},
		{name: "question cut in the name", wire: cat(hdr(1, 0, 0, 0), qname[:7]), rcode: dns.RcodeFormatError},
		{name: "question cut in the type", wire: cat(hdr(1, 0, 0, 0), qname, typeA[:3]), rcode: dns.RcodeFormatError},
		{name: "pointer to itself", wire: cat(hdr(1, 0, 0, 0), []byte{0xc0, 12}, typeA), rcode: dns.RcodeFormatError},
		{name: "pointer loop of two", wire: cat(hdr(1, 0, 0, 0), []byte{1, 'a', 0xc0, 12}, typeA), rcode: dns.RcodeFormatError},
		{name: "pointer forward", wire: cat(hdr(1, 0, 0, 0), []byte{0xc0, 18}, typeA, qname), rcode: dns.RcodeFormatError},
		{name: "pointer beyond the packet", wire: cat(hdr(1, 0, 0, 0), []byte{0xc3, 0xff}, typeA), rcode: dns.RcodeFormatError},
		{name: "label of 64 bytes", wire: cat(hdr(1, 0, 0, 0), []byte{64}, make([]byte, 64), []byte{0}, typeA), rcode: dns.RcodeFormatError},
		{name: "label type 0x80", wire: cat(hdr(1, 0, 0, 0), []byte{0x80, 0}, typeA), rcode: dns.RcodeFormatError},
		{name: "name over 255 bytes", wire: cat(hdr(1, 0, 0, 0), long, typeA), rcode: dns.RcodeFormatError},
		{name: "ARCOUNT without records", wire: cat(good[:10], []byte{0, 3}, good[12:]), rcode: dns.RcodeFormatError, question: true},
		{name: "RDLENGTH beyond the packet", wire: cat(hdr(1, 0, 0, 1), qname, typeA, opt(nil)[:9], []byte{0, 200}, []byte{0, 3}), rcode: dns.RcodeFormatError, question: true},
		{name: "OPT option length beyond RDATA", wire: cat(hdr(1, 0, 0, 1), qname, typeA, opt([]byte{0, 3, 0, 10, 1, 2})), rcode: dns.RcodeFormatError, question: true},
		{name: "OPT option cut in its header", wire: cat(hdr(1, 0, 0, 1), qname, typeA, opt([]byte{0, 3, 0})), rcode: dns.RcodeFormatError, question: true},
		{name: "OPT keepalive of 3 bytes", wire: cat(hdr(1, 0, 0, 1), qname, typeA, opt([]byte{0, 11, 0, 3, 1, 2, 3})), rcode: dns.RcodeFormatError, question: true},
		{name: "ANCOUNT 65535", wire: cat(hdr(1, 0xffff, 0, 0), qname, typeA), rcode: dns.RcodeFormatError, question: true},
		// miekg/dns, NSD and Knot DNS ignore bytes after the last record.
		{name: "trailing garbage", wire: cat(good, []byte{0xde, 0xad, 0xbe, 0xef}), rcode: dns.RcodeSuccess, question: true},
		{name: "trailing garbage after OPT", wire: cat(hdr(1, 0, 0, 1), qname, typeA, opt(nil), []byte{1, 2, 3}), rcode: dns.RcodeSuccess, question: true},
	}
}

// checkMalformed checks one reply (nil: none) against tc.
func checkMalformed(t *testing.T, tc malformedCase, out []byte) {
	t.Helper()
	if tc.drop {
		if out != nil {
			t.Fatalf("answered %x, want a drop", out)
		}
		return
	}
	if out == nil {
		t.Fatal("dropped, want a reply")
	}
	r := unpack(t, out) // every response parses back
	if r.Id != 0x4242 || !r.Response {
		t.Errorf("ID %#x QR=%v", r.Id, r.Response)
	}
	if r.Rcode != tc.rcode {
		t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
	}
	if got := len(r.Question) == 1; got != tc.question {
		t.Errorf("question %v, want present=%v", r.Question, tc.question)
	}
	if tc.rcode != dns.RcodeSuccess && len(r.Answer)+len(r.Ns) != 0 {
		t.Errorf("records in an error reply: %v", r)
	}
	if tc.rcode == dns.RcodeSuccess && len(r.Answer) == 0 {
		t.Errorf("no answer: %v", r)
	}
}

// TestMalformedPackets sends every hostile packet through Respond (UDP and
// TCP, fast path first as in production) and checks the outcome; no panic
// may be recovered.
func TestMalformedPackets(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	for _, tc := range malformedCases(t) {
		for _, tr := range []Transport{UDP, TCP} {
			t.Run(tc.name+"/"+tr.String(), func(t *testing.T) {
				out, ok := s.Respond(tc.wire, make([]byte, 65535), tr)
				if !ok {
					out = nil
				}
				checkMalformed(t, tc, out)
			})
		}
	}
	if st := s.Stats(); st.Panics != 0 {
		t.Errorf("%d panics recovered", st.Panics)
	}
}

// TestMalformedPacketsOverSockets sends every hostile packet over UDP and
// over one TCP connection (framed), and checks the outcome there. A
// dropped packet is known to be processed when Stats.Dropped moves.
func TestMalformedPacketsOverSockets(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	addr := start(t, s)
	udp, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	buf := make([]byte, 65535)
	for _, tc := range malformedCases(t) {
		t.Run(tc.name+"/udp", func(t *testing.T) {
			if len(tc.wire) == 0 {
				t.Skip("an empty datagram is the empty case of Respond")
			}
			before := s.Stats().Dropped
			if _, err := udp.Write(tc.wire); err != nil {
				t.Fatal(err)
			}
			if tc.drop {
				waitFor(t, "Dropped", func() bool { return s.Stats().Dropped == before+1 })
				// Processed: a reply would be on its way already.
				_ = udp.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if n, err := udp.Read(buf); err == nil {
					t.Fatalf("reply %x to a dropped packet", buf[:n])
				}
				return
			}
			_ = udp.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := udp.Read(buf)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			checkMalformed(t, tc, buf[:n])
		})
		t.Run(tc.name+"/tcp", func(t *testing.T) {
			before := s.Stats().Dropped
			frame := binary.BigEndian.AppendUint16(nil, uint16(len(tc.wire)))
			if _, err := tcp.Write(append(frame, tc.wire...)); err != nil {
				t.Fatal(err)
			}
			if tc.drop {
				waitFor(t, "Dropped", func() bool { return s.Stats().Dropped == before+1 })
				return
			}
			_ = tcp.SetReadDeadline(time.Now().Add(5 * time.Second))
			var l [2]byte
			if _, err := readFull(tcp, l[:]); err != nil {
				t.Fatalf("no reply: %v", err)
			}
			n := int(binary.BigEndian.Uint16(l[:]))
			if _, err := readFull(tcp, buf[:n]); err != nil {
				t.Fatalf("reply cut: %v", err)
			}
			checkMalformed(t, tc, buf[:n])
		})
	}
	// After all that, the TCP connection still answers.
	q := question("host1.example.com.", dns.TypeA)
	q.Id = 77
	if _, err := tcp.Write(tcpQuery(t, q)); err != nil {
		t.Fatal(err)
	}
	if r := readFrame(t, tcp); r.Id != 77 || len(r.Answer) != 1 {
		t.Fatalf("after the hostile frames: %v", r)
	}
	if st := s.Stats(); st.Panics != 0 {
		t.Errorf("%d panics recovered", st.Panics)
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestTCPFraming sends, on one connection, zero-length frames, a query
// split byte by byte with each byte in its own write, and a query whose
// length prefix is split from its body: each query is answered, the empty
// frames are dropped, and the connection lives on.
func TestTCPFraming(t *testing.T) {
	s := newServer(t, testConfig(), nil)
	addr := start(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	write := func(b []byte) {
		t.Helper()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	q := func(id uint16) []byte {
		m := question("host1.example.com.", dns.TypeA)
		m.Id = id
		return tcpQuery(t, m)
	}
	write([]byte{0, 0, 0, 0}) // two empty frames
	waitFor(t, "two drops", func() bool { return s.Stats().Dropped == 2 })
	for _, b := range q(1) {
		write([]byte{b})
	}
	if r := readFrame(t, c); r.Id != 1 || len(r.Answer) != 1 {
		t.Fatalf("byte by byte: %v", r)
	}
	f := q(2)
	write(f[:1])
	write(f[1:2])
	write(f[2:])
	if r := readFrame(t, c); r.Id != 2 || len(r.Answer) != 1 {
		t.Fatalf("split prefix: %v", r)
	}
	write(append([]byte{0, 0}, q(3)...))
	if r := readFrame(t, c); r.Id != 3 || len(r.Answer) != 1 {
		t.Fatalf("after an empty frame: %v", r)
	}
}
