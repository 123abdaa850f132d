package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap/zaptest"

	"github.com/anyns/anyns/announce"
	"github.com/anyns/anyns/health"
	"github.com/anyns/anyns/zone"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metricValue returns the sum of the samples of name whose labels contain
// every one of labels ("k=\"v\""), or -1 if there is none.
func metricValue(body, name string, labels ...string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	sum, found := 0.0, false
next:
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		for _, l := range labels {
			if !strings.Contains(m[1], l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return -1
		}
		sum, found = sum+v, true
	}
	if !found {
		return -1
	}
	return sum
}

func TestMetricsEndpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "anyns.yaml", "metrics:\n  listen: 127.0.0.1:0\n")
	in := startAnyns(t, "--config", cfg, "--listen", "127.0.0.1:0", "--zones", shippedZones(t), "--id", "metrics-1")
	base := "http://" + in.start["metrics"].(string)

	c := &dns.Client{Timeout: time.Second}
	for i := 0; i < 3; i++ {
		m := new(dns.Msg)
		m.SetQuestion("www.example.com.", dns.TypeA)
		if _, _, err := c.Exchange(m, in.addr); err != nil {
			t.Fatal(err)
		}
	}
	m := new(dns.Msg)
	m.SetQuestion("example.org.", dns.TypeA)
	if _, _, err := c.Exchange(m, in.addr); err != nil {
		t.Fatal(err)
	}
	tc := &dns.Client{Net: "tcp", Timeout: time.Second}
	if _, _, err := tc.Exchange(m, in.addr); err != nil {
		t.Fatal(err)
	}

	code, body := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	id := `identity="metrics-1"`
	// The startup probe (awaitResponding) adds UDP queries: at least ours.
	if v := metricValue(body, "anyns_messages_received_total", `transport="udp"`, id); v < 4 {
		t.Errorf("anyns_messages_received_total{transport=udp} = %v, want >= 4\n%s", v, body)
	}
	if v := metricValue(body, "anyns_queries_total", `transport="udp"`, `qtype="A"`, `rcode="NOERROR"`, id); v != 3 {
		t.Errorf("anyns_queries_total{udp,A,NOERROR} = %v, want 3", v)
	}
	if v := metricValue(body, "anyns_queries_total", `transport="udp"`, `qtype="A"`, `rcode="REFUSED"`, id); v != 1 {
		t.Errorf("anyns_queries_total{udp,A,REFUSED} = %v, want 1", v)
	}
	if v := metricValue(body, "anyns_queries_total", `transport="tcp"`, `qtype="A"`, `rcode="REFUSED"`, id); v != 1 {
		t.Errorf("anyns_queries_total{tcp,A,REFUSED} = %v, want 1", v)
	}
	if v := metricValue(body, "anyns_zone_queries_total", `zone="example.com."`, id); v != 3 {
		t.Errorf("anyns_zone_queries_total{example.com.} = %v, want 3", v)
	}
	if v := metricValue(body, "anyns_response_size_bytes_count", id); v < 5 {
		t.Errorf("anyns_response_size_bytes_count = %v, want >= 5", v)
	}
	if v := metricValue(body, "anyns_request_duration_seconds_count", id); v < 5 {
		t.Errorf("anyns_request_duration_seconds_count = %v, want >= 5", v)
	}
	if v := metricValue(body, "anyns_refused_responses_total", id); v != 2 {
		t.Errorf("anyns_refused_responses_total = %v, want 2", v)
	}
	if v := metricValue(body, "anyns_zone_serial", `zone="example.com."`, id); v != 2026112201 {
		t.Errorf("anyns_zone_serial{example.com.} = %v", v)
	}
	if v := metricValue(body, "anyns_zone_records", `zone="example.net."`, id); v != 13 {
		t.Errorf("anyns_zone_records{example.net.} = %v, want 13", v)
	}
	if v := metricValue(body, "anyns_zone_load_error", `zone="example.com."`, id); v != 0 {
		t.Errorf("anyns_zone_load_error{example.com.} = %v, want 0", v)
	}
	if v := metricValue(body, "anyns_build_info", id, `version="`); v != 1 {
		t.Errorf("anyns_build_info = %v", v)
	}
	for _, name := range []string{"anyns_dropped_packets_total", "anyns_tcp_connections_open", "anyns_panics_total", "go_goroutines", "process_resident_memory_bytes"} {
		if metricValue(body, name, id) < 0 {
			t.Errorf("%s missing or without the identity label", name)
		}
	}
	// Prometheus conventions: every anyns_ metric is documented and counters
	// end in _total.
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "# TYPE anyns_") {
			f := strings.Fields(line)
			if f[3] == "counter" && !strings.HasSuffix(f[2], "_total") {
				t.Errorf("counter %s does not end in _total", f[2])
			}
		}
	}

	if code, body := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz without bgp and with zones: %d %s", code, body)
	}
	in.stop(t)
}

