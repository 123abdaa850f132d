package main

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/anyns/anyns/server"
	"github.com/anyns/anyns/zone"
	"github.com/anyns/anyns/zone/xfr"
)

// TransferConfig is one entry of `transfer`: who may transfer a zone from
// this instance (AXFR/IXFR out) and whom to NOTIFY when its serial goes up.
type TransferConfig struct {
	// Zone is the zone's origin, or "*" for every zone.
	Zone string `yaml:"zone"`
	// Allow lists client prefixes ("198.51.100.0/24", an address) and TSIG
	// keys ("key:xfr-key.") allowed to transfer the zone.
	Allow []string `yaml:"allow"`
	// Notify lists secondaries (address:port) sent a NOTIFY (RFC 1996) when
	// a reload raises the zone's serial; signed with the first key of
	// Allow, if any.
	Notify []string `yaml:"notify"`
}

// primarySide is the parsed transfer section.
type primarySide struct {
	rules   []server.TransferRule
	targets map[string][]netip.AddrPort // zone or "*" -> NOTIFY targets
	keyOf   map[string]string           // zone or "*" -> TSIG key name for its NOTIFYs
}

// parseTransfer converts the transfer section; problems name their key path.
func (c *Config) parseTransfer() (primarySide, []error) {
	p := primarySide{targets: map[string][]netip.AddrPort{}, keyOf: map[string]string{}}
	var errs []error
	keys := map[string]bool{}
	for _, k := range c.TSIGKeys {
		keys[strings.ToLower(dnsFqdn(k.Name))] = true
	}
	for i, t := range c.Transfer {
		key := fmt.Sprintf("transfer[%d]", i)
		zoneName := t.Zone
		if zoneName != "*" {
			zoneName = strings.ToLower(dnsFqdn(zoneName))
		}
		if t.Zone == "" {
			errs = append(errs, fmt.Errorf("%s.zone: must name a zone or \"*\"", key))
		}
		r := server.TransferRule{Zone: zoneName}
		for j, a := range t.Allow {
			if name, ok := strings.CutPrefix(a, "key:"); ok {
				name = strings.ToLower(dnsFqdn(name))
				if !keys[name] {
					errs = append(errs, fmt.Errorf("%s.allow[%d]: no key %q in tsig_keys", key, j, name))
				}
				r.Keys = append(r.Keys, name)
				if p.keyOf[zoneName] == "" {
					p.keyOf[zoneName] = name
				}
				continue
			}
			pfx, err := netip.ParsePrefix(a)
			if err != nil {
				addr, aerr := netip.ParseAddr(a)
				if aerr != nil {
					errs = append(errs, fmt.Errorf("%s.allow[%d]: %q is not a prefix, an address or key:NAME", key, j, a))
					continue
				}
				pfx = netip.PrefixFrom(addr, addr.BitLen())
			}
			r.Allow = append(r.Allow, pfx.Masked())
		}
		for j, n := range t.Notify {
			ap, err := netip.ParseAddrPort(n)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.notify[%d]: %q is not address:port", key, j, n))
				continue
			}
			p.targets[zoneName] = append(p.targets[zoneName], ap)
		}
		p.rules = append(p.rules, r)
	}
	return p, errs
}

// dnsFqdn adds the final dot.
func dnsFqdn(s string) string {
	if strings.HasSuffix(s, ".") {
		return s
	}
	return s + "."
}

// primary runs the outgoing side of zone distribution: the journal IXFR is
// served from, and NOTIFY to secondaries when a reload raises a serial.
type primary struct {
	side      primarySide
	journal   *xfr.Journal
	log       *zap.Logger
	mu        sync.Mutex
	notifiers map[string]*xfr.Notifier // by key name ("" = unsigned)
	keys      map[string]xfr.Key
}

func newPrimary(c *Config, side primarySide, log *zap.Logger) *primary {
	p := &primary{side: side, journal: xfr.NewJournal(0), log: log, notifiers: map[string]*xfr.Notifier{}, keys: map[string]xfr.Key{}}
	for _, k := range c.TSIGKeys {
		p.keys[strings.ToLower(dnsFqdn(k.Name))] = k
	}
	return p
}

// observe is the loader's OnPublish: it records the new versions in the
// journal and notifies the secondaries of zones whose serial went up.
func (p *primary) observe(snap *zone.Snapshot) {
	for _, ch := range p.journal.Observe(snap) {
		targets := append(append([]netip.AddrPort(nil), p.side.targets[ch.Zone]...), p.side.targets["*"]...)
		if len(targets) == 0 {
			continue
		}
		keyName := p.side.keyOf[ch.Zone]
		if keyName == "" {
			keyName = p.side.keyOf["*"]
		}
		n, err := p.notifier(keyName)
		if err != nil {
			p.log.Error("cannot send NOTIFY", zap.String("zone", ch.Zone), zap.Error(err))
			continue
		}
		n.Notify(ch.Zone, ch.Serial, targets)
	}
}

func (p *primary) notifier(keyName string) (*xfr.Notifier, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.notifiers[keyName]; n != nil {
		return n, nil
	}
	var nc xfr.NotifierConfig
	if keyName != "" {
		k := p.keys[keyName]
		nc.Key = &k
	}
	n, err := xfr.NewNotifier(nc, p.log)
	if err != nil {
		return nil, err
	}
	p.notifiers[keyName] = n
	return n, nil
}

func (p *primary) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.notifiers {
		n.Close()
	}
}
