package zone

import (
	"testing"

	"github.com/miekg/dns"
)

// TestRFC1034 runs the queries of RFC 1034 section 6.2 against the zones
// C.ISI.EDU holds in section 6.1 (the root and EDU zones).
func TestRFC1034(t *testing.T) {
	s := snapshotOf(t, "testdata/rfc1034/root.zone", "testdata/rfc1034/edu.zone")
	rootSOA := ". 86400 IN SOA SRI-NIC.ARPA. HOSTMASTER.SRI-NIC.ARPA. 870611 1800 300 604800 86400"
	runCases(t, s, []Case{
		{
			Name: "6.2.1", Qname: "SRI-NIC.ARPA.", Qtype: dns.TypeA, Result: Success, AA: true,
			Answer: []string{
				"SRI-NIC.ARPA. 86400 IN A 26.0.0.73",
				"SRI-NIC.ARPA. 86400 IN A 10.0.0.51",
			},
		},
		{
			// Lookup returns the whole node; the server applies RFC 8482.
			Name: "6.2.2", Qname: "SRI-NIC.ARPA.", Qtype: dns.TypeANY, Result: Success, AA: true,
			Answer: []string{
				"SRI-NIC.ARPA. 86400 IN A 26.0.0.73",
				"SRI-NIC.ARPA. 86400 IN A 10.0.0.51",
				"SRI-NIC.ARPA. 86400 IN MX 0 SRI-NIC.ARPA.",
				"SRI-NIC.ARPA. 86400 IN HINFO DEC-2060 TOPS20",
			},
			// The MX target's addresses, as in 6.2.3.
			Extra: []string{
				"SRI-NIC.ARPA. 86400 IN A 26.0.0.73",
				"SRI-NIC.ARPA. 86400 IN A 10.0.0.51",
			},
		},
		{
			Name: "6.2.3", Qname: "SRI-NIC.ARPA.", Qtype: dns.TypeMX, Result: Success, AA: true,
			Answer: []string{"SRI-NIC.ARPA. 86400 IN MX 0 SRI-NIC.ARPA."},
			Extra: []string{
				"SRI-NIC.ARPA. 86400 IN A 26.0.0.73",
				"SRI-NIC.ARPA. 86400 IN A 10.0.0.51",
			},
		},
		{
			// RFC 1034 leaves the authority section empty; RFC 2308
			// adds the SOA to NODATA.
			Name: "6.2.4", Qname: "SRI-NIC.ARPA.", Qtype: dns.TypeNS, Result: NoData, AA: true,
			Ns: []string{rootSOA},
		},
		{
			Name: "6.2.5", Qname: "SIR-NIC.ARPA.", Qtype: dns.TypeA, Result: NameError, AA: true,
			Ns: []string{rootSOA},
		},
		{
			// RFC 1034 also lists the addresses of A.ISI.EDU and
			// SRI-NIC.ARPA; anyns sends in-domain glue only (targets at
			// or below MIL.), and there is none.
			Name: "6.2.6", Qname: "BRL.MIL.", Qtype: dns.TypeA, Result: Delegation, AA: false,
			Ns: []string{
				"MIL. 86400 IN NS SRI-NIC.ARPA.",
				"MIL. 86400 IN NS A.ISI.EDU.",
			},
		},
		{
			// C.ISI.EDU's second answer in 6.2.7: the alias, then a
			// referral to ISI.EDU from the EDU zone.
			Name: "6.2.7", Qname: "USC-ISIC.ARPA.", Qtype: dns.TypeA, Result: Delegation, AA: true,
			Answer: []string{"USC-ISIC.ARPA. 86400 IN CNAME C.ISI.EDU."},
			Ns: []string{
				"ISI.EDU. 172800 IN NS VAXA.ISI.EDU.",
				"ISI.EDU. 172800 IN NS A.ISI.EDU.",
				"ISI.EDU. 172800 IN NS VENERA.ISI.EDU.",
			},
			Extra: []string{
				"VAXA.ISI.EDU. 172800 IN A 10.2.0.27",
				"VAXA.ISI.EDU. 172800 IN A 128.9.0.33",
				"VENERA.ISI.EDU. 172800 IN A 10.1.0.52",
				"VENERA.ISI.EDU. 172800 IN A 128.9.0.32",
				"A.ISI.EDU. 172800 IN A 26.3.0.103",
			},
		},
		{
			Name: "6.2.8", Qname: "USC-ISIC.ARPA.", Qtype: dns.TypeCNAME, Result: Success, AA: true,
			Answer: []string{"USC-ISIC.ARPA. 86400 IN CNAME C.ISI.EDU."},
		},
		{
			// 6.3.2: a PTR in the root zone.
			Name: "6.3.2", Qname: "65.0.6.26.IN-ADDR.ARPA.", Qtype: dns.TypePTR, Result: Success, AA: true,
			Answer: []string{"65.0.6.26.IN-ADDR.ARPA. 86400 IN PTR ACC.ARPA."},
		},
		{
			// 6.3.1: MX for ISI.EDU from a server of EDU is a referral.
			Name: "6.3.1", Qname: "ISI.EDU.", Qtype: dns.TypeMX, Result: Delegation, AA: false,
			Ns: []string{
				"ISI.EDU. 172800 IN NS VAXA.ISI.EDU.",
				"ISI.EDU. 172800 IN NS A.ISI.EDU.",
				"ISI.EDU. 172800 IN NS VENERA.ISI.EDU.",
			},
			Extra: []string{
				"VAXA.ISI.EDU. 172800 IN A 10.2.0.27",
				"VAXA.ISI.EDU. 172800 IN A 128.9.0.33",
				"VENERA.ISI.EDU. 172800 IN A 10.1.0.52",
				"VENERA.ISI.EDU. 172800 IN A 128.9.0.32",
				"A.ISI.EDU. 172800 IN A 26.3.0.103",
			},
		},
		{
			// The EDU zone is the longest match for EDU. itself.
			Name: "EDU SOA", Qname: "EDU.", Qtype: dns.TypeSOA, Result: Success, AA: true,
			Answer: []string{"EDU. 86400 IN SOA SRI-NIC.ARPA. HOSTMASTER.SRI-NIC.ARPA. 870729 1800 300 604800 86400"},
		},
		{
			// ... but the root zone, on the parent side, answers DS.
			Name: "EDU DS", Qname: "EDU.", Qtype: dns.TypeDS, Result: NoData, AA: true,
			Ns: []string{rootSOA},
		},
		{
			// Glue in the root zone is never answered: C.ISI.EDU. is
			// answered by the EDU zone, as a referral to ISI.EDU.
			Name: "glue", Qname: "C.ISI.EDU.", Qtype: dns.TypeA, Result: Delegation, AA: false,
			Ns: []string{
				"ISI.EDU. 172800 IN NS VAXA.ISI.EDU.",
				"ISI.EDU. 172800 IN NS A.ISI.EDU.",
				"ISI.EDU. 172800 IN NS VENERA.ISI.EDU.",
			},
			Extra: []string{
				"VAXA.ISI.EDU. 172800 IN A 10.2.0.27",
				"VAXA.ISI.EDU. 172800 IN A 128.9.0.33",
				"VENERA.ISI.EDU. 172800 IN A 10.1.0.52",
				"VENERA.ISI.EDU. 172800 IN A 128.9.0.32",
				"A.ISI.EDU. 172800 IN A 26.3.0.103",
			},
		},
		{
			// An out-of-zone NS target gets no glue.
			Name: "no glue", Qname: "www.YALE.EDU.", Qtype: dns.TypeA, Result: Delegation, AA: false,
			Ns: []string{
				"YALE.EDU. 172800 IN NS YALE.ARPA.",
				"YALE.EDU. 172800 IN NS YALE-BULLDOG.ARPA.",
			},
		},
	})
}

