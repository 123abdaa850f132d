package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
)

// defaultSocket is the control socket when control.socket is not set:
// /run/anyns/anyns.sock as root, ./anyns.sock otherwise.
func defaultSocket() string {
	if os.Geteuid() == 0 {
		return "/run/anyns/anyns.sock"
	}
	return "anyns.sock"
}

// status is what `anyns ctl status` shows.
type status struct {
	Identity  string         `json:"identity"`
	Version   string         `json:"version"`
	Drained   bool           `json:"drained"`
	Zones     []zoneStatus   `json:"zones"`
	Prefixes  []prefixStatus `json:"prefixes"`
	Neighbors []peerStatus   `json:"neighbors"`
}

type zoneStatus struct {
	Zone    string `json:"zone"`
	Serial  uint32 `json:"serial"`
	Records int    `json:"records"`
	File    string `json:"file"`
	Serving bool   `json:"serving"`
	Error   string `json:"error,omitempty"`
}

type peerStatus struct {
	Address string    `json:"address"`
	ASN     uint32    `json:"asn"`
	State   string    `json:"state"`
	Since   time.Time `json:"since"`
}

// controlServer serves the control socket: GET /status, POST /drain,
// POST /undrain. File permissions (0660) are the access control.
type controlServer struct {
	path   string
	ln     net.Listener
	http   *http.Server
	status func() status
	drain  func(bool) error
}

// listenControl opens the control socket, replacing a stale one.
func listenControl(path string, statusFn func() status, drainFn func(bool) error, log *zap.Logger) (*controlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another anyns is running there", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	cs := &controlServer{path: path, ln: ln, status: statusFn, drain: drainFn}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(cs.status())
	})
	for path, d := range map[string]bool{"/drain": true, "/undrain": false} {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			if err := cs.drain(d); err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(cs.status())
		})
	}
	cs.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(log)}
	go func() { _ = cs.http.Serve(ln) }()
	return cs, nil
}

func (cs *controlServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = cs.http.Shutdown(ctx)
	_ = os.Remove(cs.path)
}

// ctlCmd implements `anyns ctl [--socket PATH] status [--json] | zones [--json] | drain | undrain`.
func ctlCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("anyns ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", defaultSocket(), "control socket `path` of the running server")
	asJSON := fs.Bool("json", false, "print status as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: anyns ctl [--socket PATH] status [--json] | zones [--json] | drain | undrain")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return errUsage
	}
	verb := fs.Arg(0)
	// Flags may also follow the verb: anyns ctl status --json.
	if err := fs.Parse(fs.Args()[1:]); err != nil || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	method, path := "", ""
	switch verb {
	case "status", "zones":
		method, path = http.MethodGet, "/status"
	case "drain":
		method, path = http.MethodPost, "/drain"
	case "undrain":
		method, path = http.MethodPost, "/undrain"
	default:
		fmt.Fprintf(stderr, "anyns ctl: unknown command %q\n", verb)
		fs.Usage()
		return errUsage
	}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", *socket)
		}},
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://anyns"+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach anyns at %s: %w", *socket, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", verb, strings.TrimSpace(string(body)))
	}
	var st status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("bad answer from anyns: %w", err)
	}
	if verb == "zones" {
		if *asJSON {
			return json.NewEncoder(stdout).Encode(st.Zones)
		}
		printZones(stdout, st.Zones)
		return nil
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	printStatus(stdout, st)
	return nil
}

// printZones renders the zone table of `anyns ctl zones` and status.
func printZones(w io.Writer, zs []zoneStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ZONE\tSERIAL\tRECORDS\tSERVING\tFILE\tERROR")
	for _, z := range zs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%v\t%s\t%s\n", cmp.Or(z.Zone, "-"), z.Serial, z.Records, z.Serving, z.File, z.Error)
	}
	tw.Flush()
}

// printStatus renders a status for people.
func printStatus(w io.Writer, st status) {
	fmt.Fprintf(w, "identity  %s\nversion   %s\ndrained   %v\n\n", st.Identity, st.Version, st.Drained)
	printZones(w, st.Zones)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(st.Prefixes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "PREFIX\tHEALTH\tANNOUNCED\tSINCE\tREASON")
		for _, p := range st.Prefixes {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", p.Prefix, p.Health, p.Announced, fmtSince(p.Since), p.Reason)
		}
		tw.Flush()
	}
	if len(st.Neighbors) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "NEIGHBOR\tASN\tSTATE\tSINCE")
		for _, n := range st.Neighbors {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", n.Address, n.ASN, n.State, fmtSince(n.Since))
		}
		tw.Flush()
	}
}

func fmtSince(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
