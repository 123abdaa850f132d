#!/usr/bin/env bash
# reload.sh: query latency and lost queries while a 1,000,000-record zone
# reloads under load, for anyns and Knot DNS, in one run (issue 6).
#
#   deploy/bench/reload.sh [--rate QPS] [--reloads N] [--cpus LIST] [--servers "anyns knot"]
#
# Each server serves the 1M-record zone of compare.sh (1M names, one A each)
# on 127.0.0.1 with the CPUs given (default: all; "1" pins it to CPU 1 as
# compare.sh does). dnsperf, pinned to CPU 0, sends a steady QPS (default
# 20,000) of existing names (80%) and NXDOMAIN names (20%) while the zone
# file is changed N times (default 3: a record appended, so every reload
# parses the whole file again), each change once the previous version
# serves. The server reloads it on its own (anyns: the file watcher; Knot:
# `knotc zone-reload`). Reported per server: queries sent and lost, and the
# p50, p99, p99.9 and maximum latency of every answer of the run, measured
# by dnsperf, a process of its own, so the server's garbage collector
# cannot delay the clock that measures it; and the same for a run without
# reloads, the baseline. Where lost queries went: srv_drops counts those the
# server's socket dropped (its receive buffer full; /proc/net/udp), and
# other_drops the datagrams every other socket of the machine dropped so
# meanwhile, dnsperf's answers among them (/proc/net/snmp RcvbufErrors).
#
# Needs root only to install dnsperf and knot when missing. Only processes
# this script started are stopped, by PID.
set -euo pipefail

RATE=20000
RELOADS=3
CPUS=
SERVERS="anyns knot"
while [ $# -gt 0 ]; do
	case "$1" in
	--rate) RATE=$2; shift 2 ;;
	--reloads) RELOADS=$2; shift 2 ;;
	--cpus) CPUS=$2; shift 2 ;;
	--servers) SERVERS=$2; shift 2 ;;
	*) echo "usage: $0 [--rate QPS] [--reloads N] [--cpus LIST] [--servers \"anyns knot\"]" >&2; exit 2 ;;
	esac
done
REPO=$(cd "$(dirname "$0")/../.." && pwd)
# The Go toolchain of the Makefile (go.mod, README): fetched once from the module proxy.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
[ -n "$CPUS" ] || CPUS=0-$(($(nproc) - 1))

# shellcheck source=lib.sh
. "$REPO/deploy/bench/lib.sh"
install_missing reload.sh dnsperf:dnsperf knotd:knot dig:bind9-dnsutils

W=$(mktemp -d "${TMPDIR:-/tmp}/anyns-reload.XXXXXX")
trap cleanup EXIT

echo "# building anyns" >&2
(cd "$REPO" && go build -o "$W/anyns" ./cmd/anyns)

mkdir -p "$W/zones"
write_big_zone "$W/big.test.zone.orig"
awk 'BEGIN {
	srand(11)
	for (i = 0; i < 200000; i++) {
		if (rand() < 0.8) printf "h%d.big.test A\n", 1 + int(rand() * 999996)
		else printf "nx%d.big.test A\n", i
	}
}' >"$W/queries"

# serial PORT: the zone's SOA serial as the server answers it.
serial() { dig +time=1 +tries=1 +short -p "$1" @127.0.0.1 big.test SOA 2>/dev/null | awk '{print $3}'; }
wait_serial() { # PORT SERIAL: until the server answers with SERIAL (60s at most)
	for _ in $(seq 1 1200); do
		[ "$(serial "$1")" = "$2" ] && return 0
		sleep 0.05
	done
	echo "serial $2 not served after 60s" >&2
	return 1
}

start_anyns() {
	cat >"$W/anyns.yaml" <<-EOF
	identity: bench
	listen: ["127.0.0.1:$1"]
	zones: $W/zones
	control: {socket: "off"}
	log: {level: warn}
	reload: {debounce: 50ms}
	EOF
	local root=()
	[ "$(id -u)" != 0 ] || root=(--allow-root)
	taskset -c "$CPUS" "$W/anyns" serve "${root[@]}" --config "$W/anyns.yaml" >"$W/anyns.log" 2>&1 &
	PID=$!
}
reload_anyns() { :; } # the file watcher sees the change
start_knot() {
	knot_conf "$W/knot" "$W/zones" "$1" big.test big.test.zone
	taskset -c "$CPUS" knotd -c "$W/knot/knot.conf" >"$W/knot/log" 2>&1 &
	PID=$!
}
reload_knot() { knotc -s "$W/knot/knot.sock" zone-reload big.test >/dev/null; }

