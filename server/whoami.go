package server

import (
	"net/netip"

	"github.com/miekg/dns"
)

// whoami: Config.Whoami names a diagnostic owner, under a served zone,
// answered before the zone lookup with what this instance sees of the
// query, so that anyone can tell which instance a resolver reaches:
//
//   - TXT: "id=<Identity>", "client=<source address>", "ecs=<prefix>" (only
//     when the query carries EDNS Client Subnet), "transport=udp|tcp";
//   - A (IPv4 client) or AAAA (IPv6 client): the source address;
//   - any other type, or the other address family: NODATA.
//
// Every answer has TTL 0 (the SOA of NODATA too, so that no resolver caches
// it) and AA set, and goes through the same EDNS, truncation and RRL steps
// as any other. Only the name itself is special: names below it are looked
// up in the zone. When no served zone holds the name, it is looked up like
// any other (REFUSED).

// answerWhoami answers the general-path query q when it asks the whoami
// name; it reports false, having written nothing, otherwise.
func (s *Server) answerWhoami(q *query, buf []byte, t Transport, limit int, question dns.Question) ([]byte, bool) {
	if s.whoami == "" || q.qname != s.whoami {
		return nil, false
	}
	z := s.store.Load().Find(s.whoami)
	if z == nil {
		return nil, false
	}
	q.zr.Zone = z // for the metrics: this zone answered
	m := &q.resp
	m.Authoritative = true
	client := q.info.client.Addr()
	hdr := dns.RR_Header{Name: q.qs[0].Name, Class: dns.ClassINET, Ttl: 0}
	q.one = q.one[:0]
	switch question.Qtype {
	case dns.TypeTXT:
		c := "unknown"
		if client.IsValid() {
			c = client.String()
		}
		txt := make([]string, 0, 4)
		txt = append(txt, "id="+escapeTXT(s.cfg.Identity), "client="+c)
		if ecs := q.clientSubnet(); ecs != "" {
			txt = append(txt, "ecs="+ecs)
		}
		tr := "udp"
		if t == TCP {
			tr = "tcp"
		}
		txt = append(txt, "transport="+tr)
		hdr.Rrtype = dns.TypeTXT
		q.txt = dns.TXT{Hdr: hdr, Txt: txt}
		q.one = append(q.one, &q.txt)
	case dns.TypeA:
		if client.Is4() {
			hdr.Rrtype = dns.TypeA
			q.a = dns.A{Hdr: hdr, A: client.AsSlice()}
			q.one = append(q.one, &q.a)
		}
	case dns.TypeAAAA:
		if client.Is6() {
			hdr.Rrtype = dns.TypeAAAA
			q.aaaa = dns.AAAA{Hdr: hdr, AAAA: client.AsSlice()}
			q.one = append(q.one, &q.aaaa)
		}
	}
	if len(q.one) > 0 {
		m.Answer = q.one
	} else {
		// NODATA: the SOA, with TTL 0 (RFC 2308 5: the negative TTL is
		// at most the SOA's own).
		q.soa = *z.SOA()
		q.soa.Hdr.Ttl = 0
		q.one = append(q.one, &q.soa)
		m.Ns = q.one
	}
	return s.finish(q, buf, limit, dns.RcodeSuccess, ""), true
}

// clientSubnet returns the EDNS Client Subnet (RFC 7871) of the request as
// a prefix ("198.51.100.0/24"), or "".
func (q *query) clientSubnet() string {
	if q.opt.Hdr.Rrtype != dns.TypeOPT { // no valid OPT in the query
		return ""
	}
	o := q.req.IsEdns0()
	if o == nil {
		return ""
	}
	for _, e := range o.Option {
		sub, ok := e.(*dns.EDNS0_SUBNET)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(sub.Address)
		if !ok {
			return ""
		}
		p, err := a.Unmap().Prefix(int(sub.SourceNetmask))
		if err != nil {
			return ""
		}
		return p.String()
	}
	return ""
}
