package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap/zaptest"

	"github.com/anyns/anyns/server"
	"github.com/anyns/anyns/zone"
)

// versionZone is version v of a zone whose answers all name the version:
// a CNAME to a three-string TXT RRset and an A record.
func versionZone(v string, serial int) string {
	octet := map[string]string{"A": "1", "B": "2"}[v]
	return fmt.Sprintf(`$ORIGIN v.test.
$TTL 60
@      IN SOA ns1 hm %d 7200 3600 1209600 60
       IN NS  ns1
ns1    IN A   192.0.2.53
alias  IN CNAME multi
multi  IN TXT "%[2]s-1"
       IN TXT "%[2]s-2"
       IN TXT "%[2]s-3"
       IN A   192.0.2.%[3]s
`, serial, v, octet)
}

// versionOf returns the single version an answer to alias.v.test. (TXT or
// A, reached through the CNAME) belongs to, or an error if the answer is
// incomplete or mixes versions.
func versionOf(r *dns.Msg) (string, error) {
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		return "", fmt.Errorf("rcode %s aa=%v", dns.RcodeToString[r.Rcode], r.Authoritative)
	}
	var cname bool
	txt := map[string]int{}
	var a []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.CNAME:
			cname = rr.Target == "multi.v.test."
		case *dns.TXT:
			v, _, _ := strings.Cut(rr.Txt[0], "-")
			txt[v]++
		case *dns.A:
			a = append(a, map[string]string{"192.0.2.1": "A", "192.0.2.2": "B"}[rr.A.String()])
		}
	}
	switch {
	case !cname:
		return "", fmt.Errorf("no CNAME in %v", r.Answer)
	case len(txt) == 1 && len(a) == 0:
		for v, n := range txt {
			if n == 3 && (v == "A" || v == "B") {
				return v, nil
			}
		}
	case len(txt) == 0 && len(a) == 1 && a[0] != "":
		return a[0], nil
	}
	return "", fmt.Errorf("mixed or incomplete answer: %v", r.Answer)
}

