#!/bin/sh
# make soak: a bounded load test on loopback, and its checks.
#
#   soak.sh PREFETCHD SECONDS
#
# Starts a private PostgreSQL cluster (tests/pgcluster.sh) with the demo
# data and prefetchd on 127.0.0.1 (port 0) with a pool of 8, a 300 ms
# statement_timeout and --max-rows 20000, then wrk (2 threads, 16
# connections, tests/soak/mix.lua: valid, invalid and heavy requests):
#   warm-up   30 s; then the baseline: RSS, open fds, backends
#   run 1     SECONDS of load
#   run 2     SECONDS of load, the database stopped (fast) at half time and
#             started again 3 s later
# After each run, once the load stopped (and the statements it abandoned
# ended): no 5xx but 504 (run 1) or 503/504 (run 2), no socket error but
# the ones of the restart, RSS within 10 % of the baseline, open fds back to
# the baseline (PostgreSQL sockets aside: one per backend), PostgreSQL
# backends <= the pool size, /readyz 200. Prints the figures
# (daemon/README.md, "Reliability", records them) and exits non-zero when a
# check fails. Everything stays on this machine and stops by itself.
set -eu

[ $# -eq 2 ] || {
	echo "usage: $0 PREFETCHD SECONDS" >&2
	exit 2
}
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
seconds=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
pgcluster="$root/tests/pgcluster.sh"
pool=8
app=prefetchd_soak

tmp=$(mktemp -d "${TMPDIR:-/tmp}/prefetchd-soak.XXXXXX")
chmod 755 "$tmp"
pgdata="$tmp/pg"
pid=""
failed=0

