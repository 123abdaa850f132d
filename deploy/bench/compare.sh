#!/usr/bin/env bash
# compare.sh: anyns against NSD, Knot DNS and BIND on this machine, in one run
# (issue 6). Needs root (apt, taskset, peers' configs).
#
#   deploy/bench/compare.sh [--rounds N] [--duration S] [--latency-rate QPS] [--slices N]
#                           [--slice-duration S] [--slice-rate QPS|auto|0] [--load-rounds N]
#                           [--no-bind] [--no-big]
#
# Each server runs on 127.0.0.1 with a port of its own, one worker, pinned to
# CPU 1 (every thread); dnsperf runs pinned to CPU 0. Per server and
# transport it reports: QPS, server CPU per answered query (user + kernel,
# from /proc/PID/stat utime and stime of the server and its children, before
# and after), QPS per core of server CPU, p50/p99 latency (from a separate
# run with dnsperf -v, paced at --latency-rate, default 20,000 queries/s: a
# rate at which dnsperf can print every answer, so that its own core is not
# the limit, as it was at half the measured rate, where p50 flipped between
# about 40 and 150 us from run to run for every server), lost queries, RSS,
# and the load time and RSS of a 1,000,000-record
# zone (its own rounds, --load-rounds, default 3: each server in turn, with
# the ratio anyns/peer of every round and their median).
# Medians over the rounds; then the ratios anyns/NSD and anyns/Knot.
#
# Then UDP again, interleaved (--slices, default 12; 0: none): every server
# runs at once, each pinned to CPU 1 on its own port, and dnsperf queries
# one after the other for --slice-duration seconds each (default 3),
# rotating which goes first, --slices times. This machine's speed flips
# between a fast and a slow mode within seconds (1.6x apart), so runs
# minutes apart compare different machines; in one slice the servers ran
# seconds apart. Reported: each server's median CPU per query over the
# slices, and the median over the slices of anyns/peer within a slice.
# Then the same slices at a fixed rate (--slice-rate QPS; default auto:
# 60% of the lowest median QPS of the full-rate slices; 0: none), so that
# every server answers the same offered load. At dnsperf's full rate the
# servers are saturated and a server that falls behind reads fuller
# batches (and drops what overflows its socket: Knot does), which makes
# its kernel's share per query smaller; at a fixed rate that every server
# keeps up with, the CPU per query compares the same work.
#
# Only processes this script started are stopped, by PID.
set -euo pipefail

ROUNDS=3
LOAD_ROUNDS=3
DURATION=10
LATENCY_RATE=20000
SLICES=12
SLICE_DURATION=3
SLICE_RATE=auto
WITH_BIND=1
WITH_BIG=1
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--latency-rate) LATENCY_RATE=$2; shift 2 ;;
	--slices) SLICES=$2; shift 2 ;;
	--slice-duration) SLICE_DURATION=$2; shift 2 ;;
	--slice-rate) SLICE_RATE=$2; shift 2 ;;
	--load-rounds) LOAD_ROUNDS=$2; shift 2 ;;
	--no-bind) WITH_BIND=0; shift ;;
	--no-big) WITH_BIG=0; shift ;;
	*) echo "usage: $0 [--rounds N] [--duration S] [--latency-rate QPS] [--slices N] [--slice-duration S] [--slice-rate QPS|auto|0] [--load-rounds N] [--no-bind] [--no-big]" >&2; exit 2 ;;
	esac
done

[ "$(id -u)" = 0 ] || { echo "compare.sh: run as root" >&2; exit 1; }
REPO=$(cd "$(dirname "$0")/../.." && pwd)
# The Go toolchain of the Makefile (go.mod, README): fetched once from the module proxy.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
SRV_CPU=1
GEN_CPU=0
NAMES=10000
NQUERIES=100000
TCP_CONNS=8