// TestRFC4592 checks the answers of RFC 4592 section 2.2.1 on its example
// zone.
func TestRFC4592(t *testing.T) {
	s := snapshotOf(t, "testdata/rfc4592/example.zone")
	soa := "example. 300 IN SOA ns.example.com. hostmaster.example. 1 3600 600 86400 300"
	subdel := []string{
		"subdel.example. 3600 IN NS ns.example.com.",
		"subdel.example. 3600 IN NS ns.example.net.",
	}
	runCases(t, s, []Case{
		{
			Name: "host3 MX synthesized", Qname: "host3.example.", Qtype: dns.TypeMX, Result: Success, AA: true,
			Answer: []string{"host3.example. 3600 IN MX 10 host1.example."},
			Extra:  []string{"host1.example. 3600 IN A 192.0.2.1"},
		},
		{
			Name: "host3 A nodata from wildcard", Qname: "host3.example.", Qtype: dns.TypeA, Result: NoData, AA: true,
			Ns: []string{soa},
		},
		{
			Name: "foo.bar TXT synthesized", Qname: "foo.bar.example.", Qtype: dns.TypeTXT, Result: Success, AA: true,
			Answer: []string{`foo.bar.example. 3600 IN TXT "this is a wildcard"`},
		},
		{
			Name: "host1 MX exists", Qname: "host1.example.", Qtype: dns.TypeMX, Result: NoData, AA: true,
			Ns: []string{soa},
		},
		{
			Name: "sub.* MX exists", Qname: "sub.*.example.", Qtype: dns.TypeMX, Result: NoData, AA: true,
			Ns: []string{soa},
		},
		{
			Name: "_telnet._tcp.host1 blocked by empty non-terminal", Qname: "_telnet._tcp.host1.example.", Qtype: dns.TypeSRV,
			Result: NameError, AA: true, Ns: []string{soa},
		},
		{
			Name: "_tcp.host1 empty non-terminal", Qname: "_tcp.host1.example.", Qtype: dns.TypeA,
			Result: NoData, AA: true, Ns: []string{soa},
		},
		{
			Name: "host.subdel referral", Qname: "host.subdel.example.", Qtype: dns.TypeA, Result: Delegation, AA: false,
			Ns: subdel,
		},
		{
			Name: "ghost.* no wildcard", Qname: "ghost.*.example.", Qtype: dns.TypeMX, Result: NameError, AA: true,
			Ns: []string{soa},
		},
		{
			Name: "literal *", Qname: "*.example.", Qtype: dns.TypeTXT, Result: Success, AA: true,
			Answer: []string{`*.example. 3600 IN TXT "this is a wildcard"`},
		},
		{
			Name: "ANY synthesized", Qname: "any.example.", Qtype: dns.TypeANY, Result: Success, AA: true,
			Answer: []string{
				`any.example. 3600 IN TXT "this is a wildcard"`,
				"any.example. 3600 IN MX 10 host1.example.",
			},
			Extra: []string{"host1.example. 3600 IN A 192.0.2.1"},
		},
		{
			Name: "_ssh._tcp.host1 SRV", Qname: "_ssh._tcp.host1.example.", Qtype: dns.TypeSRV, Result: Success, AA: true,
			Answer: []string{"_ssh._tcp.host1.example. 3600 IN SRV 0 0 22 host1.example."},
			Extra:  []string{"host1.example. 3600 IN A 192.0.2.1"},
		},
	})
}
