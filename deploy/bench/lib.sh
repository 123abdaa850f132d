# lib.sh: what compare.sh and reload.sh share. Sourced, not run.

# install_missing NAME CMD:PKG...: installs with apt the packages whose
# command is missing (as root), keeping Debian's postinst scripts from
# starting the daemons (with a policy-rc.d, at $POLICY_RC_D, default
# /usr/sbin/policy-rc.d, while apt-get runs).
install_missing() {
	local name=$1 need=() c rc_d=${POLICY_RC_D:-/usr/sbin/policy-rc.d}
	shift
	for c in "$@"; do
		command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
	done
	[ ${#need[@]} -gt 0 ] || return 0
	[ "$(id -u)" = 0 ] || { echo "$name: install ${need[*]} (or run as root)" >&2; exit 1; }
	# Read whole before matching: grep -q would stop at the first match and,
	# under pipefail, apt-cache's SIGPIPE would fail the test. A fresh
	# machine has no package lists yet: without a candidate, apt-get
	# update runs once and the question is asked again.
	local policy
	policy=$(apt-cache policy "${need[0]}" 2>/dev/null) || true
	if ! grep -q 'Candidate: [0-9]' <<<"$policy"; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
		policy=$(apt-cache policy "${need[0]}" 2>/dev/null) || true
	fi
	if ! grep -q 'Candidate: [0-9]' <<<"$policy"; then
		echo "$name: ${need[0]} is not in this system's apt sources" >&2
		exit 1
	fi
	printf '#!/bin/sh\nexit 101\n' >"$rc_d"
	chmod +x "$rc_d"
	trap "rm -f '$rc_d'" EXIT
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >/dev/null
	rm -f "$rc_d"
	trap - EXIT
}

# PIDS holds the processes the script started; cleanup stops those, by
# PID, on exit.
PIDS=()

# forget_pid PID: drops PID from PIDS, once it is stopped. Whole entries
# are compared: a pattern substitution ("${PIDS[@]/$p/}") would also cut
# PID out of a longer one (123 out of 41234, leaving 44 for cleanup to
# kill).
forget_pid() {
	local keep=() p
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}
cleanup() {
	local p
	for p in "${PIDS[@]}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
}

# knot_conf DIR ZONES PORT DOMAIN FILE: writes DIR/knot.conf for one zone
# served from ZONES/FILE on 127.0.0.1@PORT, one worker of each kind, no
# journal, no semantic checks (as the peers load it in compare.sh).
knot_conf() {
	mkdir -p "$1/db"
	cat >"$1/knot.conf" <<-CONF
	server:
	  rundir: "$1"
	  listen: 127.0.0.1@$3
	  udp-workers: 1
	  tcp-workers: 1
	  background-workers: 1
	database:
	  storage: "$1/db"
	log:
	  - target: stderr
	    any: warning
	template:
	  - id: default
	    storage: "$2"
	    semantic-checks: off
	    zonefile-sync: -1
	    zonefile-load: whole
	    journal-content: none
	zone:
	  - domain: $4
	    file: $5
	CONF
}

# write_big_zone FILE: the 1,000,000-record zone big.test. (the SOA, one NS,
# its address and 999,997 names with one A record each).
write_big_zone() {
	awk 'BEGIN {
		print "$ORIGIN big.test.\n$TTL 3600"
		print "@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300"
		print "@ IN NS ns1\nns1 IN A 192.0.2.1"
		for (i = 1; i <= 999997; i++)
			printf "h%d IN A 10.%d.%d.%d\n", i, int(i/65536)%256, int(i/256)%256, i%256
	}' >"$1"
}

# sock_drops PORT: datagrams dropped so far by the UDP sockets bound to PORT
# (the server's: /proc/net/udp's drops column, receive buffer full).
sock_drops() {
	awk -v port="$(printf '%04X' "$1")" '$2 ~ ":" port "$" {d += $NF} END {print d + 0}' /proc/net/udp
}
# rcvbuf_errors: the machine's UDP receive-buffer errors so far (every
# socket: the server's, dnsperf's, anyone's).
rcvbuf_errors() {
	awk '$1 == "Udp:" && !h {for (i = 2; i <= NF; i++) col[$i] = i; h = 1; next}
		$1 == "Udp:" {print $col["RcvbufErrors"]}' /proc/net/snmp
}