# --- install ---------------------------------------------------------------
# shellcheck source=lib.sh
. "$REPO/deploy/bench/lib.sh"
pkgs=(dnsperf:dnsperf nsd:nsd knotd:knot dig:bind9-dnsutils pgrep:procps)
[ $WITH_BIND = 0 ] || pkgs+=(named:bind9)
install_missing compare.sh "${pkgs[@]}"

W=$(mktemp -d "${TMPDIR:-/tmp}/anyns-bench.XXXXXX")
trap cleanup EXIT

echo "# building anyns" >&2
(cd "$REPO" && go build -o "$W/anyns" ./cmd/anyns)

# --- zones and queries -----------------------------------------------------
mkdir -p "$W/zones" "$W/big"
awk -v n=$NAMES 'BEGIN {
	print "$ORIGIN bench.test.\n$TTL 3600"
	print "@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300"
	print "@ IN NS ns1\n@ IN NS ns2\n@ IN MX 10 mail"
	print "ns1 IN A 192.0.2.1\nns2 IN A 192.0.2.2\nmail IN A 192.0.2.25"
	for (i = 1; i <= n - 3; i++) {
		printf "host-%d IN A 10.%d.%d.%d\n", i, int(i/65536)%256, int(i/256)%256, i%256
		if (i % 2 == 0) printf "host-%d IN AAAA 2001:db8::%x\n", i, i
	}
}' >"$W/zones/bench.test.zone"
# 70% existing names (A), 20% NXDOMAIN, 10% other types (AAAA: half exist,
# MX and TXT: NODATA, and apex NS/MX/SOA).
awk -v n=$NAMES -v q=$NQUERIES 'BEGIN {
	srand(6)
	for (k = 0; k < q; k++) {
		r = rand(); i = 1 + int(rand() * (n - 3))
		if (r < 0.70) printf "host-%d.bench.test A\n", i
		else if (r < 0.90) printf "nx-%d.bench.test A\n", i
		else {
			t = int(rand() * 6)
			if (t < 2) printf "host-%d.bench.test AAAA\n", i
			else if (t == 2) printf "host-%d.bench.test MX\n", i
			else if (t == 3) printf "host-%d.bench.test TXT\n", i
			else if (t == 4) printf "bench.test NS\n"
			else printf "bench.test MX\n"
		}
	}
}' >"$W/queries"
if [ $WITH_BIG = 1 ]; then
	write_big_zone "$W/big/big.test.zone"
fi

# --- servers -----------------------------------------------------------------
# start_<server> DIR PORT ZONE ORIGIN: starts it pinned to SRV_CPU and sets PID.
start_anyns() {
	cat >"$W/anyns-$2.yaml" <<-EOF
	identity: bench
	listen: ["127.0.0.1:$2"]
	zones: $1
	control: {socket: "off"}
	log: {level: warn}
	EOF
	taskset -c $SRV_CPU "$W/anyns" serve --allow-root --config "$W/anyns-$2.yaml" >"$W/anyns-$2.log" 2>&1 &
	PID=$!
}
start_nsd() {
	local d="$W/nsd-$2"
	mkdir -p "$d"
	cat >"$d/nsd.conf" <<-EOF
	server:
	  ip-address: 127.0.0.1@$2
	  server-count: 1
	  username: ""
	  chroot: ""
	  zonesdir: "$1"
	  database: ""
	  zonelistfile: "$d/zone.list"
	  xfrdfile: "$d/xfrd.state"
	  pidfile: "$d/nsd.pid"
	  verbosity: 0
	  hide-version: no
	  rrl-ratelimit: 0
	  reuseport: no
	remote-control:
	  control-enable: no
	zone:
	  name: $4
	  zonefile: $3
	EOF
	taskset -c $SRV_CPU nsd -d -c "$d/nsd.conf" >"$d/log" 2>&1 &
	PID=$!
}
start_knot() {
	local d="$W/knot-$2"
	knot_conf "$d" "$1" "$2" "$4" "$3"
	taskset -c $SRV_CPU knotd -c "$d/knot.conf" >"$d/log" 2>&1 &
	PID=$!
}
start_bind() {
	local d="$W/bind-$2"
	mkdir -p "$d"
	cat >"$d/named.conf" <<-EOF
	options {
	  directory "$d";
	  pid-file "$d/named.pid";
	  listen-on port $2 { 127.0.0.1; };
	  listen-on-v6 { none; };
	  recursion no;
	  rate-limit { responses-per-second 0; };
	};
	controls { };
	zone "$4" { type primary; file "$1/$3"; };
	EOF
	taskset -c $SRV_CPU named -g -n 1 -U 1 -c "$d/named.conf" >"$d/log" 2>&1 &
	PID=$!
}

