package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	cfgFile := writeFile(t, dir, "anyns.yaml", `
identity: site-a
listen: ["192.0.2.53:53", "[2001:db8::53]:53"]
zones: ../../zones
version: "anyns test"
udp_size: 1400
tcp:
  idle_timeout: 3s
  max_connections: 50
log:
  level: debug
  format: console
`)
	cfg, _, err := parseServeFlags([]string{"--config", cfgFile}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Identity != "site-a" || len(cfg.Listen) != 2 || cfg.UDPSize != 1400 ||
		cfg.TCP.IdleTimeout != 3*time.Second || cfg.TCP.MaxConnections != 50 ||
		cfg.Version == nil || *cfg.Version != "anyns test" || cfg.Log.Format != "console" || cfg.defaultListen {
		t.Errorf("config not decoded as written: %+v", cfg)
	}

	// Flags override the file.
	cfg, _, err = parseServeFlags([]string{"--config", cfgFile, "--id", "site-b", "--listen", "127.0.0.1:0", "--zones", "../../zones"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Identity != "site-b" || len(cfg.Listen) != 1 || cfg.Listen[0] != "127.0.0.1:0" || cfg.UDPSize != 1400 {
		t.Errorf("flags did not override the file: %+v", cfg)
	}

	// No file: the embedded default.
	cfg, _, err = parseServeFlags([]string{"--zones", "../../zones"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if cfg.Identity != host || strings.Join(cfg.Listen, " ") != "127.0.0.1:5300 [::1]:5300" || cfg.UDPSize != 1232 ||
		cfg.TCP.IdleTimeout != 10*time.Second || cfg.TCP.MaxConnections != 1000 || cfg.Version != nil || !cfg.defaultListen {
		t.Errorf("embedded default wrong: %+v", cfg)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "identity: a\nudpsize: 1400\n", []string{`line 2: unknown key "udpsize"`}},
		{"unknown nested key", "tcp:\n  idle: 3s\n", []string{`line 2: unknown key "idle"`}},
		{"bad values, all reported", "identity: \"\"\nudp_size: 100\nlisten: [\"localhost:53\", \"127.0.0.1:99999\"]\ntcp: {idle_timeout: -1s, max_connections: 0}\nlog: {level: loud, format: xml}\nzones: /nonexistent-anyns\n",
			[]string{"identity: must not be empty", "udp_size: must be between 512 and 65535, got 100", `listen[0]: "localhost:53": host must be an IP address`,
				`listen[1]: "127.0.0.1:99999": port must be 0-65535`, "tcp.idle_timeout: must be between 0 and 6553.5s, got -1s", "tcp.max_connections: must be at least 1",
				`log.level: must be debug, info, warn or error, got "loud"`, `log.format: must be json or console, got "xml"`, "zones: stat /nonexistent-anyns"}},
		{"transfer", "zones: ../../zones\ntransfer:\n  - zone: example.com.\n    allow: [\"198.51.100.0/24\", \"key:nokey.\", \"nonsense\"]\n    notify: [\"198.51.100.7\"]\n",
			[]string{`transfer[0].allow[1]: no key "nokey." in tsig_keys`, `transfer[0].allow[2]: "nonsense" is not a prefix, an address or key:NAME`, `transfer[0].notify[0]: "198.51.100.7" is not address:port`}},
		{"bad metrics address", "zones: ../../zones\nmetrics:\n  listen: localhost:9153\n", []string{`metrics.listen: must be host:port with an IP address, or a port, got "localhost:9153"`}},
		{"bad duration", "tcp:\n  idle_timeout: soon\n", []string{"line 2: cannot unmarshal"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeFile(t, dir, "c.yaml", tc.yaml)
			_, _, err := parseServeFlags([]string{"--config", f}, &bytes.Buffer{})
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestCheckFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"serve", "--zones", "../../zones", "--check"}, &out, &errOut)
	if err != nil {
		t.Fatalf("--check on the shipped zones failed: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"zone example.com. serial 2026112201", "zone example.net. serial 2026112201", "listen 127.0.0.1:5300"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--check output lacks %q:\n%s", want, out.String())
		}
	}

	dir := t.TempDir()
	writeFile(t, dir, "good.example.zone", "$ORIGIN good.example.\n@ 300 IN SOA ns hm 1 2 3 4 5\n@ 300 IN NS ns\nns 300 IN A 192.0.2.1\n")
	writeFile(t, dir, "bad.example.zone", "$ORIGIN bad.example.\n@ 300 IN SOA ns hm 1 2 3 4 5\nns 300 IN A 192.0.2.1\n")
	out.Reset()
	errOut.Reset()
	err = run(context.Background(), []string{"serve", "--zones", dir, "--check"}, &out, &errOut)
	if !errors.Is(err, errFailed) {
		t.Fatalf("--check with a broken zone: err %v, want errFailed", err)
	}
	if !strings.Contains(out.String(), "zone good.example. serial 1") {
		t.Errorf("the good zone is not listed:\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), "bad.example.zone") {
		t.Errorf("the problem does not name the file:\n%s", errOut.String())
	}
}

func TestCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "anyns ") {
		t.Errorf("version: %v %q", err, out.String())
	}
	if err := run(context.Background(), []string{"frobnicate"}, &out, &errOut); !errors.Is(err, errUsage) {
		t.Errorf("unknown command: %v", err)
	}
	if err := run(context.Background(), nil, &out, &errOut); !errors.Is(err, errUsage) {
		t.Errorf("no command: %v", err)
	}
	if err := run(context.Background(), []string{"serve", "--nope"}, &out, &errOut); !errors.Is(err, errUsage) {
		t.Errorf("unknown flag: %v", err)
	}
}

func TestRefusesRoot(t *testing.T) {
	defer func(f func() int) { geteuid = f }(geteuid)
	geteuid = func() int { return 0 }
	args := []string{"serve", "--listen", "127.0.0.1:0", "--zones", "../../zones", "--id", "root-test"}
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "refusing to run as root") {
		t.Fatalf("as root without allow_root: %v", err)
	}
	if !strings.Contains(errOut.String(), "CAP_NET_BIND_SERVICE") {
		t.Errorf("the log does not say what to do instead:\n%s", errOut.String())
	}
	// Allowed: it starts (and stops at once: the context is already done).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errOut.Reset()
	cfg := writeFile(t, t.TempDir(), "c.yaml", "control: {socket: \"off\"}\n")
	if err := run(ctx, append(args, "--allow-root", "--config", cfg), &out, &errOut); err != nil {
		t.Fatalf("with --allow-root: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(errOut.String(), "running as root") || !strings.Contains(errOut.String(), "anyns started") {
		t.Errorf("no warning or no start:\n%s", errOut.String())
	}
	// --check validates as root without refusing.
	if err := run(context.Background(), append(args, "--check"), &out, &errOut); err != nil {
		t.Errorf("--check as root: %v", err)
	}
}

func TestRRLAndTCPLimitsConfig(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "c.yaml", `zones: ../../zones
rrl:
  responses_per_second: 100
  window: 5s
  slip: 0
  ipv4_prefix: 24
  ipv6_prefix: 48
  exempt: ["198.51.100.0/24", "2001:db8::1"]
tcp:
  max_connections_per_prefix: 8
  read_timeout: 1s
`)
	cfg, _, err := parseServeFlags([]string{"--config", f}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := cfg.serverConfig()
	if err != nil {
		t.Fatal(err)
	}
	if sc.RRL.ResponsesPerSecond != 100 || sc.RRL.Window != 5*time.Second || sc.RRL.Slip != -1 || sc.RRL.IPv6PrefixLen != 48 ||
		len(sc.RRL.Exempt) != 2 || sc.RRL.Exempt[1].String() != "2001:db8::1/128" || sc.TCPMaxConnectionsPerPrefix != 8 || sc.TCPReadTimeout != time.Second {
		t.Errorf("server config not as written: %+v", sc)
	}
	bad := writeFile(t, dir, "bad.yaml", "zones: ../../zones\nrrl:\n  window: 2h\n  slip: -3\n  ipv4_prefix: 40\n  exempt: [nonsense]\nudp_size: 100\n")
	_, _, err = parseServeFlags([]string{"--config", bad}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("bad rrl config accepted")
	}
	for _, want := range []string{"rrl.window: 2h0m0s, must be between 1s and 1h", "rrl.slip: -3", "rrl.ipv4_prefix: 40", `rrl.exempt[0]: "nonsense"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "udp_size:"); n != 1 {
		t.Errorf("udp_size reported %d times:\n%v", n, err)
	}
}

func TestTSIGSecretFile(t *testing.T) {
	dir := t.TempDir()
	secretFile := writeFile(t, dir, "xfr.key", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAxMjM0NTY3ODk=\n")
	f := writeFile(t, dir, "c.yaml", "zones: ../../zones\ntsig_keys:\n  - {name: xfr-key., algorithm: hmac-sha256, secret_file: "+secretFile+"}\ntransfer:\n  - {zone: \"*\", allow: [\"key:xfr-key.\"]}\n")
	cfg, _, err := parseServeFlags([]string{"--config", f}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := cfg.serverConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.TSIGKeys["xfr-key."].Secret; got != "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAxMjM0NTY3ODk=" {
		t.Errorf("secret from file = %q", got)
	}
	bad := writeFile(t, dir, "bad.yaml", "zones: ../../zones\ntsig_keys:\n  - {name: k., algorithm: hmac-sha256, secret: abc=, secret_file: /nonexistent}\n  - {name: j., algorithm: hmac-sha256, secret_file: /nonexistent-anyns-key}\n")
	_, _, err = parseServeFlags([]string{"--config", bad}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "tsig_keys[0].secret_file: set either secret or secret_file, not both") ||
		!strings.Contains(err.Error(), "tsig_keys[1].secret_file: open /nonexistent-anyns-key") {
		t.Errorf("secret_file errors: %v", err)
	}
}
