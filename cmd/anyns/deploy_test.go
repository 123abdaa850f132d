package main

// Tests of deploy/: every config shipped there is checked by the tool that
// will read it (anyns serve --check, bird -p, systemd-analyze verify), and
// TestLab runs the anycast lab (deploy/lab/lab.sh) end to end.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const deployDir = "../../deploy"

// checkConfig runs `anyns serve --config file --check` in process, with the
// shipped zones unless zones is set, and returns its output.
func checkConfig(t *testing.T, file, zones string) string {
	t.Helper()
	if zones == "" {
		zones = shippedZones(t)
	}
	var out bytes.Buffer
	err := run(t.Context(), []string{"serve", "--config", file, "--zones", zones, "--check"}, &out, &out)
	if err != nil {
		t.Fatalf("anyns serve --config %s --check: %v\n%s", file, err, out.String())
	}
	return out.String()
}

// TestDeployAnynsConfigs checks every anyns config in deploy/ with
// `anyns serve --check`: it parses strictly, validates and names the
// service prefixes. Listen addresses such as 192.0.2.53:53 are only
// validated, not bound.
func TestDeployAnynsConfigs(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string // lines the check must print
	}{
		{"lab/ns-a.yaml", []string{"identity ns-a", "announce 192.0.2.53/32", "announce 2001:db8::53/128", "bgp neighbor 198.51.100.1 as 65000", "bgp neighbor 2001:db8:a::1 as 65000"}},
		{"lab/ns-b.yaml", []string{"identity ns-b", "announce 192.0.2.53/32", "announce 2001:db8::53/128", "bgp neighbor 198.51.100.5 as 65000", "bgp neighbor 2001:db8:b::1 as 65000"}},
		{"lab/ns-c.yaml", []string{"identity ns-c", "announce 192.0.2.53/32", "announce 2001:db8::53/128", "bgp neighbor 198.51.100.9 as 65000", "bgp neighbor 2001:db8:c::1 as 65000"}},
		{"systemd/anyns.yaml", []string{"listen 192.0.2.53:53 (udp, tcp)", "announce 192.0.2.53/32", "announce 2001:db8::53/128"}},
		{"container/anyns.yaml", []string{"listen 192.0.2.53:53 (udp, tcp)", "announce 192.0.2.53/32", "announce 2001:db8::53/128"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			out := checkConfig(t, filepath.Join(deployDir, tc.file), "")
			for _, w := range tc.want {
				if !strings.Contains(out, w+"\n") {
					t.Errorf("--check output lacks %q:\n%s", w, out)
				}
			}
			if !strings.Contains(out, "zone example.com. serial") {
				t.Errorf("--check output lists no zone:\n%s", out)
			}
		})
	}
	// The checker itself catches a bad config: the same file with an
	// unknown key fails.
	data, err := os.ReadFile(filepath.Join(deployDir, "systemd/anyns.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, append(data, "udpsize: 1232\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"serve", "--config", bad, "--zones", shippedZones(t), "--check"}, &out, &out); err == nil ||
		!strings.Contains(err.Error()+out.String(), `unknown key "udpsize"`) {
		t.Errorf("--check on a config with an unknown key: err %v, output %s; want the unknown key named", err, out.String())
	}
}

