package zone

import (
	"iter"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// allNodes yields every node of z with its name, the apex first.
func (z *Zone) allNodes() iter.Seq2[string, *node] {
	return func(yield func(string, *node) bool) {
		for i := range z.nodes {
			if !yield(z.name(&z.nodes[i]), &z.nodes[i]) {
				return
			}
		}
	}
}

// TestNodesPointerFree checks that the per-name arrays of a zone hold no
// pointer, so that the garbage collector does not scan them: what a
// large zone costs at each GC cycle.
func TestNodesPointerFree(t *testing.T) {
	for _, v := range []any{node{}, rrset{}, wireLoc{}, uint64(0)} {
		if typ := reflect.TypeOf(v); hasPointers(typ) {
			t.Errorf("%v holds pointers", typ)
		}
	}
	if reflect.TypeOf(nameIndex{}).Elem().Kind() != reflect.Uint64 {
		t.Error("nameIndex is not a slice of uint64")
	}
	if size := reflect.TypeOf(node{}).Size(); size > 16 {
		t.Errorf("node is %d bytes, want at most 16", size)
	}
}

func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	case reflect.Array:
		return hasPointers(t.Elem())
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.String, reflect.Interface,
		reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	}
	return false
}

// TestNodeIndex checks the name index of zones built with a hint far too
// low (it grows), about right, and far too high (finish shrinks it): every
// name and empty non-terminal is found, with its flags and sets, names
// that are not there are not, and the table keeps its load factor.
func TestNodeIndex(t *testing.T) {
	var zf strings.Builder
	zf.WriteString("$ORIGIN idx.example.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\nns1 A 192.0.2.1\n")
	const names = 5000
	for i := range names {
		// Deep names, so that empty non-terminals are made too, and
		// owners listed twice (not together): their sets move.
		zf.WriteString("h" + strconv.Itoa(i) + ".l" + strconv.Itoa(i%7) + " A 10.0.0.1\n")
		if i%100 == 0 {
			zf.WriteString("h" + strconv.Itoa(i/2) + ".l" + strconv.Itoa(i/2%7) + " TXT x\n")
		}
	}
	zf.WriteString("sub NS ns.sub\nns.sub A 192.0.2.2\nc\\.d\\065 TXT escaped\n")
	data := []byte(zf.String())
	want := map[string]bool{} // name: has sets
	for _, hint := range []int{0, 1, names, 1000 * names} {
		b := newBuilder("idx.example.zone", hint)
		zp := dns.NewZoneParser(strings.NewReader(zf.String()), "", "idx.example.zone")
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			b.add(rr, "idx.example.zone", 0)
		}
		if err := zp.Err(); err != nil {
			t.Fatal(err)
		}
		z, err := b.finish()
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 {
			for name, n := range z.allNodes() {
				want[name] = !n.empty()
			}
			if got := nameHint(data, 0); got < names || got > 2*names {
				t.Errorf("nameHint = %d for %d lines", got, strings.Count(zf.String(), "\n"))
			}
			if got := nameHint(data, 100); got != 100 {
				t.Errorf("nameHint with at most 100 records = %d", got)
			}
		}
		if len(z.nodes) != len(want) || len(want) < names+7+2 {
			t.Fatalf("hint %d: %d nodes, want %d", hint, len(z.nodes), len(want))
		}
		if load := float64(len(z.nodes)) / float64(len(z.index)); load > maxLoad/10.0 || load < 0.3 {
			t.Errorf("hint %d: index of %d slots for %d names", hint, len(z.index), len(z.nodes))
		}
		if z.apex() != z.lookup("idx.example.") || z.name(z.apex()) != "idx.example." {
			t.Errorf("hint %d: the apex is not node 0", hint)
		}
		for name, sets := range want {
			n := z.lookup(name)
			if n == nil || z.name(n) != name || n.empty() == sets {
				t.Fatalf("hint %d: lookup(%q) = %v", hint, name, n)
			}
		}
		if n := z.lookup("l0.idx.example."); n == nil || !n.empty() {
			t.Errorf("hint %d: the empty non-terminal l0 is missing or not empty", hint)
		}
		for _, name := range []string{"h0.l0.idx.example.", "h2500.l1.idx.example.", "c\\.da.idx.example.", "sub.idx.example."} {
			if n := z.lookup(name); n == nil || n.empty() {
				t.Errorf("hint %d: %s missing or empty", hint, name)
			}
		}
		if n := z.lookup("h50.l1.idx.example."); n == nil || len(z.setsOf(n)) != 2 {
			t.Errorf("hint %d: h50.l1 does not have its A and TXT sets", hint)
		}
		for _, name := range []string{"idx.example", "example.", ".", "", "x.idx.example.", "h5000.l2.idx.example.", "L0.idx.example."} {
			if n := z.lookup(name); n != nil {
				t.Errorf("hint %d: lookup(%q) found %q", hint, name, z.name(n))
			}
		}
		// Sets are in node order (buildWire relies on it).
		for i := 1; i < len(z.nodes); i++ {
			if a, b := &z.nodes[i-1], &z.nodes[i]; b.first < a.first+a.nsets {
				t.Fatalf("hint %d: node %d's sets overlap node %d's or come before", hint, i, i-1)
			}
		}
		if last := &z.nodes[len(z.nodes)-1]; last.first+last.nsets != uint32(len(z.sets)) {
			t.Errorf("hint %d: sets do not end with the last node's", hint)
		}
	}
}

