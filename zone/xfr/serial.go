package xfr

// serialCompare compares two SOA serials in RFC 1982 serial number
// arithmetic (SERIAL_BITS = 32): -1 if a is older than b, +1 if newer, 0 if
// equal. Two serials exactly 2^31 apart are undefined by RFC 1982 section
// 3.2; each compares as older than the other here (as BIND's
// isc_serial_gt does), so such a jump is never followed by IXFR or AXFR
// until the primary moves on.
func serialCompare(a, b uint32) int {
	switch d := int32(a - b); {
	case a == b:
		return 0
	case d > 0:
		return 1
	default:
		return -1
	}
}

// serialNewer reports whether serial a is newer than b.
func serialNewer(a, b uint32) bool { return serialCompare(a, b) > 0 }