// TestReloadUnderLoad replaces a zone 1,000 times with alternating versions
// while clients query over UDP and TCP: no query may fail and every answer
// must come whole from one version.
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "v.test.zone")
	if err := os.WriteFile(path, []byte(versionZone("A", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	store := zone.NewStore(nil)
	loader, err := zone.NewLoader(zone.Config{Dir: dir, Rescan: -1}, store, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loader.Reload(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Identity: "reload-test"}, store, log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := bindPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeUDP(l.udp)
	go srv.ServeTCP(l.tcp)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		l.udp.Close()
	})
	addr := l.tcp.Addr().String()
	awaitResponding(t, addr)

	var (
		stop             atomic.Bool
		queries, failed  atomic.Int64
		answered         [2]atomic.Int64 // per version
		wg               sync.WaitGroup
		firstErrOnce     sync.Once
		firstErr         error
		recordFailure    = func(err error) { failed.Add(1); firstErrOnce.Do(func() { firstErr = err }) }
		clientsPerTransp = map[string]int{"udp": 3, "tcp": 2}
	)
	for netw, n := range clientsPerTransp {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &dns.Client{Net: netw, Timeout: 2 * time.Second}
				var conn *dns.Conn
				deadline := time.Now().Add(2 * time.Minute) // bound, whatever happens
				for q := 0; !stop.Load() && time.Now().Before(deadline) && q < 1_000_000; q++ {
					m := new(dns.Msg)
					qname, qtype := "alias.v.test.", dns.TypeTXT
					if q%2 == 1 {
						qtype = dns.TypeA
					}
					m.SetQuestion(qname, qtype)
					var r *dns.Msg
					var err error
					if netw == "tcp" {
						// Persistent connection, as resolvers keep them.
						if conn == nil {
							if conn, err = c.Dial(addr); err != nil {
								recordFailure(err)
								continue
							}
						}
						r, _, err = c.ExchangeWithConn(m, conn)
						if err != nil {
							conn.Close()
							conn = nil
						}
					} else {
						r, _, err = c.Exchange(m, addr)
					}
					queries.Add(1)
					if err != nil {
						recordFailure(err)
						continue
					}
					v, err := versionOf(r)
					if err != nil {
						recordFailure(err)
						continue
					}
					answered[map[string]int{"A": 0, "B": 1}[v]].Add(1)
				}
				if conn != nil {
					conn.Close()
				}
			}()
		}
	}

	start := time.Now()
	const replacements = 1000
	for i := 1; i <= replacements; i++ {
		v := "A"
		if i%2 == 1 {
			v = "B"
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(versionZone(v, i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		changed, err := loader.Reload()
		if err != nil || !changed {
			t.Fatalf("replacement %d: changed=%v err=%v", i, changed, err)
		}
	}
	// Let the clients see the last version for a moment, bounded.
	for end := time.Now().Add(2 * time.Second); queries.Load() < 2000 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)

	t.Logf("%d replacements in %v; %d queries, %d failed; answers from A %d, from B %d",
		replacements, elapsed.Round(time.Millisecond), queries.Load(), failed.Load(), answered[0].Load(), answered[1].Load())
	if failed.Load() != 0 {
		t.Fatalf("%d queries failed; first: %v", failed.Load(), firstErr)
	}
	if answered[0].Load() == 0 || answered[1].Load() == 0 {
		t.Errorf("both versions should have been seen: A %d, B %d", answered[0].Load(), answered[1].Load())
	}
	if s := store.Load().Zone("v.test."); s == nil || s.Serial != replacements+1 {
		t.Errorf("last version not serving: %+v", s)
	}
}

func TestCheckzone(t *testing.T) {
	var out, errOut strings.Builder
	zones := shippedZones(t)
	err := run(context.Background(), []string{"checkzone", filepath.Join(zones, "example.com.zone"), filepath.Join(zones, "example.net.zone")}, &out, &errOut)
	if err != nil {
		t.Fatalf("checkzone on the shipped zones: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{"zone example.com. serial 2026112201 records", "zone example.net. serial 2026112201 records"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}

	dir := t.TempDir()
	good := filepath.Join(dir, "good.test.zone")
	bad := filepath.Join(dir, "bad.test.zone")
	writeFile(t, dir, "good.test.zone", versionZone("A", 7))
	writeFile(t, dir, "bad.test.zone", "$ORIGIN bad.test.\n$TTL 60\n@ IN SOA ns1 hm 1 2 3 4 5\n@ IN NS ns1\nwww IN CNAME x\nwww IN A 192.0.2.1\nout.example. IN A 192.0.2.2\n")
	for _, args := range [][]string{{"checkzone", good, bad}, {"checkzone", "--zones", dir}} {
		out.Reset()
		err := run(context.Background(), args, &out, &errOut)
		if err != errFailed {
			t.Errorf("%v: err %v, want a failure", args, err)
		}
		for _, want := range []string{
			"zone v.test. serial 7",
			bad + ":6: A record beside a CNAME at www.bad.test.",
			bad + ":7: out.example. is outside the zone bad.test.",
			"1 zone(s) OK, 2 problem(s)",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: output lacks %q:\n%s", args, want, out.String())
			}
		}
	}
	if err := run(context.Background(), []string{"checkzone"}, &out, &errOut); err != errUsage {
		t.Errorf("checkzone without files: %v", err)
	}
}

// TestSIGHUPReloads starts the binary with a debounce longer than the test,
// so only SIGHUP can make it see an edited zone.
func TestSIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	zones := filepath.Join(dir, "zones")
	if err := os.Mkdir(zones, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, zones, "v.test.zone", versionZone("A", 1))
	writeFile(t, zones, "broken.test.zone", "$ORIGIN broken.test.\n@ 60 IN SOA ns1 hm 1 2 3 4 5\n")
	cfg := writeFile(t, dir, "anyns.yaml", "reload:\n  debounce: 1h\n  rescan: -1s\n")
	in := startAnyns(t, "--config", cfg, "--listen", "127.0.0.1:0", "--zones", zones, "--id", "hup")
	if !strings.Contains(in.logs.String(), `"file":"`+filepath.Join(zones, "broken.test.zone")+`"`) {
		t.Errorf("the broken zone's error does not name its file:\n%s", in.logs.String())
	}
	query := func() string {
		c := &dns.Client{Timeout: time.Second}
		m := new(dns.Msg)
		m.SetQuestion("alias.v.test.", dns.TypeA)
		r, _, err := c.Exchange(m, in.addr)
		if err != nil {
			return err.Error()
		}
		v, err := versionOf(r)
		if err != nil {
			return err.Error()
		}
		return v
	}
	if v := query(); v != "A" {
		t.Fatalf("before the edit: %s", v)
	}
	writeFile(t, zones, "v.test.zone", versionZone("B", 2))
	if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for query() != "B" {
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not reload the zone\n%s", in.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	in.stop(t)
}