// TestDeployBIRD parses the BIRD 2 configs with `bird -p -c` (the lab's in
// both modes, the router template), and makes sure bird -p rejects a
// broken one.
func TestDeployBIRD(t *testing.T) {
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("bird not installed (apt-get install bird2)")
	}
	lab, err := os.ReadFile(filepath.Join(deployDir, "lab/bird.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(lab, []byte("merge paths off;")); n != 2 {
		t.Fatalf("lab/bird.conf has %d \"merge paths off;\" lines, want 2 (lab.sh --ecmp rewrites them)", n)
	}
	dir := t.TempDir()
	ecmp := filepath.Join(dir, "bird-ecmp.conf")
	if err := os.WriteFile(ecmp, bytes.ReplaceAll(lab, []byte("merge paths off;"), []byte("merge paths on;")), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.conf")
	if err := os.WriteFile(broken, bytes.Replace(lab, []byte("local as 65000;"), []byte("local as 65000 65001;"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		ok         bool
	}{
		{"lab", filepath.Join(deployDir, "lab/bird.conf"), true},
		{"lab ecmp", ecmp, true},
		{"routers", filepath.Join(deployDir, "routers/bird.conf"), true},
		{"broken", broken, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command("bird", "-p", "-c", tc.file).CombinedOutput()
			if tc.ok && err != nil {
				t.Errorf("bird -p -c %s: %v\n%s", tc.file, err, out)
			}
			if !tc.ok && err == nil {
				t.Errorf("bird -p -c %s accepted a broken config", tc.file)
			}
		})
	}
}

// TestDeployRouterPolicies checks that both router configs accept exactly
// the service prefixes, cap them and demote graceful-shutdown routes.
func TestDeployRouterPolicies(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"routers/bird.conf", []string{"[ 192.0.2.53/32 ]", "[ 2001:db8::53/128 ]", "import limit 10", "(65535, 0) ~ bgp_community then bgp_local_pref = 0", "export none", "# bfd on;"}},
		{"routers/frr.conf", []string{"permit 192.0.2.53/32", "permit 2001:db8::53/128", "maximum-prefix 10", "permit graceful-shutdown", "set local-preference 0", "route-map DENY-ALL out", "! neighbor ANYNS bfd"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(deployDir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(data), w) {
					t.Errorf("%s lacks %q", tc.file, w)
				}
			}
		})
	}
}

// unitFile parses a systemd unit into section.key -> values.
func unitFile(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]string)
	section := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: bad line %q", path, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

// drainOf returns bgp.drain of an anyns config file.
func drainOf(t *testing.T, file string) time.Duration {
	t.Helper()
	c := defaultConfig()
	if err := loadConfigFile(&c, file); err != nil {
		t.Fatal(err)
	}
	if c.BGP == nil || c.BGP.Drain == nil {
		return 5 * time.Second
	}
	return *c.BGP.Drain
}

