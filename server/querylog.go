package server

import (
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// sampleThreshold returns the threshold of sampled for rate (0 to 1): a
// query is logged when a random uint64 is below it. 0 means never.
func sampleThreshold(rate float64) uint64 {
	switch {
	case rate <= 0 || math.IsNaN(rate):
		return 0
	case rate >= 1:
		return math.MaxUint64
	}
	return uint64(rate * (1 << 64))
}

// sampled reports whether to log this query: rand.Uint64 is the runtime's
// per-thread generator (no lock, no allocation).
func sampled(threshold uint64) bool {
	return threshold == math.MaxUint64 || rand.Uint64() < threshold
}

// startObserve runs before a query is answered when dnstap or the query
// log is on: it decides whether the query is logged and, when it is or
// dnstap is on, notes the time it started unless the transport did.
func (s *Server) startObserve(q *query) {
	q.info.logIt = s.qlogThreshold > 0 && sampled(s.qlogThreshold)
	if (s.tap != nil || q.info.logIt) && q.info.recv.IsZero() {
		q.info.recv = time.Now()
	}
}

// logQuery writes the sampled query log line: constant message "query",
// fields client, qname, qtype, rcode, size (bytes of the response, 0 when
// none was sent), transport and duration (since the query was read). It
// allocates, but only for the queries sampled.
func (s *Server) logQuery(q *query, req, out []byte, ok bool, qtype uint16, rcode int, now time.Time) {
	ce := s.log.Check(zap.InfoLevel, "query")
	if ce == nil {
		return
	}
	client := "unknown"
	if c := q.info.client; c.Port() != 0 {
		client = c.String()
	} else if c.Addr().IsValid() {
		client = c.Addr().String()
	}
	qname := q.qname
	if qname == "" {
		qname = questionName(req)
	}
	size := 0
	if ok {
		size = len(out)
	}
	transport := "udp"
	if q.info.t == TCP {
		transport = "tcp"
	}
	var d time.Duration
	if !q.info.recv.IsZero() {
		d = now.Sub(q.info.recv)
	}
	ce.Write(
		zap.String("client", client),
		// q.qname may point into pooled memory: copy it.
		zap.String("qname", strings.Clone(qname)),
		zap.String("qtype", dns.Type(qtype).String()),
		zap.String("rcode", rcodeLabel(rcode)),
		zap.Int("size", size),
		zap.String("transport", transport),
		zap.Duration("duration", d),
	)
}

// questionName returns the name of the question of req in presentation
// form, or "" when there is none.
func questionName(req []byte) string {
	end := questionEnd(req)
	if end <= headerLen {
		return ""
	}
	name, _, err := dns.UnpackDomainName(req, headerLen)
	if err != nil {
		return ""
	}
	return name
}
