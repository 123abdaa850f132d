package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

type goPackage struct {
	ImportPath string
	Name       string
	Doc        string
	Deps       []string
}

// listPackages runs go list over the whole module.
func listPackages(t *testing.T) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestPackageBoundaries keeps the import table of STYLE.md section 1: zone,
// health and announce import nothing of this module, server only zone, and
// only announce may pull in GoBGP.
func TestPackageBoundaries(t *testing.T) {
	const mod = "github.com/anyns/anyns/"
	forbidden := map[string]map[string]string{
		"zone": {
			mod + "server": "zone is below server", mod + "announce": "zone knows nothing of BGP",
			mod + "health": "zone knows nothing of health checks", mod + "cmd/anyns": "nothing imports main",
		},
		"server": {
			mod + "announce": "server knows nothing of BGP", mod + "health": "health drives announce, not the server",
			mod + "cmd/anyns": "nothing imports main",
		},
		"health": {
			mod + "zone": "health sees the server as a resolver does, by address", mod + "server": "health probes over the network",
			mod + "announce": "cmd/anyns wires health to announce", mod + "cmd/anyns": "nothing imports main",
		},
		"announce": {
			mod + "zone": "announce knows nothing of DNS", mod + "server": "announce knows nothing of DNS",
			mod + "health": "announce takes desired state only", mod + "cmd/anyns": "nothing imports main",
		},
	}
	pkgs := listPackages(t)
	if len(pkgs) < 2 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.ImportPath, mod)
		for _, d := range p.Deps {
			if why, ok := forbidden[rel][d]; ok {
				t.Errorf("%s imports %s: %s", rel, d, why)
			}
			if strings.HasPrefix(d, "github.com/osrg/gobgp/") && rel != "announce" && rel != "cmd/anyns" {
				t.Errorf("%s imports %s: GoBGP stays behind the announce package", rel, d)
			}
		}
	}
}

// TestPackageDocs requires a package comment on every package.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment saying what it owns", p.ImportPath)
		}
	}
}