# change SERIAL: a new version of the zone file (one more record), written
# beside it and renamed over it, as an operator's tooling would.
change() {
	sed "s/hostmaster [0-9]* /hostmaster $1 /" "$W/zones/big.test.zone" >"$W/zones/.next"
	echo "r$1 IN A 192.0.2.$(($1 % 250 + 1))" >>"$W/zones/.next"
	mv "$W/zones/.next" "$W/zones/big.test.zone"
}

# run NAME PORT RELOADS: dnsperf at RATE for as long as RELOADS reloads
# take (at least 4s); prints "sent lost p50 p99 p999 max srv_drops
# other_drops" (latencies in microseconds; srv_drops: queries the server's
# socket dropped, its receive buffer full; other_drops: datagrams other
# sockets of the machine dropped so, dnsperf's answers among them).
run() {
	local name=$1 port=$2 n=$3 dur=$((4 + 3 * $3)) out
	local sd0 ge0 sd1 ge1
	sd0=$(sock_drops "$port")
	ge0=$(rcvbuf_errors)
	taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$W/queries" -l "$dur" -Q "$RATE" -c 1 -q 1000 -v \
		>"$W/$name-$n.out" 2>&1 &
	local perf=$!
	PIDS+=("$perf")
	sleep 1
	local s
	for s in $(seq 1 "$n"); do
		SERIAL=$((SERIAL + 1))
		change "$SERIAL"
		"reload_$name"
		wait_serial "$port" "$SERIAL"
		echo "  $name: serial $SERIAL serves" >&2
	done
	wait "$perf" || true
	sd1=$(sock_drops "$port")
	ge1=$(rcvbuf_errors)
	forget_pid "$perf"
	out=$W/$name-$n.out
	local sent lost
	sent=$(awk '/Queries sent:/ {print $3}' "$out")
	lost=$(awk '/Queries lost:/ {print $3}' "$out")
	awk '$1 == ">" {print $NF}' "$out" | sort -g | awk -v sent="$sent" -v lost="$lost" \
		-v sd=$((sd1 - sd0)) -v od=$((ge1 - ge0 - (sd1 - sd0))) '{a[NR] = $1} END {
		if (NR == 0) {print sent, lost, "- - - -", sd, od; exit}
		printf "%s %s %.0f %.0f %.0f %.0f %d %d\n", sent, lost, a[int(NR * 0.5) + 1] * 1e6,
			a[int(NR * 0.99) + 1] * 1e6, a[int(NR * 0.999) + 1] * 1e6, a[NR] * 1e6, sd, od }'
}

declare -A PORT=([anyns]=5391 [knot]=5392)
RESULTS=()
for s in $SERVERS; do
	echo "# $s" >&2
	SERIAL=1
	cp "$W/big.test.zone.orig" "$W/zones/big.test.zone"
	"start_$s" "${PORT[$s]}"
	PIDS+=("$PID")
	pid=$PID
	wait_serial "${PORT[$s]}" 1
	sleep 3 # anyns: precomputed answers built, the load's garbage released
	RESULTS+=("$s none $(run "$s" "${PORT[$s]}" 0)")
	RESULTS+=("$s $RELOADS $(run "$s" "${PORT[$s]}" "$RELOADS")")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
done

echo
echo "1M-record zone reloaded under $RATE queries/s (dnsperf on CPU 0; servers on CPUs $CPUS),"
echo "$(uname -srm), $(nproc) CPUs; latency of every answer in the run, in microseconds:"
printf "%-6s %8s %9s %6s %8s %8s %8s %8s %9s %11s\n" server reloads sent lost p50 p99 p99.9 max srv_drops other_drops
for r in "${RESULTS[@]}"; do
	# shellcheck disable=SC2086
	printf "%-6s %8s %9s %6s %8s %8s %8s %8s %9s %11s\n" $r
done
echo "srv_drops: queries the server's socket dropped (receive buffer full); other_drops: datagrams"
echo "other sockets of the machine dropped so meanwhile (dnsperf's answers among them)."
echo "(work dir: $W)"