cleanup() {
	status=$?
	trap - EXIT INT TERM HUP
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
	sh "$pgcluster" stop "$pgdata" >/dev/null 2>&1 || true
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

psql_() {
	PGOPTIONS='-c client_min_messages=warning' \
		sh "$pgcluster" psql "$pgdata" -q -X -v ON_ERROR_STOP=1 "$@"
}

sh "$pgcluster" start "$pgdata" >/dev/null
psql_ -d postgres -c 'CREATE DATABASE soak'
psql_ -d soak -f "$root/sql/schema.sql" -f "$root/sql/demo.sql" >/dev/null
port=$(cat "$pgdata/port")

"$bin" --listen 127.0.0.1:0 \
	--database-url "host=$pgdata port=$port dbname=soak user=postgres application_name=$app" \
	--pool-size "$pool" --statement-timeout 300 --pool-timeout 2000 \
	--max-rows 20000 >"$tmp/prefetchd.log" 2>&1 &
pid=$!

http_port=""
for _ in $(seq 100); do
	http_port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/prefetchd.log")
	[ -n "$http_port" ] && break
	sleep 0.1
done
[ -n "$http_port" ] || {
	cat "$tmp/prefetchd.log"
	echo "soak: prefetchd did not start" >&2
	exit 1
}
url="http://127.0.0.1:$http_port"

ready() {
	curl -s -o /dev/null -w '%{http_code}' "$url/readyz" 2>/dev/null || true
}
wait_ready() {
	for _ in $(seq 300); do
		[ "$(ready)" = 200 ] && return 0
		sleep 0.1
	done
	return 1
}
rss_now() {
	sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' "/proc/$pid/status"
}
# The least of 3 samples 1 s apart, the same way at the baseline and after
# each run: a quiet daemon's RSS still moves with what malloc gives back.
rss_kb() {
	a=$(rss_now)
	sleep 1
	b=$(rss_now)
	sleep 1
	c=$(rss_now)
	printf '%s\n%s\n%s\n' "$a" "$b" "$c" | sort -n | head -n 1
}
fds() {
	find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l
}
backends() {
	psql_ -d soak -Atc "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$app'"
}
# Waits for the load's leftovers (abandoned statements, closing sockets).
settle() {
	sleep 2
	for _ in $(seq 50); do
		nb=$(backends)
		[ $(($(fds) - nb)) -le "$base_own" ] && [ "$nb" -le "$pool" ] && return 0
		sleep 0.2
	done
	return 0
}
run_wrk() { # NAME SECONDS
	wrk -t2 -c16 -d"$2"s --timeout 10s -s "$root/tests/soak/mix.lua" "$url" \
		>"$tmp/$1.wrk" 2>&1
}
fail() {
	echo "soak: FAIL: $*" >&2
	failed=$((failed + 1))
}

wait_ready || {
	cat "$tmp/prefetchd.log"
	echo "soak: prefetchd not ready" >&2
	exit 1
}
echo "soak: prefetchd pid $pid on $url; warm-up 30 s"
run_wrk warmup 30
settle_base() {
	sleep 2
	base_rss=$(rss_kb)
	base_fds=$(fds)
	base_back=$(backends)
	# descriptors other than the daemon's PostgreSQL connections
	base_own=$((base_fds - base_back))
}
settle_base
echo "soak: baseline RSS ${base_rss} kB, $base_fds fds, $base_back backends"

# Checks one run: NAME, the 5xx statuses allowed, whether socket errors are
# allowed (the restart cuts connections).
check_run() {
	name=$1
	allowed=$2
	sock_ok=$3
	out="$tmp/$name.wrk"
	settle
	rss=$(rss_kb)
	nfds=$(fds)
	nback=$(backends)
	rdy=$(ready)
	requests=$(sed -n 's/^requests \([0-9]*\)$/\1/p' "$out")
	statuses=$(sed -n 's/^status \([0-9]*\) \([0-9]*\)$/\1=\2/p' "$out" | sort -n | tr '\n' ' ')
	sock=$(sed -n 's/^socket_errors //p' "$out")
	p99=$(sed -n 's/^latency_p99_ms //p' "$out")
	growth=$(awk -v a="$base_rss" -v b="$rss" 'BEGIN { printf "%.1f", (b - a) * 100 / a }')
	echo "soak: $name: $requests requests; by status: $statuses; socket errors: $sock; p99 ${p99} ms"
	echo "soak: $name: RSS $base_rss -> $rss kB ($growth %); fds $base_fds -> $nfds; backends $nback (pool $pool); /readyz $rdy"
	if [ -z "$requests" ] || [ "$requests" -eq 0 ]; then
		fail "$name: no requests ($(tail -n 5 "$out"))"
	fi
	sed -n 's/^status \(5[0-9]*\) [0-9]*$/\1/p' "$out" >"$tmp/$name.5xx"
	while read -r s; do
		case " $allowed " in
		*" $s "*) ;;
		*) fail "$name: status $s" ;;
		esac
	done <"$tmp/$name.5xx"
	if [ "$sock_ok" = no ] && [ "$sock" != "connect 0 read 0 write 0 timeout 0" ]; then
		fail "$name: socket errors: $sock"
	fi
	awk -v g="$growth" 'BEGIN { exit !(g < 10) }' || fail "$name: RSS grew $growth %"
	# The pool may hold another number of connections than at the
	# baseline: each is one socket, and one backend.
	[ $((nfds - nback)) -le "$base_own" ] ||
		fail "$name: $nfds fds open with $nback connections, baseline $base_fds with $base_back"
	[ "$nback" -le "$pool" ] || fail "$name: $nback backends, pool $pool"
	[ "$rdy" = 200 ] || fail "$name: /readyz $rdy"
	kill -0 "$pid" 2>/dev/null || fail "$name: prefetchd exited"
}

echo "soak: run 1: $seconds s"
run_wrk run1 "$seconds"
check_run run1 "504" no

half=$((seconds / 2))
echo "soak: run 2: $seconds s, the database restarted after $half s"
(
	sleep "$half"
	sh "$pgcluster" stop "$pgdata" >/dev/null
	sleep 3
	sh "$pgcluster" start "$pgdata" >/dev/null
) &
restarter=$!
run_wrk run2 "$seconds"
wait "$restarter"
wait_ready || fail "run2: not ready again after the restart"
check_run run2 "503 504" yes

if grep -q "AddressSanitizer\|runtime error" "$tmp/prefetchd.log"; then
	fail "sanitizer report in the log"
fi
kill -TERM "$pid"
code=0
wait "$pid" || code=$?
pid=""
[ "$code" -eq 0 ] || fail "prefetchd exited with $code on SIGTERM"
if [ "$failed" -eq 0 ]; then
	echo "soak: all checks passed"
	echo "2 passed, 0 failed"
else
	tail -n 20 "$tmp/prefetchd.log"
	echo "0 passed, $failed failed"
	exit 1
fi
