package server

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestRRLFlood is the spoofed-flood figure of the README: a flood at a
// fixed rate from source addresses of one /24 (127.0.0.2 to .9: spoofing
// within a prefix is what RRL is for), against RRL at 100 responses a
// second. It logs "rrl:" with queries in and responses out, and checks
// that answers out stay within the account's one second of credit (a
// flood above the rate keeps the account in debt), that half the limited
// responses slip (slip 2), and that meanwhile
// another /24, an exempt /24 and TCP from the flooded /24 are answered.
// Bounded: 2000 queries a second for 2 seconds.
func TestRRLFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood: 2 seconds")
	}
	const (
		rps      = 100
		rate     = 2000 // queries a second
		duration = 2 * time.Second
		tick     = 10 * time.Millisecond
		sources  = 8
	)
	cfg := testConfig()
	cfg.RRL = RRLConfig{ResponsesPerSecond: rps, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.2.0/24")}}
	s := newServer(t, cfg, nil)
	addr := start(t, s)
	server := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))

	var socks []*net.UDPConn
	for i := range sources {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))})
		if err != nil {
			t.Fatalf("bind 127.0.0.%d: %v", 2+i, err)
		}
		defer c.Close()
		_ = c.SetReadBuffer(1 << 20)
		socks = append(socks, c)
	}
	req := pack(t, question("host1.example.com.", dns.TypeA))

	// Readers count answers and slips until the flood is over and drained.
	var answered, slipped, other int
	var mu sync.Mutex
	var readers sync.WaitGroup
	for _, c := range socks {
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 4096)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return // the deadline set after the flood
				}
				var m dns.Msg
				mu.Lock()
				switch {
				case m.Unpack(buf[:n]) != nil:
					other++
				case m.Truncated && len(m.Answer) == 0:
					slipped++
				case len(m.Answer) == 1:
					answered++
				default:
					other++
				}
				mu.Unlock()
			}
		}()
	}

	// The flood, paced by a ticker.
	before := s.Stats()
	sent := 0
	floodDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(floodDone)
		tk := time.NewTicker(tick)
		defer tk.Stop()
		total := int(rate * duration / time.Second)
		// Catch up on late ticks, so that the rate holds on a busy
		// machine; bounded by the count and by time.
		for sent < total && time.Since(start) < duration+time.Second {
			due := min(total, int(time.Since(start).Seconds()*rate)+1)
			for sent < due {
				if _, err := socks[sent%sources].WriteToUDP(req, server); err != nil {
					break
				}
				sent++
			}
			<-tk.C
		}
	}()

	// Meanwhile: another /24 at 25 queries a second, the exempt /24 at
	// well over the limit, TCP from the flooded /24. Each asks again once
	// after a timeout, as a resolver would: on a loaded machine the flood
	// can fill the socket buffer, and the kernel then drops a datagram
	// before the server sees it (RRL limiting these clients would show as
	// TC answers or drops on the second try too).
	legit := func(from string, n int, pause time.Duration) (ok int) {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)}, server)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 4096)
		for i := range n {
			m := question("www.example.com.", dns.TypeA)
			m.Id = uint16(i)
			for try := 0; try < 2; try++ {
				if _, err := c.Write(pack(t, m)); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				k, err := c.Read(buf)
				if ne, isNet := err.(net.Error); isNet && ne.Timeout() {
					continue
				}
				if err == nil {
					r := unpack(t, buf[:k])
					if r.Id == uint16(i) && !r.Truncated && len(r.Answer) > 0 {
						ok++
					}
				}
				break
			}
			time.Sleep(pause) // pacing of the load, not an outcome
		}
		return ok
	}
	otherOK := legit("127.0.1.1", 25, 40*time.Millisecond)
	if otherOK != 25 {
		t.Errorf("another /24: %d of 25 answered during the flood", otherOK)
	}
	exemptOK := legit("127.0.2.1", 300, 0)
	if exemptOK != 300 {
		t.Errorf("exempt /24: %d of 300 answered during the flood", exemptOK)
	}
	tc := dialFrom(t, "127.0.0.2", addr)
	if !answers(t, tc, 9) {
		t.Error("TCP from the flooded /24 not answered")
	}

	<-floodDone
	elapsed := time.Since(start)
	// Drain: until the server's count stops moving (a loaded machine may
	// lose datagrams in the socket buffers: "in" is what the server read).
	last, still := uint64(0), 0
	waitFor(t, "the flood processed", func() bool {
		n := s.Stats().QueriesUDP
		if n == last {
			still++
		} else {
			last, still = n, 0
		}
		return still >= 20 // 100ms without a query
	})
	// The flood's queries the server read: the others it read were the
	// legitimate clients' answered ones (a query of theirs the kernel
	// dropped was asked again).
	in := int(last-before.QueriesUDP) - otherOK - exemptOK
	for _, c := range socks {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	}
	readers.Wait()

	st := s.Stats()
	dropped := st.RRLDropped - before.RRLDropped
	t.Logf("rrl: %d queries sent from one /24 over %.1fs (%.0f qps), %d read by the server, responses_per_second %d, slip 2: %d answers out (%.1f%%), %d slipped (TC=1), %d dropped; another /24: 25/25 answered, exempt /24: 300/300, TCP: answered",
		sent, elapsed.Seconds(), float64(sent)/elapsed.Seconds(), in, rps, answered, 100*float64(answered)/float64(in), slipped, dropped)
	if other != 0 {
		t.Errorf("%d unexpected replies", other)
	}
	// One second of credit at the start; then, a flood above the rate
	// keeps the account in debt (BIND's semantics): only slips go out.
	wantMax := rps + rps/2
	if answered < rps || answered > wantMax {
		t.Errorf("%d answers out, want %d to %d", answered, rps, wantMax)
	}
	serverSlipped := int(st.RRLSlipped - before.RRLSlipped)
	if limited := in - answered; serverSlipped < limited*2/5 || serverSlipped > limited*3/5 {
		t.Errorf("%d slipped of %d limited, want about half", serverSlipped, limited)
	}
	if slipped > serverSlipped || int(dropped)+serverSlipped+answered != in {
		t.Errorf("counters: %d dropped + %d slipped (%d received) + %d answered != %d in", dropped, serverSlipped, slipped, answered, in)
	}
}