// TestReadiness checks /readyz's verdict: zones, drain, prefix health.
func TestReadiness(t *testing.T) {
	store := zone.NewStore(nil)
	loader, err := zone.NewLoader(zone.Config{Dir: shippedZones(t)}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := readiness(loader, nil); ok || why != "no zone loaded" {
		t.Errorf("before loading: %v %q", ok, why)
	}
	if _, err := loader.Reload(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := readiness(loader, nil); !ok {
		t.Error("zones loaded, no bgp: not ready")
	}
	pfx := netip.MustParsePrefix("192.0.2.53/32")
	a := &anycast{routes: []announce.Route{{Prefix: pfx}}, drain: time.Second}
	sp, err := announce.New(announce.Config{ASN: 65001, RouterID: netip.MustParseAddr("192.0.2.1"), ListenPort: -1,
		Neighbors: []announce.Neighbor{{Address: netip.MustParseAddr("198.51.100.1"), ASN: 65000}}}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctl := newController(a, sp, zaptest.NewLogger(t))
	if ok, why := readiness(loader, ctl); ok || why != "no prefix healthy" {
		t.Errorf("prefix down: %v %q", ok, why)
	}
	ctl.notify(health.Verdict{Prefix: pfx, State: health.Up, Reason: "healthy"})
	if ok, _ := readiness(loader, ctl); !ok {
		t.Error("prefix up: not ready")
	}
	ctl.setDrained(true)
	if ok, why := readiness(loader, ctl); ok || why != "drained" {
		t.Errorf("drained: %v %q", ok, why)
	}
	if n := ctl.transitionCounts()[transitionKey{pfx.String(), "up", "healthy"}]; n != 1 {
		t.Errorf("transitions to up counted %d, want 1", n)
	}
}

// TestCtlZonesAndStatus runs anyns ctl against a running binary: zones with
// serial, records, file and last error; status as JSON; drain refused
// without bgp.
func TestCtlZonesAndStatus(t *testing.T) {
	dir := t.TempDir()
	zones := filepath.Join(dir, "zones")
	if err := os.Mkdir(zones, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, zones, "v.test.zone", versionZone("A", 42))
	writeFile(t, zones, "broken.test.zone", "$ORIGIN broken.test.\n@ 60 IN SOA ns1 hm 1 2 3 4 5\n")
	sock := filepath.Join(dir, "ctl.sock")
	cfg := writeFile(t, dir, "anyns.yaml", "control:\n  socket: "+sock+"\n")
	in := startAnyns(t, "--config", cfg, "--listen", "127.0.0.1:0", "--zones", zones, "--id", "ctl-1")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("control socket: %v %v", fi, err)
	}
	ctl := func(args ...string) (string, error) {
		var out, errOut strings.Builder
		err := run(t.Context(), append([]string{"ctl", "--socket", sock}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	out, err := ctl("zones")
	if err != nil {
		t.Fatal(err, out)
	}
	for _, want := range []string{"v.test.", "42", "true", filepath.Join(zones, "broken.test.zone"), "no NS records at the zone apex"} {
		if !strings.Contains(out, want) {
			t.Errorf("ctl zones lacks %q:\n%s", want, out)
		}
	}
	out, err = ctl("status", "--json")
	if err != nil {
		t.Fatal(err, out)
	}
	var st status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if st.Identity != "ctl-1" || len(st.Zones) != 2 || st.Drained {
		t.Errorf("status: %+v", st)
	}
	if out, err := ctl("drain"); err == nil || !strings.Contains(err.Error(), "nothing to drain") {
		t.Errorf("drain without bgp: %v %s", err, out)
	}
	if _, err := ctl("frobnicate"); err != errUsage {
		t.Errorf("unknown verb: %v", err)
	}
	in.stop(t)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
}

// TestWhoamiWithDig asks the binary's whoami name with dig, as an end user
// would through any resolver.
func TestWhoamiWithDig(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "anyns.yaml", "diagnostics:\n  whoami: whoami.example.com.\nlog:\n  queries: 1.0\n")
	in := startAnyns(t, "--config", cfg, "--listen", "127.0.0.1:0", "--zones", shippedZones(t), "--id", "whoami-1")
	out := digAt(t, in.addr, "+short", "whoami.example.com", "TXT")
	for _, want := range []string{`"id=whoami-1"`, `"client=127.0.0.1"`, `"transport=udp"`} {
		if !strings.Contains(out, want) {
			t.Errorf("whoami TXT lacks %s:\n%s", want, out)
		}
	}
	out = digAt(t, in.addr, "+tcp", "+subnet=198.51.100.0/24", "whoami.example.com", "TXT")
	for _, want := range []string{`"transport=tcp"`, `"ecs=198.51.100.0/24"`, "whoami.example.com. 0 IN TXT"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("whoami over TCP with ECS lacks %s:\n%s", want, out)
		}
	}
	if out := digAt(t, in.addr, "+short", "whoami.example.com", "A"); strings.TrimSpace(out) != "127.0.0.1" {
		t.Errorf("whoami A = %q, want 127.0.0.1", out)
	}
	// log.queries: 1.0 logs every query with its fields.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(in.logs.String(), `"msg":"query"`) || !strings.Contains(in.logs.String(), `"qname":"whoami.example.com."`) {
		if time.Now().After(deadline) {
			t.Fatalf("no query log line:\n%s", in.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	in.stop(t)
}