// TestNameIndexCollisions checks entries whose hashes are equal, and whose
// probe sequences wrap at the end of the table.
func TestNameIndexCollisions(t *testing.T) {
	names := "a.b.c.d.e."
	var nodes []node
	x := make(nameIndex, 8)
	for i := range 5 {
		off := 2 * i
		nodes = append(nodes, node{off: uint32(off), len: uint16(len(names) - off)})
		x.put(uint64(0xffffffff)<<32 | uint64(i+1)) // home: the last slot
	}
	for i := range 5 {
		if got := x.find(names[2*i:], 0xffffffff, nodes, names); got != uint32(i+1) {
			t.Errorf("find(%q) = %d, want %d", names[2*i:], got, i+1)
		}
	}
	if got := x.find("f.", 0xffffffff, nodes, names); got != 0 {
		t.Errorf("find of a missing name = %d", got)
	}
	y := x.resized(5)
	for i := range 5 {
		if got := y.find(names[2*i:], 0xffffffff, nodes, names); got != uint32(i+1) {
			t.Errorf("resized: find(%q) = %d, want %d", names[2*i:], got, i+1)
		}
	}
	if (nameIndex{}).find("a.", 1, nil, "") != 0 {
		t.Error("find in an empty index")
	}
}

// TestFindLongestMatch checks Snapshot.find, which compares origins with
// the name for a few zones and looks suffixes up in a map for more,
// against the longest matching origin, for subsets of zones of both
// sizes.
func TestFindLongestMatch(t *testing.T) {
	origins := []string{".", "com.", "example.com.", "sub.example.com.", "b\\.c.example.com.", "c.example.com.", "example.net.", "xample.com."}
	var zs []*Zone
	for _, o := range origins {
		zs = append(zs, zoneFromText(t, "z.zone", "$ORIGIN "+o+"\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\n"))
	}
	names := []string{".", "com.", "org.", "example.com.", "a.example.com.", "a.sub.example.com.", "sub.example.com.",
		"xsub.example.com.", "b\\.c.example.com.", "a.b\\.c.example.com.", "b.c.example.com.", "a\\.c.example.com.",
		"xample.com.", "e.xample.com.", "example.net.", "x.example.net.", "net.", "a\\.example.com.", "\\.example.com."}
	for _, subset := range [][]int{{0, 1, 2, 3, 4, 5, 6, 7}, {2, 3, 4, 5, 6}, {2, 3, 4, 5}, {1, 2, 7}, {0}, {6}, {}} {
		var in []*Zone
		for _, i := range subset {
			in = append(in, zs[i])
		}
		s, err := NewSnapshot(in...)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			var want *Zone
			for _, z := range in {
				if isSubdomain(name, z.Origin) && (want == nil || len(z.Origin) > len(want.Origin)) {
					want = z
				}
			}
			if got := s.find(name); got != want {
				t.Errorf("zones %v: find(%q) = %v, want %v", subset, name, got, want)
			}
		}
	}
}
