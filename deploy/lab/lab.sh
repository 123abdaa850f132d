#!/usr/bin/env bash
# anyns anycast lab: one router, three anyns instances and a client in
# network namespaces on this machine, showing failover with dig +nsid.
#
#   sudo deploy/lab/lab.sh up [--ecmp]   build anyns, create the lab, wait for BGP
#   sudo deploy/lab/lab.sh demo          run the failover demo step by step
#   sudo deploy/lab/lab.sh down          stop what the lab started, delete it
#
# Topology (documentation addresses only: RFC 5737, RFC 3849):
#
#   anynslab-ns-a  AS65001        anynslab-ns-b  AS65002       anynslab-ns-c  AS65003
#   lo 192.0.2.53/32              (prepend 1)                  (prepend 2)
#      2001:db8::53/128           same service address         same service address
#   198.51.100.2/30               198.51.100.6/30              198.51.100.10/30
#   2001:db8:a::2/64              2001:db8:b::2/64             2001:db8:c::2/64
#            \                           |                            /
#             \------------ anynslab-router (BIRD 2, AS65000) -------/
#                           203.0.113.1/24, 2001:db8:203::1/64
#                                        |
#                           anynslab-client 203.0.113.2/24, 2001:db8:203::2/64
#
# Each instance runs `anyns serve --config` (deploy/lab/ns-X.yaml) and
# announces 192.0.2.53/32 and 2001:db8::53/128 over an IPv4 and an IPv6 eBGP
# session while its own listeners answer. BIRD (deploy/lab/bird.conf) prefers
# the shortest AS path, so the client reaches ns-a, then ns-b, then ns-c.
# --ecmp announces with equal paths and BIRD installs one multipath route
# ("merge paths on"), hashed per flow (L4).
#
# Needs root, iproute2, bird2 (bird, birdc), nftables, dig and Go. Everything
# lives in namespaces named anynslab-* and in $ANYNSLAB_DIR (/run/anynslab);
# `down`, or a failure of `up` or `demo`, stops every process the lab started
# (by PID) and deletes both.
set -Eeuo pipefail
trap 'printf "lab: failed at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The Go toolchain of the Makefile (go.mod, README): fetched once from the module proxy.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
LAB=$REPO/deploy/lab
DIR=${ANYNSLAB_DIR:-/run/anynslab}
P=anynslab-
NS_R=${P}router
NS_CL=${P}client
IDS=(a b c)
SVC4=192.0.2.53
SVC6=2001:db8::53
PFX4=192.0.2.53/32
PFX6=2001:db8::53/128
declare -A R4=([a]=198.51.100.1 [b]=198.51.100.5 [c]=198.51.100.9)
declare -A I4=([a]=198.51.100.2 [b]=198.51.100.6 [c]=198.51.100.10)
declare -A R6=([a]=2001:db8:a::1 [b]=2001:db8:b::1 [c]=2001:db8:c::1)
declare -A I6=([a]=2001:db8:a::2 [b]=2001:db8:b::2 [c]=2001:db8:c::2)

# Bounds of every wait loop, in 50 ms steps.
WAIT_BGP=600   # 30 s: sessions up, routes in BIRD and the kernel
WAIT_SHORT=200 # 10 s

say() { printf '%s\n' "$*"; }
step() { printf '\n=== %s\n' "$*"; }
die() { printf 'lab: %s\n' "$*" >&2; exit 1; }