# wait_ready PORT ORIGIN: polls until the SOA is answered (60s at most);
# prints the seconds it took.
wait_ready() {
	local t0 t1
	t0=$(date +%s.%N)
	for _ in $(seq 1 1200); do
		# dig on dnsperf's CPU: not on the CPU of a server that is loading
		if taskset -c $GEN_CPU dig +time=1 +tries=1 +short -p "$1" @127.0.0.1 "$2" SOA 2>/dev/null | grep -q hostmaster; then
			t1=$(date +%s.%N)
			echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}'
			return 0
		fi
		sleep 0.02
	done
	echo "timeout"
	return 1
}

# median_of X...: the median of the numbers given ("-" if none).
median_of() {
	printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -n |
		awk '{a[NR] = $1} END {if (NR == 0) print "-"; else printf "%.3f", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# AWK_MEDIAN: median(a, n) of a[1..n] (sorts a), for the awk programs of this script.
AWK_MEDIAN='function median(a, n,   i, j, t) {
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) {t = a[i]; a[i] = a[j]; a[j] = t}
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}'

# per_record KB: bytes per record of KB kibibytes for the 1M-record zone.
per_record() { awk -v k="$1" 'BEGIN {printf "%.0f", k * 1024 / 1000000}'; }

# tree PID: PID and all its descendants.
tree() {
	local p=$1 c
	echo "$p"
	for c in $(pgrep -P "$p" 2>/dev/null); do tree "$c"; done
}
# cpu PID: user and system clock ticks of PID and its descendants.
cpu() {
	local u=0 s=0 p f
	for p in $(tree "$1"); do
		for t in /proc/"$p"/task/*/stat; do :; done
		f=$(cut -d')' -f2 /proc/"$p"/stat 2>/dev/null) || continue
		set -- $f
		u=$((u + ${12})) s=$((s + ${13}))
	done
	echo "$u $s"
}
rss_kb() {
	local t=0 p v
	for p in $(tree "$1"); do
		v=$(awk '/^VmRSS/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0)
		t=$((t + ${v:-0}))
	done
	echo $t
}
pin_all() { # every thread of every process of the server on SRV_CPU
	local p
	for p in $(tree "$1"); do taskset -a -p -c $SRV_CPU "$p" >/dev/null 2>&1 || true; done
}
stop() {
	local p=$1
	kill "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	forget_pid "$p"
}

HZ=$(getconf CLK_TCK)
RESULTS="$W/results"
: >"$RESULTS"

# measure NAME PID PORT TRANSPORT ROUND
measure() {
	local name=$1 pid=$2 port=$3 tr=$4 round=$5 out before after
	local args=(-s 127.0.0.1 -p "$port" -d "$W/queries" -m "$tr")
	if [ "$tr" = tcp ]; then args+=(-c $TCP_CONNS -q 800); else args+=(-c 1 -q 500); fi
	# warm up (its length given on its own: a pattern substitution on the
	# arguments, as here once, also rewrote the address and the port)
	taskset -c $GEN_CPU dnsperf "${args[@]}" -l 2 >/dev/null 2>&1 || true
	before=$(cpu "$pid")
	local d0 d1
	d0=$(sock_drops "$port")
	out=$(taskset -c $GEN_CPU dnsperf "${args[@]}" -l "$DURATION" 2>&1)
	d1=$(sock_drops "$port")
	after=$(cpu "$pid")
	local sent done lost qps
	sent=$(awk '/Queries sent:/ {print $3}' <<<"$out")
	done=$(awk '/Queries completed:/ {print $3}' <<<"$out")
	lost=$(awk '/Queries lost:/ {print $3}' <<<"$out")
	qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
	# latency: a run paced at LATENCY_RATE, each answer printed; what reads
	# the answers runs on dnsperf's CPU too, not on the server's
	local lat
	lat=$(taskset -c $GEN_CPU dnsperf -v -s 127.0.0.1 -p "$port" -d "$W/queries" -l 3 -m "$tr" \
		-Q "$LATENCY_RATE" $([ "$tr" = tcp ] && echo "-c $TCP_CONNS") 2>/dev/null |
		taskset -c $GEN_CPU awk '$1 == ">" {print $NF}' | taskset -c $GEN_CPU sort -g | awk '{a[NR] = $1} END {
			if (NR == 0) {print "- -"; exit}
			printf "%.0f %.0f", a[int(NR * 0.5) + 1] * 1e6, a[int(NR * 0.99) + 1] * 1e6 }')
	echo "$name $tr $round $done $lost $qps $before $after $lat $(rss_kb "$pid") $((d1 - d0))" >>"$RESULTS"
	echo "  $name $tr round $round: $qps qps, sent $sent, lost $lost" >&2
}

SERVERS=(anyns nsd knot)
[ $WITH_BIND = 0 ] || SERVERS+=(bind)
declare -A PORT=([anyns]=5301 [nsd]=5302 [knot]=5303 [bind]=5304)
declare -A LOAD LOADRSS LOADALL

for round in $(seq 1 "$ROUNDS"); do
	for s in "${SERVERS[@]}"; do
		echo "# round $round: $s" >&2
		"start_$s" "$W/zones" "${PORT[$s]}" bench.test.zone bench.test
		PIDS+=("$PID")
		pid=$PID
		wait_ready "${PORT[$s]}" bench.test >/dev/null || { echo "$s did not start; see $W" >&2; exit 1; }
		pin_all "$pid"
		measure "$s" "$pid" "${PORT[$s]}" udp "$round"
		measure "$s" "$pid" "${PORT[$s]}" tcp "$round"
		stop "$pid"
	done
done

# Interleaved UDP slices: all servers up at once, dnsperf on each in turn;
# first at dnsperf's full rate, then at a fixed rate that every server keeps
# up with (--slice-rate; default: 60% of the lowest median full-rate QPS of
# the servers in the first slices).
SLICED="$W/slices"
SLICED_FIXED="$W/slices-fixed"
: >"$SLICED"
: >"$SLICED_FIXED"
# slices RATE FILE: SLICES slices of each server, each line "server slice
# completed cpu-before cpu-after sent avg-latency-us" in FILE; RATE 0 is
# dnsperf's full rate (500 queries outstanding), else dnsperf -Q RATE.
slices() {
	local rate=$1 file=$2 n=${#SERVERS[@]} slice k s before after out
	local pace=(-q 500)
	[ "$rate" = 0 ] || pace=(-q 500 -Q "$rate")
	for slice in $(seq 1 "$SLICES"); do
		for k in $(seq 0 $((n - 1))); do
			s=${SERVERS[$(((slice - 1 + k) % n))]}
			before=$(cpu "${SPID[$s]}")
			out=$(taskset -c $GEN_CPU dnsperf -s 127.0.0.1 -p "${PORT[$s]}" -d "$W/queries" -l "$SLICE_DURATION" -c 1 "${pace[@]}" 2>&1)
			after=$(cpu "${SPID[$s]}")
			echo "$s $slice $(awk '/Queries completed:/ {print $3}' <<<"$out") $before $after $(awk '/Queries sent:/ {print $3}' <<<"$out")" \
				"$(awk '/Average Latency/ {printf "%.0f", $4 * 1e6}' <<<"$out")" >>"$file"
		done
		echo "# UDP slice $slice of $SLICES done (rate: $([ "$rate" = 0 ] && echo full || echo "$rate/s"))" >&2
	done
}
if [ "$SLICES" -gt 0 ]; then
	declare -A SPID
	for s in "${SERVERS[@]}"; do
		"start_$s" "$W/zones" "${PORT[$s]}" bench.test.zone bench.test
		PIDS+=("$PID")
		SPID[$s]=$PID
		wait_ready "${PORT[$s]}" bench.test >/dev/null || { echo "$s did not start; see $W" >&2; exit 1; }
		pin_all "$PID"
		taskset -c $GEN_CPU dnsperf -s 127.0.0.1 -p "${PORT[$s]}" -d "$W/queries" -l 2 -c 1 -q 500 >/dev/null 2>&1 || true
	done
	slices 0 "$SLICED"
	if [ "$SLICE_RATE" = auto ]; then
		SLICE_RATE=$(awk -v d="$SLICE_DURATION" '
		'"$AWK_MEDIAN"'
		{n[$1]++; q[$1, n[$1]] = $3 / d}
		END {
			low = 0
			for (s in n) {
				delete a
				for (i = 1; i <= n[s]; i++) a[i] = q[s, i]
				m = median(a, n[s])
				if (low == 0 || m < low) low = m
			}
			printf "%d", int(low * 0.6 / 1000) * 1000
		}' "$SLICED")
	fi
	if [ "$SLICE_RATE" -gt 0 ]; then
		slices "$SLICE_RATE" "$SLICED_FIXED"
	fi
	for s in "${SERVERS[@]}"; do stop "${SPID[$s]}"; done
fi

if [ $WITH_BIG = 1 ]; then
	# Pinned to one core (with the RSS), then with every
	# core (anyns parses and precomputes a large zone in
	# parallel; Knot, NSD and BIND load one zone on one thread either way).
	# RSS is read 3s after the zone answers, once anyns has built its
	# precomputed answers in the background and released the load's
	# garbage.
	# The servers take turns, LOAD_ROUNDS times: the machine's speed
	# drifts, and one sample each would compare different moments.
	# RSS is read in the first round.
	ONE_CPU=$SRV_CPU
	ALL_CPUS=0-$(($(nproc) - 1))
	declare -A LOADS LOADALLS
	for lround in $(seq 1 "$LOAD_ROUNDS"); do
		for s in "${SERVERS[@]}"; do
			for cpus in "$ONE_CPU" "$ALL_CPUS"; do
				SRV_CPU=$cpus
				"start_$s" "$W/big" "${PORT[$s]}" big.test.zone big.test
				PIDS+=("$PID")
				pid=$PID
				t=$(wait_ready "${PORT[$s]}" big.test || true)
				echo "# 1M-record zone, round $lround: $s on CPUs $cpus ready in $t s" >&2
				if [ "$cpus" = "$ONE_CPU" ]; then
					LOADS[$s]+=" $t"
					if [ "$lround" = 1 ]; then
						pin_all "$pid"
						sleep 3
						LOADRSS[$s]=$(rss_kb "$pid")
					fi
				else
					LOADALLS[$s]+=" $t"
				fi
				stop "$pid"
			done
		done
	done
	for s in "${SERVERS[@]}"; do
		LOAD[$s]=$(median_of ${LOADS[$s]})
		LOADALL[$s]=$(median_of ${LOADALLS[$s]})
	done
	SRV_CPU=$ONE_CPU
fi

# --- report --------------------------------------------------------------------
echo
echo "anyns vs peers: $(uname -srm), $(nproc) CPUs ($(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')),"
echo "10,000-name zone, $NQUERIES-query mix (70% existing, 20% NXDOMAIN, 10% other types), ${DURATION}s per run,"
echo "server on CPU $SRV_CPU, dnsperf on CPU $GEN_CPU (UDP: 1 socket, 500 outstanding; TCP: $TCP_CONNS connections, 800 outstanding;"
echo "p50/p99 from a run paced at $LATENCY_RATE queries/s)."
if [ -s "$RESULTS" ]; then # --rounds 0: no sequential rounds
	echo "Per-round figures:"
	awk -v hz="$HZ" '{
		cpu = ($9 - $7 + $10 - $8) / hz
		printf "  %-5s %s r%s  qps %8.0f  cpu us/q %5.2f (user %5.2f sys %5.2f)  lost %s (dropped by the server %s)\n", $1, $2, $3, $6,
			cpu * 1e6 / $4, ($9 - $7) / hz * 1e6 / $4, ($10 - $8) / hz * 1e6 / $4, $5, $14
	}' "$RESULTS"
	echo
	echo "Medians over $ROUNDS rounds:"
	# load_s and B/rec: the 1M-record zone's load time on one core (median
	# of the load rounds, below) and its RSS per record.
	printf "%-6s %-4s %9s %8s %8s %8s %10s %7s %7s %7s %8s %8s %7s %6s\n" server tr QPS us/q user sys "QPS/core" p50us p99us lost RSS_MB dropped load_s B/rec
	for s in "${SERVERS[@]}"; do
		brec=-
		[ -z "${LOADRSS[$s]:-}" ] || brec=$(per_record "${LOADRSS[$s]}")
		for tr in udp tcp; do
			awk -v s="$s" -v tr="$tr" -v hz="$HZ" -v load="${LOAD[$s]:--}" -v brec="$brec" '
			'"$AWK_MEDIAN"'
			$1 == s && $2 == tr {
				n++
				qps[n] = $6; lost[n] = $5; rss[n] = $13 / 1024
				u = ($9 - $7) / hz; y = ($10 - $8) / hz
				us[n] = (u + y) * 1e6 / $4; uu[n] = u * 1e6 / $4; ss[n] = y * 1e6 / $4
				pc[n] = $4 / (u + y); p50[n] = $11; p99[n] = $12; drop[n] = $14
			}
			END {
				if (n == 0) exit
				printf "%-6s %-4s %9.0f %8.2f %8.2f %8.2f %10.0f %7s %7s %7.0f %8.1f %8.0f %7s %6s\n", s, tr,
					median(qps, n), median(us, n), median(uu, n), median(ss, n), median(pc, n),
					median(p50, n), median(p99, n), median(lost, n), median(rss, n), median(drop, n), load, brec
			}' "$RESULTS" | tee -a "$W/table"
		done
	done
	echo
	echo "Ratios (anyns / peer, server CPU per query; lower is better):"
	for peer in nsd knot; do
		for tr in udp tcp; do
			awk -v p="$peer" -v tr="$tr" '$2 == tr && $1 == "anyns" {a = $4} $2 == tr && $1 == p {b = $4}
				END {if (a && b) printf "  anyns/%s %s: %.2f", p, tr, a / b}' "$W/table"
			# The same ratio round by round (the servers of a round ran minutes
			# apart, not hours), and its median.
			awk -v p="$peer" -v tr="$tr" -v hz="$HZ" '
			'"$AWK_MEDIAN"'
			$2 == tr && ($1 == "anyns" || $1 == p) {us[$1, $3] = ($9 - $7 + $10 - $8) / hz * 1e6 / $4; if ($3 > last) last = $3}
			END {
				for (r = 1; r <= last; r++) if ((("anyns", r) in us) && ((p, r) in us) && us[p, r] > 0) {
					n++; q[n] = us["anyns", r] / us[p, r]; list = list sprintf(" %.2f", q[n])
				}
				if (n) printf " (round by round:%s; their median %.2f)", list, median(q, n)
				print ""
			}' "$RESULTS"
		done
	done
fi
if [ $WITH_BIG = 1 ]; then
	# The load rounds: each server in turn, so the ratio of one round
	# compares moments seconds apart; the median of those ratios is the
	# figure that holds on a machine whose speed drifts.
	echo
	echo "1,000,000-record zone, $LOAD_ROUNDS rounds (servers in turn), seconds until the SOA is answered:"
	for s in "${SERVERS[@]}"; do
		printf "  %-5s one core %s (rounds:%s); all cores %s (rounds:%s); RSS %s B/record\n" "$s" \
			"${LOAD[$s]}" "${LOADS[$s]}" "${LOADALL[$s]}" "${LOADALLS[$s]}" \
			"$(per_record "${LOADRSS[$s]:-0}")"
	done
	for peer in "${SERVERS[@]}"; do
		[ "$peer" = anyns ] && continue
		for kind in one all; do
			if [ $kind = one ]; then a=${LOADS[anyns]} b=${LOADS[$peer]}; else a=${LOADALLS[anyns]} b=${LOADALLS[$peer]}; fi
			awk -v a="$a" -v b="$b" -v p="$peer" -v kind="$kind" '
			'"$AWK_MEDIAN"'
			BEGIN {
				na = split(a, x, " "); nb = split(b, y, " ")
				for (i = 1; i <= na && i <= nb; i++) if (y[i] + 0 > 0 && x[i] + 0 > 0) {n++; q[n] = x[i] / y[i]; list = list sprintf(" %.2f", q[n])}
				if (n) printf "  anyns/%s 1M-zone load time, %s core%s: %.2f as median of the rounds'"'"' ratios (rounds:%s)\n", p, kind, kind == "all" ? "s" : "", median(q, n), list
			}'
		done
		awk -v a="${LOADRSS[anyns]:-0}" -v b="${LOADRSS[$peer]:-0}" -v p="$peer" 'BEGIN {if (a > 0 && b > 0) printf "  anyns/%s 1M-zone RSS: %.2f\n", p, a / b}'
	done
fi
# report_slices FILE TITLE: each server's median CPU per query over the
# slices of FILE, and anyns/peer as the median of the slices' ratios.
report_slices() {
	[ -s "$1" ] || return 0
	echo
	echo "$2"
	awk -v hz="$HZ" '
	'"$AWK_MEDIAN"'
	{
		us[$1, $2] = ($6 - $4 + $7 - $5) / hz * 1e6 / $3
		uu[$1, $2] = ($6 - $4) / hz * 1e6 / $3
		done[$1] += $3; sent[$1] += $8; lat[$1, $2] = $9
		if (!($1 in seen)) {seen[$1] = 1; order[++ns] = $1}
		if ($2 > last) last = $2
	}
	END {
		for (i = 1; i <= ns; i++) {
			s = order[i]; n = 0; list = ""
			for (r = 1; r <= last; r++) if ((s, r) in us) {n++; a[n] = us[s, r]; b[n] = uu[s, r]; c[n] = lat[s, r]; list = list sprintf(" %.2f", us[s, r])}
			med[s] = median(a, n)
			printf "  %-5s cpu us/q median %.2f (user %.2f), answered %.2f%% of %d sent, average latency %.0f us; slices:%s\n", s, med[s], median(b, n),
				sent[s] ? 100 * done[s] / sent[s] : 0, sent[s], median(c, n), list
		}
		for (i = 1; i <= ns; i++) {
			p = order[i]
			if (p == "anyns") continue
			n = 0; list = ""
			for (r = 1; r <= last; r++) if (("anyns", r) in us && (p, r) in us) {n++; q[n] = us["anyns", r] / us[p, r]; list = list sprintf(" %.2f", q[n])}
			printf "  anyns/%s udp: %.2f as median of the slices'"'"' ratios, %.2f as ratio of the medians; slices:%s\n", p, median(q, n), med["anyns"] / med[p], list
		}
	}' "$1"
}
report_slices "$SLICED" "UDP, interleaved: $SLICES slices of ${SLICE_DURATION}s per server at dnsperf's full rate, every server up at once on CPU $SRV_CPU, order rotating:"
report_slices "$SLICED_FIXED" "UDP, interleaved at a fixed rate of $SLICE_RATE queries/s (the same offered load for every server), $SLICES slices of ${SLICE_DURATION}s each:"
echo "(work dir: $W)"
