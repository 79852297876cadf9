#!/bin/sh
# One prefetchd process with pool 8 against two with pool 4 each sharing
# the port (--reuse-port 1): what --threads 2 would give, measured with
# the same architecture. wrk -t2 -c8, PROCS_REPS interleaved runs of
# PROCS_SECONDS each per workload, requests/s. Needs `make bench` to have
# built build/bench/prefetchd and the bench cluster (.pgbench-data/).
#   sh tests/bench/procs.sh [workload...]    (default: w6 and w1)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bin=build/bench/prefetchd
secs=${PROCS_SECONDS:-4}
reps=${PROCS_REPS:-3}
port=${PROCS_PORT:-18200}
sh tests/pgcluster.sh start .pgbench-data >/dev/null
eval "$(sh tests/pgcluster.sh env .pgbench-data prefetchd_bench)"
url="host=$PGHOST port=$PGPORT dbname=prefetchd_bench user=postgres"
pids=""

start() {
	pids=""
	i=0
	while [ "$i" -lt "$1" ]; do
		"$bin" --listen "127.0.0.1:$port" --database-url "$url" \
			--reuse-port 1 --pool-size $((8 / $1)) 2>/dev/null &
		pids="$pids $!"
		i=$((i + 1))
	done
	until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
		sleep 0.1
	done
	sleep 0.5 # every process ready, not only the first to answer
}

stop() {
	# shellcheck disable=SC2086
	kill $pids 2>/dev/null || true
	# shellcheck disable=SC2086
	wait $pids 2>/dev/null || true
}
trap stop EXIT

rps() {
	wrk -t2 -c8 -d"$1"s -s tests/bench/post.lua \
		"http://127.0.0.1:$port/query" -- "tests/bench/$2.json" |
		awk '/^WRK/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
			printf "%.1f", v["requests"] / (v["duration_us"] / 1e6) }'
}

[ $# -gt 0 ] || set -- w6_10000_authors_books w1_authors_books
for w in "$@"; do
	r=1
	while [ "$r" -le "$reps" ]; do
		for n in 1 2; do
			start "$n"
			rps 1 "$w" >/dev/null
			echo "$w processes=$n run=$r requests/s=$(rps "$secs" "$w")"
			stop
		done
		r=$((r + 1))
	done
done
