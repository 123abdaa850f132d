package server

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// TSIGKey is a TSIG key (RFC 8945).
type TSIGKey struct {
	// Algorithm is hmac-sha256, hmac-sha384 or hmac-sha512 (the miekg/dns
	// names, "hmac-sha256.", are accepted too).
	Algorithm string
	// Secret is the key in base64.
	Secret string
}

// tsigAlgorithms maps algorithm names to miekg/dns ones.
var tsigAlgorithms = map[string]string{
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// tsigFudge is the fudge of our signatures (RFC 8945 section 10: 300s).
const tsigFudge = 300

// tsigKey is a configured key, ready for miekg/dns.
type tsigKey struct {
	name, alg, secret string
}

func parseTSIGKey(name string, k TSIGKey) (tsigKey, error) {
	alg, ok := tsigAlgorithms[strings.ToLower(strings.TrimSuffix(k.Algorithm, "."))]
	if !ok {
		return tsigKey{}, fmt.Errorf("tsig_keys[%s].algorithm: %q is not one of hmac-sha256, hmac-sha384, hmac-sha512", name, k.Algorithm)
	}
	if b, err := base64.StdEncoding.DecodeString(k.Secret); err != nil || len(b) == 0 {
		return tsigKey{}, fmt.Errorf("tsig_keys[%s].secret: not base64 or empty", name)
	}
	return tsigKey{name: dns.CanonicalName(name), alg: alg, secret: k.Secret}, nil
}

// tsigState is the outcome of checking the TSIG of a request.
type tsigState struct {
	req   *dns.TSIG // nil: the request is unsigned
	key   *tsigKey  // the verified key (nil when unsigned or on error)
	error uint16    // 0, or RcodeBadKey, RcodeBadSig, RcodeBadTime
	mac   string    // MAC of the last message signed (the request first)
}

// verifyTSIG checks the TSIG of m, unpacked from raw (RFC 8945 section
// 5.2): an unknown key or an algorithm other than the key's is BADKEY, a
// wrong MAC BADSIG, a time outside the fudge BADTIME (checked after the
// MAC, as dns.TsigVerify does).
func (s *Server) verifyTSIG(raw []byte, m *dns.Msg) tsigState {
	t := m.IsTsig()
	if t == nil {
		return tsigState{}
	}
	st := tsigState{req: t}
	k, ok := s.xfr.keys[dns.CanonicalName(t.Hdr.Name)]
	if !ok || dns.CanonicalName(t.Algorithm) != k.alg {
		st.error = dns.RcodeBadKey
		return st
	}
	// TsigVerify writes into the buffer it is given (the ID): use a copy.
	err := dns.TsigVerify(append([]byte(nil), raw...), k.secret, "", false)
	switch {
	case err == nil:
	case errors.Is(err, dns.ErrTime):
		st.error = dns.RcodeBadTime
		st.mac = t.MAC
		st.key = &k
		return st
	default:
		st.error = dns.RcodeBadSig
		return st
	}
	st.key = &k
	st.mac = t.MAC
	return st
}

// sign packs m, signing it when the request was signed (RFC 8945 section
// 5.3): with the request's MAC for the first message of a response and
// with the previous message's MAC and the timers only for the next ones
// (section 5.3.1). Error responses follow section 5.3.2: BADKEY and
// BADSIG unsigned, BADTIME signed and carrying our time.
func (s *Server) sign(m *dns.Msg, st *tsigState, first bool) ([]byte, error) {
	if st.req == nil {
		return m.Pack()
	}
	t := &dns.TSIG{
		Hdr:        dns.RR_Header{Name: st.req.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm:  st.req.Algorithm,
		Fudge:      tsigFudge,
		TimeSigned: uint64(time.Now().Unix()),
		OrigId:     m.Id,
		Error:      st.error,
	}
	m.Extra = append(m.Extra, t)
	switch st.error {
	case dns.RcodeBadKey, dns.RcodeBadSig:
		// Unsigned: TsigGenerate skips the MAC for these errors; the
		// secret is never used.
		out, _, err := dns.TsigGenerate(m, "", "", false)
		return out, err
	case dns.RcodeBadTime:
		now := uint64(time.Now().Unix())
		var b [6]byte
		for i := range b {
			b[i] = byte(now >> (8 * (5 - i)))
		}
		t.TimeSigned = st.req.TimeSigned
		t.OtherLen = 6
		t.OtherData = hex.EncodeToString(b[:])
	}
	out, mac, err := dns.TsigGenerate(m, st.key.secret, st.mac, !first)
	if err == nil {
		st.mac = mac
	}
	return out, err
}
