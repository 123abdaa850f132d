package main

// The config decoder's fuzz target (issue 7, "Hostile input").

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/anyns/anyns/announce"
	"github.com/anyns/anyns/health"
	"github.com/anyns/anyns/server"
	"github.com/anyns/anyns/zone"
)

// fuzzZonesLine matches a config's zones key, so that seeds from deployments
// can also be tried with a zones directory that exists here.
var fuzzZonesLine = regexp.MustCompile(`(?m)^(\s*)zones:.*$`)

// FuzzConfig feeds any bytes to `serve --config` (parseServeFlags: defaults,
// strict YAML decoding, Validate). It must never panic, and a config it
// accepts must be one serve can start with: every value it hands to the
// server, the BGP speaker and the health checker is accepted by their own
// validation (otherwise `serve --check` says OK and serve then fails after
// binding its listeners).
//
// Seeds: the YAML examples of the README, the configs under deploy/, and
// the configs of the config tests. Crashers and regressions are kept as
// named files in testdata/fuzz/FuzzConfig.
func FuzzConfig(f *testing.F) {
	var seeds []string
	if readme, err := os.ReadFile("../../README.md"); err == nil {
		for _, block := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(readme, -1) {
			seeds = append(seeds, string(block[1]))
		}
	}
	deploy, _ := filepath.Glob("../../deploy/*/*.yaml")
	for _, p := range deploy {
		if b, err := os.ReadFile(p); err == nil {
			seeds = append(seeds, string(b))
		}
	}
	seeds = append(seeds,
		anycastBaseConfig,
		"identity: site-a\nlisten: [\"192.0.2.53:53\", \"[2001:db8::53]:53\"]\nzones: ../../zones\nversion: \"anyns test\"\nudp_size: 1400\ntcp:\n  idle_timeout: 3s\n  max_connections: 50\nlog:\n  level: debug\n  format: console\n",
		"identity: a\nudpsize: 1400\n",
		"tcp:\n  idle: 3s\n",
		"identity: \"\"\nudp_size: 100\nlisten: [\"localhost:53\", \"127.0.0.1:99999\"]\ntcp: {idle_timeout: -1s, max_connections: 0}\nlog: {level: loud, format: xml}\nzones: /nonexistent-anyns\n",
		"zones: ../../zones\ntransfer:\n  - zone: example.com.\n",
		"zones: ../../zones\nmetrics:\n  listen: localhost:9153\n",
		"zones: ../../zones\nmetrics:\n  listen: \":9153\"\n",
		"tcp:\n  idle_timeout: soon\n",
		"reload:\n  debounce: 1h\n  rescan: -1s\n",
		"zones: ../../zones\nlisten: [\"127.0.0.1:5300\"]\n",
		"",
		"---\n...\n",
		"[]",
		"zones: &z ../../zones\nidentity: *z\n",
	)
	for _, s := range seeds {
		f.Add([]byte(s))
		if fuzzZonesLine.MatchString(s) {
			f.Add([]byte(fuzzZonesLine.ReplaceAllString(s, "${1}zones: ../../zones")))
		}
	}

	// The file is rewritten for every input: on tmpfs that costs
	// microseconds, on this disk (overlay) about 1.6 ms, a tenth of the
	// fuzzing speed.
	dir := f.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "anyns-fuzz-"); err == nil {
			dir = d
			f.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	path := filepath.Join(dir, "anyns.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cfg, _, err := parseServeFlags([]string{"--config", path}, &stderr)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Errorf("the error does not name the config file: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate again: %v", err)
		}
		if cfg.Identity == "" || len(cfg.Listen) == 0 || cfg.Zones == "" {
			t.Fatalf("accepted config lacks identity, listen or zones: %+v", cfg)
		}
		if (cfg.BGP != nil) != (cfg.anycast != nil) {
			t.Fatalf("bgp section %v but anycast config %v", cfg.BGP != nil, cfg.anycast != nil)
		}

		// What serveCmd builds from it must be accepted.
		srvCfg := server.Config{Identity: cfg.Identity, UDPSize: cfg.UDPSize, TCPIdleTimeout: cfg.TCP.IdleTimeout, TCPMaxConnections: cfg.TCP.MaxConnections}
		if cfg.Version != nil {
			srvCfg.Version = *cfg.Version
		}
		if _, err := server.New(srvCfg, zone.NewStore(nil), nil); err != nil {
			t.Fatalf("config accepted, but the server refuses it: %v", err)
		}
		if _, err := zone.NewLoader(zone.Config{Dir: cfg.Zones, Debounce: cfg.Reload.Debounce, Rescan: cfg.Reload.Rescan}, zone.NewStore(nil), nil); err != nil {
			t.Fatalf("config accepted, but the zone loader refuses it: %v", err)
		}
		a := cfg.anycast
		if a == nil {
			return
		}
		if _, err := announce.New(a.speaker, nil); err != nil {
			t.Fatalf("config accepted, but the BGP speaker refuses it: %v", err)
		}
		for _, r := range a.routes {
			if err := r.Validate(); err != nil {
				t.Fatalf("config accepted, but route %s is refused: %v", r.Prefix, err)
			}
		}
		// The listeners as startAnycast sees them once bound (port 0 gets
		// a port).
		bound := make(map[netip.AddrPort]netip.AddrPort)
		for _, s := range cfg.Listen {
			ap, err := parseListen(s)
			if err != nil {
				t.Fatalf("accepted listen address %q does not parse: %v", s, err)
			}
			got := ap
			if got.Port() == 0 {
				got = netip.AddrPortFrom(ap.Addr(), 5300)
			}
			bound[ap] = netip.AddrPortFrom(got.Addr().Unmap(), got.Port())
		}
		_, err = health.New(a.health, healthTargets(a, bound, a.degPre > 0), health.Probe{
			Identity: cfg.Identity,
			Names:    func() []string { return []string{"example.com."} },
		}, nil, nil)
		if err != nil {
			t.Fatalf("config accepted, but the health checker refuses it: %v", err)
		}
	})
}
