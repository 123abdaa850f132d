package zone

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"
)

// TestPrecomputedMessages checks every precomputed message of the shipped
// zones and of a generated large zone: with the question put back between
// its header and the rest, it is, byte for byte, the message miekg/dns
// packs (Msg.Pack, compression on) for what Lookup answers.
func TestPrecomputedMessages(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "big.example.zone")
	writeBigZone(t, path, 20_000)
	big, err := ParseFile(path, dir)
	if err != nil {
		t.Fatal(err)
	}
	shipped := shippedSnapshot(t)
	for _, s := range []*Snapshot{shipped, mustSnapshot(t, big)} {
		checked := 0
		for _, z := range s.Zones() {
			if !z.Precomputed() {
				t.Fatalf("%s: no precomputed answers", z.Origin)
			}
			for name, n := range z.allNodes() {
				for _, set := range z.setsOf(n) {
					if checkPrecomputed(t, s, name, set.typ) {
						checked++
					}
				}
			}
		}
		if checked == 0 {
			t.Fatal("no precomputed message checked")
		}
		t.Logf("%d precomputed messages checked", checked)
	}
}

// checkPrecomputed compares the precomputed message for name/qtype in s, if
// there is one, with the packed Lookup response, and reports whether there
// was one.
func checkPrecomputed(t *testing.T, s *Snapshot, name string, qtype uint16) bool {
	t.Helper()
	w := s.Precomputed(name, qtype)
	if w == nil {
		return false
	}
	var r Response
	s.Lookup(name, qtype, &r)
	m := new(dns.Msg)
	m.Response = true
	m.Authoritative = r.Authoritative()
	m.Rcode = r.Result.Rcode()
	m.Compress = true
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
	m.Answer, m.Ns, m.Extra = r.Answer, r.Ns, r.Extra
	want, err := m.Pack()
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	}
	var nb [256]byte
	nlen, err := dns.PackDomainName(name, nb[:], 0, nil, false)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	qEnd := headerLen + nlen + 4
	got := append(append(append([]byte(nil), w[:headerLen]...), want[headerLen:qEnd]...), w[headerLen:]...)
	if !bytes.Equal(got, want) {
		t.Errorf("%s %s: precomputed message with the question\n%x\nwant\n%x", name, dns.TypeToString[qtype], got, want)
	}
	return true
}

func mustSnapshot(t testing.TB, zs ...*Zone) *Snapshot {
	t.Helper()
	s, err := NewSnapshot(zs...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
