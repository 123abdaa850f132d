package zone

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkParserOnly1MFlat runs miekg/dns's ZoneParser alone over the
// 1M-name zone of deploy/bench/compare.sh (writeFlatZone), reading it from
// memory and keeping nothing: no line tracking, no validation, no zone
// built. It is the floor under a load of that zone (BenchmarkLoad1MFlat's
// s/ready), as the zone file syntax is parsed by miekg/dns only. Run it
// with -benchtime=1x, pinned to one core (taskset -c 1) to compare with
// the one-core load times of compare.sh.
func BenchmarkParserOnly1MFlat(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.example.zone")
	writeFlatZone(b, path, 1_000_000)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		zp := dns.NewZoneParser(bytes.NewReader(data), "", path)
		n := 0
		for _, ok := zp.Next(); ok; _, ok = zp.Next() {
			n++
		}
		if err := zp.Err(); err != nil || n != 1_000_000 {
			b.Fatalf("%d records, %v", n, err)
		}
	}
}
