package xfr

import (
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// catalogVersion is the only catalog schema this package reads.
const catalogVersion = "2"

// parseCatalog returns the member zones of a catalog zone (RFC 9432
// section 4), by canonical name, each with its unique ID (the label of its
// PTR owner <id>.zones.<catalog>). The version property (RFC 9432 section
// 4.2.1) must be "2", or the catalog is not processed at all (an error).
// Members whose ID owns more than one PTR record are left out (section
// 4.1); a zone listed under several IDs keeps the first ID in name order;
// the catalog itself and names that are not domain names are ignored.
// Unknown properties (group, coo, ...) are ignored.
func parseCatalog(catalog string, rrs []dns.RR) (map[string]string, error) {
	catalog = dns.CanonicalName(catalog)
	zones := "zones." + catalog
	versionOwner := "version." + catalog
	var versions []string
	byID := make(map[string][]string)
	for _, rr := range rrs {
		owner := dns.CanonicalName(rr.Header().Name)
		switch v := rr.(type) {
		case *dns.TXT:
			if owner == versionOwner {
				versions = append(versions, strings.Join(v.Txt, ""))
			}
		case *dns.PTR:
			id, parent, ok := strings.Cut(owner, ".")
			if !ok || parent != zones || id == "" {
				continue // a property of a member (ext, group, coo) or junk
			}
			byID[id] = append(byID[id], dns.CanonicalName(v.Ptr))
		}
	}
	if len(versions) != 1 || versions[0] != catalogVersion {
		return nil, fmt.Errorf("catalog %s: version %q, want exactly one TXT %q", catalog, versions, catalogVersion)
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	members := make(map[string]string, len(ids))
	for _, id := range ids {
		ptrs := byID[id]
		if len(ptrs) != 1 {
			continue
		}
		m := ptrs[0]
		if _, ok := dns.IsDomainName(m); !ok || m == catalog {
			continue
		}
		if _, dup := members[m]; dup {
			continue
		}
		members[m] = id
	}
	return members, nil
}
