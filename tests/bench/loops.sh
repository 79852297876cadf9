#!/bin/sh
# Using both cores, three ways, side by side: one event loop (--threads 1),
# two loops in one process (--threads 2, the default on 2 cores), and two
# processes of one loop each sharing the port (--reuse-port 1). The pool
# is 8 connections in all every time. wrk -t2 -c8, LOOPS_REPS interleaved
# runs of LOOPS_SECONDS each per workload, requests/s. Needs `make bench`
# to have built build/bench/prefetchd and the bench cluster (.pgbench-data/).
#   sh tests/bench/loops.sh [workload...]    (default: w6, w4 and w1)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bin=build/bench/prefetchd
secs=${LOOPS_SECONDS:-4}
reps=${LOOPS_REPS:-3}
port=${LOOPS_PORT:-18200}
sh tests/pgcluster.sh start .pgbench-data >/dev/null
eval "$(sh tests/pgcluster.sh env .pgbench-data prefetchd_bench)"
url="host=$PGHOST port=$PGPORT dbname=prefetchd_bench user=postgres"
pids=""

# $1: threads1 | threads2 | procs2
start() {
	pids=""
	case $1 in
	threads1 | threads2)
		"$bin" --listen "127.0.0.1:$port" --database-url "$url" \
			--threads "${1#threads}" --pool-size 8 2>/dev/null &
		pids=$!
		;;
	procs2)
		for _ in 1 2; do
			"$bin" --listen "127.0.0.1:$port" --database-url "$url" \
				--reuse-port 1 --threads 1 --pool-size 4 --max-held-mb 40 \
				2>/dev/null &
			pids="$pids $!"
		done
		;;
	esac
	until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
		sleep 0.1
	done
	sleep 0.5 # every loop ready, not only the first to answer
}

stop() {
	# shellcheck disable=SC2086
	kill $pids 2>/dev/null || true
	# shellcheck disable=SC2086
	wait $pids 2>/dev/null || true
}
trap stop EXIT

# requests/s as connections / mean latency, as tests/bench/run.sh counts.
rps() {
	wrk -t2 -c8 -d"$1"s --timeout 120s -s tests/bench/post.lua \
		"http://127.0.0.1:$port/query" -- "tests/bench/$2.json" |
		awk '/^WRK/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
			printf "%.1f", 8 / (v["mean_us"] / 1e6) }'
}

[ $# -gt 0 ] || set -- w6_10000_authors_books w4_authors_books_readers w1_authors_books
for w in "$@"; do
	r=1
	while [ "$r" -le "$reps" ]; do
		for setup in threads1 threads2 procs2; do
			start "$setup"
			rps 1 "$w" >/dev/null
			echo "$w $setup run=$r requests/s=$(rps "$secs" "$w")"
			stop
		done
		r=$((r + 1))
	done
done