// TestDeploySystemd checks the unit's hardening and stop timeout, and runs
// `systemd-analyze verify` on it where that works (the unit's binary path
// pointed at a freshly built anyns).
func TestDeploySystemd(t *testing.T) {
	unit := filepath.Join(deployDir, "systemd/anyns.service")
	u := unitFile(t, unit)
	for key, want := range map[string]string{
		"Service.Type":                    "notify",
		"Service.User":                    "anyns",
		"Service.AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"Service.CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.RuntimeDirectory":        "anyns",
		"Service.ReadOnlyPaths":           "/etc/anyns",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
		"Service.ExecReload":              "/bin/kill -HUP $MAINPID",
		"Service.Restart":                 "on-failure",
	} {
		if got := u[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: %s = %q, want %q", unit, key, got, want)
		}
	}
	// TimeoutStopSec must cover the drain plus the in-flight shutdown.
	stop, err := time.ParseDuration(strings.Join(u["Service.TimeoutStopSec"], ""))
	if err != nil {
		t.Fatalf("TimeoutStopSec %q: %v", u["Service.TimeoutStopSec"], err)
	}
	if drain := drainOf(t, filepath.Join(deployDir, "systemd/anyns.yaml")); stop <= drain+shutdownTimeout {
		t.Errorf("TimeoutStopSec %v, want more than bgp.drain %v + %v for queries in flight", stop, drain, shutdownTimeout)
	}
	// The unit runs the config the directory ships.
	if got := strings.Join(u["Service.ExecStart"], ""); got != "/usr/local/bin/anyns serve --config /etc/anyns/anyns.yaml" {
		t.Errorf("ExecStart %q", got)
	}

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed: unit checked by its keys only")
	}
	dir := t.TempDir()
	// First make sure verify works here at all (some containers lack what
	// it needs): a trivial unit must pass silently.
	trivial := filepath.Join(dir, "anyns-probe.service")
	if err := os.WriteFile(trivial, []byte("[Service]\nType=oneshot\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", trivial).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Skipf("systemd-analyze verify does not work in this environment: %v %s", err, out)
	}
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	copyUnit := filepath.Join(dir, "anyns.service")
	if err := os.WriteFile(copyUnit, bytes.ReplaceAll(data, []byte("/usr/local/bin/anyns"), []byte(anynsBinary(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify prints a warning (and still exits 0) for an unknown key or a
	// bad value: any output is a failure.
	out, err := exec.Command("systemd-analyze", "verify", copyUnit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify anyns.service: %v\n%s", err, out)
	}
	// The check catches a bad unit.
	bad := filepath.Join(dir, "anyns-bad.service")
	if err := os.WriteFile(bad, bytes.Replace(data, []byte("Type=notify"), []byte("Type=notfy"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("systemd-analyze", "verify", bad).CombinedOutput(); len(bytes.TrimSpace(out)) == 0 {
		t.Errorf("systemd-analyze verify says nothing about Type=notfy")
	}
}

// TestDeployNetworkd checks the loopback snippet carries both service
// addresses on lo.
func TestDeployNetworkd(t *testing.T) {
	u := unitFile(t, filepath.Join(deployDir, "systemd/50-anyns-loopback.network"))
	if got := u["Match.Name"]; len(got) != 1 || got[0] != "lo" {
		t.Errorf("Match.Name %q, want lo", got)
	}
	got := strings.Join(u["Address.Address"], " ")
	if got != "192.0.2.53/32 2001:db8::53/128" {
		t.Errorf("addresses %q, want 192.0.2.53/32 and 2001:db8::53/128", got)
	}
}

// k8sObject is the part of a Kubernetes object the test reads.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Template struct {
			Spec struct {
				HostNetwork                   bool `yaml:"hostNetwork"`
				TerminationGracePeriodSeconds int  `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				InitContainers []k8sContainer `yaml:"initContainers"`
				Containers     []k8sContainer `yaml:"containers"`
				Volumes        []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name            string   `yaml:"name"`
	Command         []string `yaml:"command"`
	Args            []string `yaml:"args"`
	SecurityContext struct {
		Capabilities struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	ReadinessProbe struct {
		HTTPGet struct {
			Host string `yaml:"host"`
			Port int    `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"httpGet"`
	} `yaml:"readinessProbe"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

// TestDeployKubernetes parses the manifests (multi-document YAML), checks
// the DaemonSet's host network, security context and readiness probe, and
// runs the ConfigMap's anyns config, rendered as the init container does,
// through --check against the ConfigMap's zones.
func TestDeployKubernetes(t *testing.T) {
	f, err := os.Open(filepath.Join(deployDir, "kubernetes/anyns.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs := map[string]k8sObject{}
	dec := yaml.NewDecoder(f)
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kubernetes/anyns.yaml: %v", err)
		}
		objs[o.Kind+"/"+o.Metadata.Name] = o
	}
	ds, ok := objs["DaemonSet/anyns"]
	if !ok {
		t.Fatalf("no DaemonSet anyns in %v", objs)
	}
	ps := ds.Spec.Template.Spec
	if !ps.HostNetwork {
		t.Error("DaemonSet: hostNetwork is not true")
	}
	if !ps.SecurityContext.RunAsNonRoot || ps.SecurityContext.RunAsUser == 0 {
		t.Errorf("DaemonSet: securityContext %+v, want non-root", ps.SecurityContext)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("DaemonSet: %d containers, want 1", len(ps.Containers))
	}
	c := ps.Containers[0]
	if strings.Join(c.SecurityContext.Capabilities.Add, ",") != "NET_BIND_SERVICE" || strings.Join(c.SecurityContext.Capabilities.Drop, ",") != "ALL" {
		t.Errorf("anyns container capabilities %+v, want drop ALL, add NET_BIND_SERVICE", c.SecurityContext.Capabilities)
	}
	if hg := c.ReadinessProbe.HTTPGet; hg.Path != "/readyz" || hg.Host != "127.0.0.1" ||
		!strings.Contains(objs["ConfigMap/anyns-config"].Data["anyns.yaml"], fmt.Sprintf("listen: 127.0.0.1:%d", hg.Port)) {
		t.Errorf("readiness probe %+v does not ask anyns's /readyz on its metrics listener", hg)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	cms := map[string]string{} // volume -> ConfigMap
	for _, v := range ps.Volumes {
		if v.ConfigMap != nil {
			cms[v.Name] = v.ConfigMap.Name
		}
	}
	if cms["zones"] != "anyns-zones" || mounts["zones"] != "/etc/anyns/zones" {
		t.Errorf("zones volume: ConfigMap %q at %q, want anyns-zones at /etc/anyns/zones", cms["zones"], mounts["zones"])
	}
	if got := strings.Join(c.Args, " "); got != "serve --config "+mounts["config"]+"/anyns.yaml --id $(NODE_NAME)" {
		t.Errorf("anyns args %q do not read the rendered config in %s", got, mounts["config"])
	}

	// Render the config as the init container does and check it.
	tmpl := objs["ConfigMap/anyns-config"].Data["anyns.yaml"]
	if !strings.Contains(tmpl, "@NODE_IP@") {
		t.Fatalf("ConfigMap anyns-config: no anyns.yaml with @NODE_IP@:\n%s", tmpl)
	}
	if len(ps.InitContainers) != 1 || !strings.Contains(strings.Join(ps.InitContainers[0].Command, " "), `s/@NODE_IP@/$NODE_IP/g`) ||
		!strings.Contains(strings.Join(ps.InitContainers[0].Command, " "), mounts["config"]+"/anyns.yaml") {
		t.Errorf("the init container does not render @NODE_IP@ into %s/anyns.yaml: %+v", mounts["config"], ps.InitContainers)
	}
	dir := t.TempDir()
	zones := filepath.Join(dir, "zones")
	if err := os.Mkdir(zones, 0o755); err != nil {
		t.Fatal(err)
	}
	zd := objs["ConfigMap/anyns-zones"].Data
	if len(zd) == 0 {
		t.Fatal("ConfigMap anyns-zones has no data")
	}
	for name, text := range zd {
		if err := os.WriteFile(filepath.Join(zones, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "anyns.yaml")
	if err := os.WriteFile(conf, []byte(strings.ReplaceAll(tmpl, "@NODE_IP@", "198.51.100.2")), 0o644); err != nil {
		t.Fatal(err)
	}
	out := checkConfig(t, conf, zones)
	for _, w := range []string{"zone example.com. serial 2026112201", "announce 192.0.2.53/32", "announce 2001:db8::53/128"} {
		if !strings.Contains(out, w) {
			t.Errorf("--check of the ConfigMap config lacks %q:\n%s", w, out)
		}
	}
	// The config's zones path is where the zones ConfigMap is mounted.
	if !regexp.MustCompile(`(?m)^zones: ` + regexp.QuoteMeta(mounts["zones"]) + `\s*$`).MatchString(tmpl) {
		t.Errorf("ConfigMap config does not read zones from %s:\n%s", mounts["zones"], tmpl)
	}
	// The pod gets time to drain.
	c2 := defaultConfig()
	if err := loadConfigFile(&c2, conf); err != nil {
		t.Fatal(err)
	}
	if d := *c2.BGP.Drain; time.Duration(ps.TerminationGracePeriodSeconds)*time.Second <= d+shutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %d, want more than bgp.drain %v + %v", ps.TerminationGracePeriodSeconds, d, shutdownTimeout)
	}
}

// TestDeployDockerfile checks the Dockerfile's shape: multi-stage, a
// static build, a non-root final user, DNS ports, volumes, and that every
// file it copies from the repository exists.
func TestDeployDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "container/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var from, user []string
	var expose, volume string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			from = append(from, f[1])
		case "USER":
			user = append(user, f[1])
		case "EXPOSE":
			expose += " " + strings.Join(f[1:], " ")
		case "VOLUME":
			volume += " " + strings.Join(f[1:], " ")
		}
	}
	if len(from) < 2 {
		t.Errorf("Dockerfile has %d stages, want a multi-stage build", len(from))
	}
	if !strings.Contains(string(data), "CGO_ENABLED=0") {
		t.Error("Dockerfile does not build with CGO_ENABLED=0")
	}
	if len(user) == 0 {
		t.Error("Dockerfile has no USER: the image would run as root")
	} else if u := strings.Split(user[len(user)-1], ":")[0]; u == "root" || u == "0" {
		t.Errorf("Dockerfile's final USER is %q, want non-root", user[len(user)-1])
	}
	for _, p := range []string{"53/udp", "53/tcp"} {
		if !strings.Contains(expose, p) {
			t.Errorf("Dockerfile does not EXPOSE %s", p)
		}
	}
	if !strings.Contains(volume, "/etc/anyns/zones") {
		t.Errorf("Dockerfile VOLUME %q lacks /etc/anyns/zones", volume)
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/anyns", "zones", "deploy/container/anyns.yaml"} {
		if _, err := os.Stat(filepath.Join("../..", p)); err != nil {
			t.Errorf("Dockerfile copies %s: %v", p, err)
		}
	}
}

// labFigures are the figures the lab demo must print.
var labFigures = struct {
	nearest, failover, recovery, drain, undrain, sigterm, zone *regexp.Regexp
}{
	nearest:  regexp.MustCompile(`(?m)^nearest: dig \+nsid @192\.0\.2\.53 answered by (\S+)$`),
	failover: regexp.MustCompile(`(?m)^failover: listener killed on ns-a: answers moved ns-a -> ns-b, gap (\d+) ms, (\d+) failed of (\d+) queries$`),
	recovery: regexp.MustCompile(`(?m)^recovery: listener restored on ns-a: back on ns-a (\d+) ms after the restore, (\d+) of (\d+) queries failed$`),
	drain:    regexp.MustCompile(`(?m)^drain: ctl drain on ns-a: traffic on ns-b (\d+) ms later, (\d+) of (\d+) queries failed$`),
	undrain:  regexp.MustCompile(`(?m)^undrain: ctl undrain on ns-a: traffic back (\d+) ms later, (\d+) of (\d+) queries failed$`),
	sigterm:  regexp.MustCompile(`(?m)^sigterm: SIGTERM on ns-a: traffic on ns-b (\d+) ms later, (\d+) of (\d+) queries failed; ns-a stopped cleanly$`),
	zone:     regexp.MustCompile(`(?m)^zone edit: example\.com serial (\d+) -> (\d+) on ns-b, served there (\d+) ms after the rename; unchanged elsewhere: ns-a (\d+) ns-c (\d+)$`),
}

// labNamespaces returns the anynslab- network namespaces that exist.
func labNamespaces(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var ns []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "anynslab-") {
			ns = append(ns, f[0])
		}
	}
	return ns
}

// TestLab runs deploy/lab/lab.sh up, demo and down, and checks the figures
// the demo prints: failover under 2 s, no query lost to a restore, a drain
// or a SIGTERM, the zone edit served by the edited instance only, and
// nothing left behind.
func TestLab(t *testing.T) {
	if testing.Short() {
		t.Skip("the anycast lab is skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("the lab needs root for network namespaces")
	}
	for _, tool := range []string{"ip", "bird", "birdc", "nft", "dig", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (.ci/deps installs iproute2, bird2, nftables and bind9-dnsutils)", tool)
		}
	}
	if ns := labNamespaces(t); len(ns) > 0 {
		t.Skipf("a lab is already up (%v): run deploy/lab/lab.sh down", ns)
	}
	script, err := filepath.Abs(filepath.Join(deployDir, "lab/lab.sh"))
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "lab")
	lab := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), "ANYNSLAB_DIR="+state)
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := lab(ctx, "down"); err != nil {
			t.Errorf("lab.sh down: %v\n%s", err, out)
		}
		if ns := labNamespaces(t); len(ns) > 0 {
			t.Errorf("namespaces left after lab.sh down: %v", ns)
		}
		if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lab state %s left after lab.sh down: %v", state, err)
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	start := time.Now()
	if out, err := lab(ctx, "up"); err != nil {
		t.Fatalf("lab.sh up: %v\n%s", err, out)
	}
	t.Logf("lab.sh up: %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel = context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	start = time.Now()
	out, err := lab(ctx, "demo")
	if err != nil {
		t.Fatalf("lab.sh demo: %v\n%s", err, out)
	}
	t.Logf("lab.sh demo: %v", time.Since(start).Round(time.Millisecond))
	if i := strings.Index(out, "=== figures"); i >= 0 {
		t.Logf("demo figures:\n%s", out[i:])
	}

	num := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("figure %q: %v", s, err)
		}
		return n
	}
	find := func(name string, re *regexp.Regexp) []string {
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("demo output has no %s figure matching %s:\n%s", name, re, out)
		}
		return m
	}
	if m := find("nearest", labFigures.nearest); m[1] != "ns-a" {
		t.Errorf("nearest instance %s, want ns-a", m[1])
	}
	m := find("failover", labFigures.failover)
	if gap := num(m[1]); gap >= 2000 || gap <= 0 {
		t.Errorf("failover gap %d ms, want under 2000 ms", gap)
	}
	if failed, sent := num(m[2]), num(m[3]); failed == 0 || failed >= sent {
		t.Errorf("failover: %d of %d failed; a killed listener must lose the queries of the black hole, and only those", failed, sent)
	}
	for _, f := range []struct {
		name string
		re   *regexp.Regexp
	}{{"recovery", labFigures.recovery}, {"drain", labFigures.drain}, {"undrain", labFigures.undrain}, {"sigterm", labFigures.sigterm}} {
		m := find(f.name, f.re)
		if failed, sent := num(m[2]), num(m[3]); failed != 0 || sent < 20 {
			t.Errorf("%s: %d of %d queries failed, want 0 of at least 20", f.name, failed, sent)
		}
	}
	m = find("zone edit", labFigures.zone)
	old, edited := num(m[1]), num(m[2])
	if edited != old+1 || num(m[4]) != old || num(m[5]) != old {
		t.Errorf("zone edit: serial %d -> %d on ns-b, ns-a %s ns-c %s; want +1 on ns-b only", old, edited, m[4], m[5])
	}
	// The dig against ns-b shows the new serial, with ns-b's NSID.
	nsB := regexp.MustCompile(`NSID: [0-9a-f ]*\("ns-b"\)\n\s*example\.com\.\s+\d+\s+IN\s+SOA\s+\S+ \S+ ` + m[2] + ` `)
	if !nsB.MatchString(out) {
		t.Errorf("demo output shows no SOA with serial %s answered by ns-b:\n%s", m[2], out)
	}
	// Each step shows the router's view.
	if n := strings.Count(out, "--- router: birdc show route"); n < 6 {
		t.Errorf("demo shows the router's routes %d times, want at every step", n)
	}
}

