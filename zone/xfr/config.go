package xfr

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Config is the secondary side of zone distribution. Its YAML names are
// those of the issue that defines the configuration file (tsig_keys,
// secondary), so cmd/anyns can map them one to one.
type Config struct {
	// Keys are the TSIG keys that Sources may name.
	Keys []Key `yaml:"tsig_keys"`
	// Sources are the secondary zones and catalog zones.
	Sources []Source `yaml:"secondary"`
	// Dir is the state directory: zone files are written there as
	// <zone>.zone, catalogs as <catalog>.catalog. It must belong to the
	// Secondary alone (files of zones that are no longer configured are
	// removed) and be watched by a zone.Loader. Required when Sources is
	// not empty.
	Dir string `yaml:"secondary_dir"`

	// MinInterval is the shortest refresh, retry or expire interval,
	// whatever the SOA says. Defaults to 5s.
	MinInterval time.Duration `yaml:"min_interval"`
	// MaxInterval is the longest refresh or retry interval. Defaults to
	// 24h.
	MaxInterval time.Duration `yaml:"max_interval"`
	// Timeout bounds one exchange: dialing, and each read and write of a
	// SOA query or a transfer message. Defaults to 5s.
	Timeout time.Duration `yaml:"timeout"`
	// Attempts is how many times each primary is tried in one check
	// before the next one. Defaults to 2.
	Attempts int `yaml:"attempts"`
}

// Key is a TSIG key (RFC 8945).
type Key struct {
	// Name is the key's domain name ("xfr-key.").
	Name string `yaml:"name"`
	// Algorithm is hmac-sha256, hmac-sha384 or hmac-sha512.
	Algorithm string `yaml:"algorithm"`
	// Secret is the key, in base64.
	Secret string `yaml:"secret"`
	// SecretFile names a file holding the base64 secret instead (kept out
	// of the config file, e.g. mode 0600). The binary reads it into Secret
	// at start; this package uses Secret only.
	SecretFile string `yaml:"secret_file"`
}

// Source is one entry of the secondary list: a zone, or a catalog zone
// whose members become secondary zones with the same primaries and key.
// Exactly one of Zone and Catalog is set.
type Source struct {
	Zone    string `yaml:"zone"`
	Catalog string `yaml:"catalog"`
	// Primaries are tried in order, as address:port.
	Primaries []netip.AddrPort `yaml:"primaries"`
	// TSIG names a key of Config.Keys that signs SOA queries and
	// transfers; empty means unsigned.
	TSIG string `yaml:"tsig"`
}

const (
	defaultMinInterval = 5 * time.Second
	defaultMaxInterval = 24 * time.Hour
	defaultTimeout     = 5 * time.Second
	defaultAttempts    = 2
)

// algorithms maps the configuration's algorithm names to miekg/dns ones.
var algorithms = map[string]string{
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// Validate reports every problem of c, joined, each naming its key path
// ("secondary[0].primaries[1]: ...").
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	keys := make(map[string]bool, len(c.Keys))
	for i, k := range c.Keys {
		p := fmt.Sprintf("tsig_keys[%d]", i)
		if _, ok := dns.IsDomainName(k.Name); !ok || k.Name == "" {
			bad(p+".name", "%q is not a domain name", k.Name)
		} else if n := dns.CanonicalName(k.Name); keys[n] {
			bad(p+".name", "key %s is defined twice", n)
		} else {
			keys[n] = true
		}
		if _, ok := algorithms[strings.ToLower(strings.TrimSuffix(k.Algorithm, "."))]; !ok {
			bad(p+".algorithm", "%q is not one of hmac-sha256, hmac-sha384, hmac-sha512", k.Algorithm)
		}
		if b, err := base64.StdEncoding.DecodeString(k.Secret); err != nil {
			bad(p+".secret", "not base64: %v", err)
		} else if len(b) == 0 {
			bad(p+".secret", "empty")
		}
	}
	zones := make(map[string]string)
	for i, s := range c.Sources {
		p := fmt.Sprintf("secondary[%d]", i)
		name, field := s.Zone, "zone"
		switch {
		case s.Zone != "" && s.Catalog != "":
			bad(p, "set zone or catalog, not both")
		case s.Zone == "" && s.Catalog == "":
			bad(p, "set zone or catalog")
		case s.Catalog != "":
			name, field = s.Catalog, "catalog"
		}
		if name != "" {
			if _, ok := dns.IsDomainName(name); !ok {
				bad(p+"."+field, "%q is not a domain name", name)
			} else if n := dns.CanonicalName(name); zones[n] != "" {
				bad(p+"."+field, "%s is already listed at %s", n, zones[n])
			} else {
				zones[n] = p
			}
		}
		if len(s.Primaries) == 0 {
			bad(p+".primaries", "at least one primary is required")
		}
		for j, a := range s.Primaries {
			if !a.IsValid() || a.Port() == 0 || a.Addr().IsUnspecified() {
				bad(fmt.Sprintf("%s.primaries[%d]", p, j), "%q is not an address:port", a.String())
			}
		}
		if s.TSIG != "" && !keys[dns.CanonicalName(s.TSIG)] {
			bad(p+".tsig", "no key %q in tsig_keys", s.TSIG)
		}
	}
	if len(c.Sources) > 0 && c.Dir == "" {
		bad("secondary_dir", "required when secondary zones are configured")
	}
	if c.MinInterval < 0 {
		bad("min_interval", "must not be negative")
	}
	if c.MaxInterval < 0 || (c.MaxInterval > 0 && c.MaxInterval < c.MinInterval) {
		bad("max_interval", "must not be below min_interval")
	}
	if c.Timeout < 0 {
		bad("timeout", "must not be negative")
	}
	if c.Attempts < 0 {
		bad("attempts", "must not be negative")
	}
	return errors.Join(errs...)
}

// withDefaults returns c with defaults in place of zero values.
func (c Config) withDefaults() Config {
	if c.MinInterval == 0 {
		c.MinInterval = defaultMinInterval
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = max(defaultMaxInterval, c.MinInterval)
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.Attempts == 0 {
		c.Attempts = defaultAttempts
	}
	return c
}