need() {
	[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
	local t
	for t in ip bird birdc nft dig go; do
		command -v "$t" >/dev/null || die "$t not found (apt-get install iproute2 bird2 nftables bind9-dnsutils; Go from go.dev)"
	done
}

ns_of() { echo "${P}ns-$1"; }

# --- processes: every PID the lab starts is recorded with its executable,
# and only a live process with that executable is ever signalled.

record_pid() { echo "$2 $3" >"$DIR/pids/$1"; }

# pid_of NAME prints the PID recorded for NAME if that process still runs
# the recorded executable.
pid_of() {
	local f=$DIR/pids/$1 pid exe
	[ -f "$f" ] || return 1
	read -r pid exe <"$f"
	[ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] || return 1
	echo "$pid"
}

# alive PID reports whether PID runs (a zombie has no executable).
alive() { [ -n "$(readlink "/proc/$1/exe" 2>/dev/null)" ]; }

# stop_pid NAME SIGNAL sends SIGNAL and waits (at most 10 s) for the exit.
stop_pid() {
	local pid i
	pid=$(pid_of "$1") || { rm -f "$DIR/pids/$1"; return 0; }
	kill -"$2" "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		alive "$pid" || break
		sleep 0.05
	done
	if alive "$pid"; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$DIR/pids/$1"
}

# --- down

do_down() {
	local f ns
	if [ -d "$DIR/pids" ]; then
		# SIGTERM to all first (anyns withdraws and drains for 2 s, BIRD
		# removes its kernel routes), then wait for each.
		for f in "$DIR"/pids/*; do
			[ -e "$f" ] || continue
			kill -TERM "$(pid_of "$(basename "$f")")" 2>/dev/null || true
		done
		for f in "$DIR"/pids/*; do
			[ -e "$f" ] || continue
			stop_pid "$(basename "$f")" TERM
		done
	fi
	for ns in $(ip netns list | awk '{print $1}' | grep "^$P" || true); do
		ip netns del "$ns"
	done
	rm -rf "$DIR"
}

# --- up

build() {
	say "building anyns and the prober into $DIR/bin"
	(cd "$REPO" && go build -o "$DIR/bin/anyns" ./cmd/anyns && go build -o "$DIR/bin/prober" ./deploy/lab/prober)
}

link() { # link ROUTER-IF NS ROUTER4/LEN NS4/LEN ROUTER6 NS6
	local rif=$1 ns=$2
	ip -n "$NS_R" link add "$rif" type veth peer name to-r netns "$ns"
	ip -n "$NS_R" addr add "$3" dev "$rif"
	ip -n "$NS_R" addr add "$5/64" dev "$rif" nodad
	ip -n "$NS_R" link set "$rif" up
	ip -n "$ns" addr add "$4" dev to-r
	ip -n "$ns" addr add "$6/64" dev to-r nodad
	ip -n "$ns" link set to-r up
	ip -n "$ns" route add default via "${3%/*}"
	ip -n "$ns" -6 route add default via "$5"
}

make_net() {
	local ns i
	for ns in "$NS_R" "$NS_CL" "$(ns_of a)" "$(ns_of b)" "$(ns_of c)"; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	ip netns exec "$NS_R" sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
		net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1
	link to-a "$(ns_of a)" 198.51.100.1/30 198.51.100.2/30 "${R6[a]}" "${I6[a]}"
	link to-b "$(ns_of b)" 198.51.100.5/30 198.51.100.6/30 "${R6[b]}" "${I6[b]}"
	link to-c "$(ns_of c)" 198.51.100.9/30 198.51.100.10/30 "${R6[c]}" "${I6[c]}"
	link to-client "$NS_CL" 203.0.113.1/24 203.0.113.2/24 2001:db8:203::1 2001:db8:203::2
	for i in "${IDS[@]}"; do
		ip -n "$(ns_of "$i")" addr add "$PFX4" dev lo
		ip -n "$(ns_of "$i")" addr add "$PFX6" dev lo nodad
	done
}

start_bird() {
	mkdir -p "$DIR/router"
	if [ "$(cat "$DIR/mode")" = ecmp ]; then
		sed 's/merge paths off;/merge paths on;/' "$LAB/bird.conf" >"$DIR/router/bird.conf"
	else
		cp "$LAB/bird.conf" "$DIR/router/bird.conf"
	fi
	ip netns exec "$NS_R" bird -f -c "$DIR/router/bird.conf" -s "$DIR/router/bird.ctl" \
		</dev/null >>"$DIR/router/bird.log" 2>&1 &
	record_pid bird $! "$(readlink -f "$(command -v bird)")"
	local i
	for ((i = 0; i < WAIT_SHORT; i++)); do
		birdc -s "$DIR/router/bird.ctl" show status >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	tail -n 20 "$DIR/router/bird.log" >&2
	die "BIRD did not come up"
}

# start_instance ID: run anyns in its namespace from $DIR/ns-ID.
start_instance() {
	local id=$1 d=$DIR/ns-$1
	if [ ! -d "$d" ]; then
		mkdir -p "$d/zones"
		cp "$REPO"/zones/*.zone "$d/zones/"
		if [ "$(cat "$DIR/mode")" = ecmp ]; then
			sed 's/prepend: [0-9]*/prepend: 0/' "$LAB/ns-$id.yaml" >"$d/anyns.yaml"
		else
			cp "$LAB/ns-$id.yaml" "$d/anyns.yaml"
		fi
	fi
	(cd "$d" && exec ip netns exec "$(ns_of "$id")" "$DIR/bin/anyns" serve --config anyns.yaml \
		</dev/null >>"$d/anyns.log" 2>&1) &
	record_pid "ns-$id" $! "$DIR/bin/anyns"
}

# routes PREFIX prints BIRD's routes for PREFIX, one per line as
# "protocol best|-"; with --ecmp only the protocols (BIRD marks one of the
# merged routes as primary, which one is arbitrary).
routes() {
	birdc -s "$DIR/router/bird.ctl" show route for "$1" 2>/dev/null |
		sed -n 's/.*unicast \[\([a-z0-9_]*\) [^]]*\] \(\*\)\{0,1\}.*/\1 \2/p' |
		if [ "$(cat "$DIR/mode")" = ecmp ]; then awk '{print $1}'; else awk '{print $1, ($2 == "*" ? "best" : "-")}'; fi |
		sort
}

# await_routes PREFIX WANT: poll until routes PREFIX equals WANT (lines).
await_routes() {
	local got i
	for ((i = 0; i < WAIT_BGP; i++)); do
		got=$(routes "$1")
		[ "$got" = "$2" ] && return 0
		sleep 0.05
	done
	say "BIRD routes for $1:"; say "$got"; say "want:"; say "$2"
	return 1
}

want_routes() { # want_routes FAMILY(4|6) IDS...: the first is best
	local fam=$1 id mark=best
	shift
	for id in "$@"; do
		if [ "$(cat "$DIR/mode")" = ecmp ]; then
			echo "ns_${id}${fam}"
		else
			echo "ns_${id}${fam} $mark"
		fi
		mark=-
	done | sort
}

# await_all_routes IDS...: BIRD has exactly these instances' routes for both
# prefixes, the first best, and the router's kernel forwards the service
# address to the first (with --ecmp: to all of them).
await_all_routes() {
	await_routes "$PFX4" "$(want_routes 4 "$@")" || return 1
	await_routes "$PFX6" "$(want_routes 6 "$@")" || return 1
	local i id ok gws=("$1")
	[ "$(cat "$DIR/mode")" = ecmp ] && gws=("$@")
	for ((i = 0; i < WAIT_SHORT; i++)); do
		ok=1
		for id in "${gws[@]}"; do
			ip -n "$NS_R" route show "$PFX4" | grep -q "via ${I4[$id]} " || ok=0
			ip -n "$NS_R" -6 route show "$PFX6" | grep -q "via ${I6[$id]} " || ok=0
		done
		[ $ok = 1 ] && return 0
		sleep 0.05
	done
	say "router kernel routes: $(ip -n "$NS_R" route show "$PFX4"; ip -n "$NS_R" -6 route show "$PFX6")"
	return 1
}

up_failed() {
	local rc=$?
	if [ $rc != 0 ]; then
		say "lab up failed; logs:" >&2
		tail -n 20 "$DIR"/*/*.log >&2 2>/dev/null || true
		do_down
	fi
}

do_up() {
	local mode=nearest
	case "${1:-}" in
	--ecmp) mode=ecmp ;;
	"") ;;
	*) die "usage: lab.sh up [--ecmp]" ;;
	esac
	need
	if [ -d "$DIR" ] || ip netns list | grep -q "^$P"; then
		say "removing an earlier lab"
		do_down
	fi
	trap up_failed EXIT
	mkdir -p "$DIR/pids"
	echo "$mode" >"$DIR/mode"
	build
	make_net
	start_bird
	local id
	for id in "${IDS[@]}"; do start_instance "$id"; done
	say "waiting for the BGP sessions and routes ($mode)"
	await_all_routes a b c
	trap - EXIT
	say "lab up ($mode): $PFX4 and $PFX6 announced by ns-a, ns-b, ns-c; state in $DIR"
	say "try: ip netns exec $NS_CL dig +nsid @$SVC4 example.com SOA"
}

# --- demo

show_routes() {
	say "--- router: birdc show route for $PFX4 / $PFX6"
	birdc -s "$DIR/router/bird.ctl" show route for "$PFX4" | sed -n '2,$p' | sed 's/^/    /'
	birdc -s "$DIR/router/bird.ctl" show route for "$PFX6" | sed -n '2,$p' | sed 's/^/    /'
}

# dig_nsid [ADDR]: dig +nsid from the client; prints the lines that matter.
dig_nsid() {
	local addr=${1:-$SVC4} out
	say "--- client: dig +nsid @$addr example.com SOA"
	out=$(ip netns exec "$NS_CL" dig +nsid +time=1 +tries=2 @"$addr" example.com SOA)
	printf '%s\n' "$out" | grep -E 'status:|NSID:|IN[[:space:]]+SOA' | grep -v '^;example' | sed 's/^/    /'
}

nsid_of() { # nsid_of ADDR: the identity that answers from the client
	ip netns exec "$NS_CL" dig +nsid +time=1 +tries=2 @"$1" example.com SOA |
		sed -n 's/.*NSID: .*("\(.*\)").*/\1/p'
}

PROBER_OUT=
# prober_start NAME EXPECT ARGS...: start the prober in the client and wait
# until it has 10 answers from EXPECT (any instance if EXPECT is "*").
prober_start() {
	local name=$1 expect=$2 i
	shift 2
	PROBER_OUT=$DIR/prober-$name.out
	ip netns exec "$NS_CL" "$DIR/bin/prober" -server "$SVC4:53" -max 30s "$@" \
		</dev/null >"$PROBER_OUT" 2>&1 &
	record_pid prober $! "$DIR/bin/prober"
	for ((i = 0; i < WAIT_SHORT; i++)); do
		if [ "$expect" = "*" ]; then
			[ "$(grep -c ' serial ' "$PROBER_OUT" || true)" -ge 10 ] && return 0
		else
			[ "$(grep -c " $expect serial " "$PROBER_OUT" || true)" -ge 10 ] && return 0
		fi
		sleep 0.05
	done
	die "prober: no answers from $expect: $(tail -n 3 "$PROBER_OUT")"
}

prober_mark() { kill -USR1 "$(pid_of prober)"; }

# prober_wait: wait for the prober to stop by itself (its -until or -max,
# at most 30 s) and print its summary.
prober_wait() {
	local pid i
	pid=$(pid_of prober) || true
	for ((i = 0; i < 700; i++)); do
		[ -n "$pid" ] && alive "$pid" || break
		sleep 0.05
	done
	stop_pid prober TERM
	say "--- client: prober (one SOA query with NSID every 20 ms)"
	grep -E '^(summary|switch|mark):' "$PROBER_OUT" | sed 's/^/    /'
	grep -q '^summary: queries' "$PROBER_OUT" || die "prober did not finish"
	if grep -q 'not met' "$PROBER_OUT"; then
		die "traffic did not move as expected (see $PROBER_OUT)"
	fi
}

# Figures read from the prober's summary.
mark_failed() { sed -n 's/^mark: .* failed-after \([0-9]*\) of \([0-9]*\) .*/\1 of \2/p' "$PROBER_OUT"; }
mark_moved() { sed -n 's/^mark: .* moved \([0-9]* ms\|no\) .*/\1/p' "$PROBER_OUT"; }
switch_gap() { # switch_gap FROM TO
	sed -n "s/^switch: $1 -> $2 gap \([0-9]*\) ms failed \([0-9]*\) .*/\1 ms, \2 failed/p" "$PROBER_OUT" | head -n 1
}

nft_drop() {
	ip netns exec "$(ns_of "$1")" nft -f - <<-EOF
		add table inet anynslab
		add chain inet anynslab input { type filter hook input priority 0; policy accept; }
		add rule inet anynslab input udp dport 53 drop
		add rule inet anynslab input tcp dport 53 drop
	EOF
}

nft_restore() { ip netns exec "$(ns_of "$1")" nft delete table inet anynslab; }

ctl() { # ctl ID ARGS...
	local id=$1
	shift
	ip netns exec "$(ns_of "$id")" "$DIR/bin/anyns" ctl --socket "$DIR/ns-$id/anyns.sock" "$@"
}

FIGURES=()
figure() { FIGURES+=("$*"); say ">>> $*"; }

demo_failed() {
	local rc=$?
	stop_pid prober TERM
	if [ $rc != 0 ]; then
		say "demo failed; router and instance logs:" >&2
		tail -n 15 "$DIR"/router/bird.log "$DIR"/ns-*/anyns.log >&2 2>/dev/null || true
		say "removing the lab" >&2
		do_down
	fi
}

do_demo() {
	need
	[ -f "$DIR/mode" ] || die "the lab is not up: run lab.sh up first"
	local mode
	mode=$(cat "$DIR/mode")
	trap demo_failed EXIT
	await_all_routes a b c || die "the lab is not in its initial state (run lab.sh down; lab.sh up)"
	if [ "$mode" = ecmp ]; then
		demo_ecmp
	else
		demo_nearest
	fi
	trap - EXIT
	step "figures"
	local f
	for f in "${FIGURES[@]}"; do say "$f"; done
}

demo_nearest() {
	local id t0 t1 serial old new i

	step "1. three instances announce $PFX4 and $PFX6; the router prefers ns-a (shortest AS path)"
	show_routes
	dig_nsid "$SVC4"
	dig_nsid "$SVC6"
	id=$(nsid_of "$SVC4")
	[ "$id" = ns-a ] || die "answered by $id, want ns-a"
	figure "nearest: dig +nsid @$SVC4 answered by $id"

	step "2. kill ns-a's DNS listener (nft drops port 53 in its namespace; the process keeps running)"
	prober_start failover ns-a -until ns-b
	prober_mark
	nft_drop a
	prober_wait
	show_routes
	dig_nsid
	figure "failover: listener killed on ns-a: answers moved ns-a -> ns-b, gap $(switch_gap ns-a ns-b) of $(mark_failed | cut -d' ' -f3) queries"

	step "3. restore ns-a's listener: after hold-down (1 s) and rise (2 x 200 ms) traffic returns"
	prober_start recovery ns-b -until ns-a
	prober_mark
	nft_restore a
	prober_wait
	await_all_routes a b c
	show_routes
	figure "recovery: listener restored on ns-a: back on ns-a $(mark_moved) after the restore, $(mark_failed) queries failed"

	step "4. anyns ctl drain on ns-a: it withdraws but keeps serving while the router moves"
	prober_start drain ns-a -until ns-b
	prober_mark
	ctl a drain >"$DIR/ctl.out"
	prober_wait
	say "--- ns-a: anyns ctl drain (prints the status)"
	sed 's/^/    /' "$DIR/ctl.out"
	show_routes
	figure "drain: ctl drain on ns-a: traffic on ns-b $(mark_moved) later, $(mark_failed) queries failed"
	say "--- ns-a: anyns ctl undrain"
	prober_start undrain ns-b -until ns-a
	prober_mark
	ctl a undrain >/dev/null
	prober_wait
	await_all_routes a b c
	figure "undrain: ctl undrain on ns-a: traffic back $(mark_moved) later, $(mark_failed) queries failed"

	step "5. SIGTERM to ns-a: graceful-shutdown community, withdraw, serve 2 s more, exit"
	prober_start sigterm ns-a -until ns-b -run 150
	prober_mark
	kill -TERM "$(pid_of ns-a)"
	prober_wait
	for ((i = 0; i < WAIT_SHORT; i++)); do
		pid_of ns-a >/dev/null || break
		sleep 0.05
	done
	pid_of ns-a >/dev/null && die "ns-a still running 10 s after SIGTERM"
	grep -q '"msg":"stopped"' "$DIR/ns-a/anyns.log" || die "ns-a did not log a clean stop"
	show_routes
	figure "sigterm: SIGTERM on ns-a: traffic on ns-b $(mark_moved) later, $(mark_failed) queries failed; ns-a stopped cleanly"
	say "--- starting ns-a again"
	t0=$(date +%s%N)
	start_instance a
	await_all_routes a b c
	t1=$(date +%s%N)
	say "    ns-a announced and preferred again $(((t1 - t0) / 1000000)) ms after its start"

	step "6. a zone edit on ns-b reloads there only (watcher, no restart)"
	old=$(ip netns exec "$(ns_of b)" dig +short @"$SVC4" example.com SOA | awk '{print $3}')
	new=$((old + 1))
	sed "s/$old ; serial/$new ; serial/" "$DIR/ns-b/zones/example.com.zone" >"$DIR/ns-b/zones/.example.com.zone.tmp"
	mv "$DIR/ns-b/zones/.example.com.zone.tmp" "$DIR/ns-b/zones/example.com.zone"
	t0=$(date +%s%N)
	for ((i = 0; i < WAIT_SHORT; i++)); do
		serial=$(ip netns exec "$(ns_of b)" dig +short +time=1 @"$SVC4" example.com SOA | awk '{print $3}')
		[ "$serial" = "$new" ] && break
		sleep 0.05
	done
	t1=$(date +%s%N)
	[ "$serial" = "$new" ] || die "ns-b still serves serial $serial, want $new"
	local others=""
	for id in a b c; do
		say "--- ns-$id: dig +nsid @$SVC4 example.com SOA (inside anynslab-ns-$id: that instance)"
		ip netns exec "$(ns_of "$id")" dig +nsid +time=1 @"$SVC4" example.com SOA |
			grep -E 'NSID:|IN[[:space:]]+SOA' | grep -v '^;example' | sed 's/^/    /'
		[ "$id" = b ] || others="$others ns-$id $(ip netns exec "$(ns_of "$id")" dig +short +time=1 @"$SVC4" example.com SOA | awk '{print $3}')"
	done
	grep '"msg":"zone loaded"' "$DIR/ns-b/anyns.log" | tail -n 1 | sed 's/^/    ns-b log: /' || true
	figure "zone edit: example.com serial $old -> $new on ns-b, served there $(((t1 - t0) / 1000000)) ms after the rename; unchanged elsewhere:$others"
	show_routes
}

demo_ecmp() {
	step "1. three instances announce with equal AS paths: one multipath route (ECMP, L4 hash)"
	show_routes
	say "--- router kernel: ip route show $PFX4"
	ip -n "$NS_R" route show "$PFX4" | sed 's/^/    /'
	dig_nsid "$SVC4"

	step "2. the prober spreads over all three (each query from a new source port)"
	prober_start spread "*" -max 2s
	prober_wait
	figure "ecmp: answers spread: $(sed -n 's/^summary: answered by //p' "$PROBER_OUT")"

	step "3. kill ns-a's DNS listener: its share of the flows fails until the withdrawal"
	prober_start failover "*" -until '!ns-a' -run 50
	prober_mark
	nft_drop a
	prober_wait
	show_routes
	figure "ecmp failover: listener killed on ns-a: $(mark_failed) queries failed; longest gap between answers $(sed -n 's/^summary: longest gap between answers //p' "$PROBER_OUT")"
	nft_restore a
	await_all_routes a b c

	step "4. anyns ctl drain on ns-a: its share moves to ns-b and ns-c without loss"
	prober_start drain "*" -until '!ns-a' -run 50
	prober_mark
	ctl a drain >/dev/null
	prober_wait
	show_routes
	figure "ecmp drain: ctl drain on ns-a: $(mark_failed) queries failed"
	ctl a undrain >/dev/null
	await_all_routes a b c
}

case "${1:-}" in
up) shift; do_up "$@" ;;
demo) do_demo ;;
down)
	[ "$(id -u)" = 0 ] || die "must run as root"
	do_down
	say "lab down"
	;;
*) die "usage: lab.sh up [--ecmp] | demo | down" ;;
esac