// TestDeployScripts checks the syntax of every shell script under deploy/
// (bash -n), and the drop counters the benchmarks share (deploy/bench/lib.sh):
// a UDP socket that is sent more than its receive buffer holds, and never
// read, must show drops in sock_drops, and the machine's RcvbufErrors must
// not go down.
func TestDeployScripts(t *testing.T) {
	var scripts []string
	err := filepath.WalkDir(deployDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".sh") {
			scripts = append(scripts, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) < 4 {
		t.Fatalf("found %d scripts under %s: %v", len(scripts), deployDir, scripts)
	}
	for _, s := range scripts {
		if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", s, err, out)
		}
	}

	if _, err := os.Stat("/proc/net/udp"); err != nil {
		t.Skip("no /proc/net/udp:", err)
	}
	lib := filepath.Join(benchDir(t), "lib.sh")
	counters := func(port int) (drops, errs int) {
		t.Helper()
		out, err := exec.Command("bash", "-c", `. "$0"; echo "$(sock_drops "$1") $(rcvbuf_errors)"`, lib, strconv.Itoa(port)).CombinedOutput()
		if err != nil {
			t.Fatalf("lib.sh: %v\n%s", err, out)
		}
		if _, err := fmt.Sscan(string(out), &drops, &errs); err != nil {
			t.Fatalf("lib.sh printed %q: %v", out, err)
		}
		return drops, errs
	}
	sink, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if err := sink.(*net.UDPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	port := sink.LocalAddr().(*net.UDPAddr).Port
	d0, e0 := counters(port)
	if d0 != 0 {
		t.Fatalf("sock_drops %d: a new socket has dropped %d datagrams", port, d0)
	}
	src, err := net.Dial("udp", sink.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	msg := make([]byte, 512)
	for range 200 { // far beyond a 4 KiB buffer (the kernel doubles it)
		if _, err := src.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	d1, e1 := counters(port)
	if d1 == 0 || e1 < e0+d1 {
		t.Errorf("after 200 datagrams into a 4 KiB buffer: sock_drops %d, rcvbuf_errors %d → %d", d1, e0, e1)
	}
}

// TestInstallMissing runs deploy/bench/lib.sh's install_missing under the
// benchmarks' shell options (set -euo pipefail) against a fake apt: a
// package whose command is missing is installed when apt-cache offers a
// candidate, even when apt-cache says far more after the candidate line
// than a pipe holds (grep -q stopping at the match once made apt-cache
// die of SIGPIPE, which pipefail turned into "not in this system's apt
// sources"), with the policy-rc.d that keeps its daemon from starting
// present while apt-get runs and gone after. Without a candidate (a fresh
// machine has no package lists), apt-get update runs once and apt-cache
// is asked again; still none, it is refused, naming the package.
func TestInstallMissing(t *testing.T) {
	lib := filepath.Join(benchDir(t), "lib.sh")
	for _, c := range []struct {
		name          string
		before, after string // apt-cache's candidate before and after apt-get update
		wantLog       string // apt-get's calls
		wantErr       string // "" for an install
	}{
		{"candidate", "1.0-1", "1.0-1", "policy-rc.d present\ninstall -y fakepkg\n", ""},
		{"candidate after update", "(none)", "1.0-1", "update -qq\npolicy-rc.d present\ninstall -y fakepkg\n", ""},
		{"no candidate", "(none)", "(none)", "update -qq\n", "fakepkg is not in this system's apt sources"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			rcD := filepath.Join(dir, "policy-rc.d")
			log := filepath.Join(dir, "apt-get.log")
			updated := filepath.Join(dir, "updated")
			fakes := map[string]string{
				// 256 KiB after the candidate line: four times a pipe's buffer.
				"apt-cache": "#!/bin/sh\nc='" + c.before + "'; [ -e '" + updated + "' ] && c='" + c.after + "'\n" +
					"printf 'fakepkg:\\n  Installed: (none)\\n  Candidate: %s\\n' \"$c\"\n" +
					"i=0; while [ $i -lt 4096 ]; do printf '     1.0-1 500 http://deb.example/ bookworm/main amd64 Packages (filler)\\n'; i=$((i+1)); done\n",
				"apt-get": "#!/bin/sh\n[ -x '" + rcD + "' ] && echo policy-rc.d present >>'" + log + "'\necho \"$@\" >>'" + log + "'\n" +
					"[ \"$1\" = update ] && touch '" + updated + "'\nexit 0\n",
				"id": "#!/bin/sh\necho 0\n",
			}
			for name, script := range fakes {
				if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("bash", "-c", `set -euo pipefail; . "$0"; install_missing test no-such-command-anyns:fakepkg; echo done`, lib)
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "POLICY_RC_D="+rcD)
			out, err := cmd.CombinedOutput()
			got, _ := os.ReadFile(log)
			if string(got) != c.wantLog {
				t.Errorf("apt-get log %q, want %q", got, c.wantLog)
			}
			if c.wantErr != "" {
				if err == nil || !strings.Contains(string(out), c.wantErr) {
					t.Errorf("install_missing: %v, output %q; want a failure saying %q", err, out, c.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(string(out), "done") {
				t.Fatalf("install_missing: %v\n%s", err, out)
			}
			if _, err := os.Stat(rcD); !os.IsNotExist(err) {
				t.Errorf("policy-rc.d left behind: %v", err)
			}
		})
	}
}

// TestForgetPID: deploy/bench/lib.sh's forget_pid drops exactly the PID it
// is given from PIDS (what cleanup kills on exit), not a PID that contains
// it, as the pattern substitution it replaced did.
func TestForgetPID(t *testing.T) {
	lib := filepath.Join(benchDir(t), "lib.sh")
	for _, c := range []struct{ pids, forget, want string }{
		{"41234 123 5", "123", "41234 5"},
		{"123 123", "123", ""},
		{"7", "8", "7"},
		{"", "7", ""},
	} {
		out, err := exec.Command("bash", "-c", `set -euo pipefail; . "$0"; PIDS=($1); forget_pid "$2"; echo "${PIDS[*]}"`, lib, c.pids, c.forget).CombinedOutput()
		if err != nil {
			t.Fatalf("PIDS=(%s); forget_pid %s: %v\n%s", c.pids, c.forget, err, out)
		}
		if got := strings.TrimSuffix(string(out), "\n"); got != c.want {
			t.Errorf("PIDS=(%s); forget_pid %s: PIDS=(%s), want (%s)", c.pids, c.forget, got, c.want)
		}
	}
}

// benchDir returns the absolute path of deploy/bench, whose scripts the
// tests run from other directories.
func benchDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join(deployDir, "bench"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}
