#!/bin/sh
# make bench: prefetchd against PostgreSQL's own cost for the same object
# graphs (issue 5). Usage: sh tests/bench/run.sh BINARY   (make bench builds
# build/bench/prefetchd with -O2 and no sanitizers and calls this.)
#
# The data: a private cluster in .pgbench-data/ (tests/pgcluster.sh), created
# on first use and then reused, with one database per data set, (re)loaded
# when its files are newer than the last load: prefetchd_bench from
# sql/schema.sql + sql/bench.sql (about 20 s) and prefetchd_bench2 from
# sql/bench2.sql (the same tables with other key types and distributions,
# about 15 s). Every workload runs on each data set of BENCH_DATA (default
# "bench bench2"); the table has a section per data set. The cluster is tuned once for a benchmark (shared_buffers
# 512MB, effective_cache_size 4GB, random_page_cost 1.1, jit off) and is
# stopped at the end if this script started it. Remove .pgbench-data/ to
# start over.
#
# For each workload tests/bench/wN_*.json (the request body) and
# wN_*.lateral.sql (the same graph as one PostgREST-style json_agg + LATERAL
# statement, written by hand) it measures, at 1 connection (wrk -t1 -c1,
# pgbench -c1 -j1) and at 8 (wrk -t2 -c8, pgbench -c8 -j2):
#   pf      prefetchd as built, under wrk (tests/bench/post.lua POSTs the spec)
#   stmts   pgbench -M prepared -n on the very transaction prefetchd sends
#           (from POST /query?debug=1: BEGIN ISOLATION LEVEL REPEATABLE READ
#           READ ONLY, each statement with its $n replaced by the quoted
#           literal prefetchd sent, COMMIT; see stmts.jq). pgbench prepares
#           each statement once per connection (no parameters left), then
#           only binds and executes: one round trip per statement.
#   lateral pgbench -M prepared -n on the one json_agg statement (alone,
#           autocommit: one round trip)
#   p0, pcustom, pgeneric (8 connections only): prefetchd as pf but started
#           with --prepare-cache 0, --plan-mode custom, --plan-mode generic,
#           each its own daemon, running meanwhile: the default (auto) is
#           measured against the best of them (issue 20's plan choice)
#   hand    only for a workload with a wN_*.hand.sql: pgbench -M prepared -n
#           on the statements a person would write for the same graph, in
#           one transaction like stmts (one statement per line; checked
#           first: the rows of its statements, as JSON objects, are the
#           objects of prefetchd's graph, relations left out, jq -S)
# Each is run BENCH_REPS times for BENCH_SECONDS after a BENCH_WARMUP s
# warm-up, the tools interleaved within a repetition (pf, stmts, hand,
# lateral, then p0, pcustom, pgeneric at 8 connections); a workload with a hand column runs 3 × BENCH_SECONDS at both
# connection counts, for enough requests per run. The table shows
# medians over the repetitions of transactions/s, of the median latency and
# of the 99th percentile (wrk's; pgbench's from its per-transaction log).
# Transactions/s is connections / mean latency (Little's law for a closed
# loop: each connection sends its next request as soon as it has the
# answer), for wrk and pgbench alike. Counting completed requests over the
# run's time would not do for wrk: it drops the requests in flight when its
# time is up (pgbench waits for them), which understated W4 and W6 at 8
# connections by 9-12% (6.81 against 7.44, 6.97 against 7.81 requests/s;
# W1 709.6 against 711.5).
# The database's CPU per request (the "hand" table, for every tool of a
# workload with a hand column, at 1 and 8 connections): the on-CPU time of
# the bench database's backends over a run, divided by the requests (wrk's
# count) or transactions (pgbench's log lines) completed in it. It is the
# postmaster's children that are backends of this database ("postgres: USER
# DB ..." in /proc/PID/cmdline; the checkpointer, walwriter and the like are
# left out), read from /proc/PID/schedstat's first field (nanoseconds on a
# CPU, exact), plus the postmaster's own cutime + cstime from
# /proc/PID/stat: the backends that exited and were reaped meanwhile
# (pgbench connects for each run; a connection prefetchd abandons when wrk
# stops is closed). /proc/PID/stat's utime + stime of the live ones would
# do too, but they come in whole ticks (10 ms) per process and per field,
# which for prefetchd's long-lived pool connections is an error of up to a
# tick per backend per run; schedstat has none, and a reaped child's time
# is summed by the kernel in nanoseconds and cut to ticks once for all
# (the kernel scales utime + stime to the same run time, so the two
# sources agree). The reading before a run and the one after wait until
# the backends are quiet (0 to 1 ms of CPU in 50 ms, at most 3 s):
# pgbench's backends exit after its run, and the requests wrk leaves in
# flight when its time is up are finished or abandoned by prefetchd, their
# work counted with the run that sent them (it adds to the database's time
# but not to wrk's count: 1 or 8 requests at most, against the 150-330
# that a W7 run completes). The CPU split table (cpu_split below: ticks,
# read at once after the run) can miss a backend reaped while it reads
# /proc (one W7 run at 1 connection gave -6.3 ms per request there,
# 28.0 here).
# prefetchd is restarted for each workload; its peak RSS (VmHWM, reset
# through /proc/PID/clear_refs before each run) and idle RSS (VmRSS once
# ready, and once the workload is over) are read from /proc.
# The cores are shared with whatever else runs: before each workload the
# script waits up to BENCH_QUIET_WAIT s (default 8) for one second in which
# the machine is less than 25% busy, and it measures the CPU that other
# processes use during each run, repeating a run up to BENCH_RETRIES (2)
# times when that is over BENCH_OTHER_MAX (20) % of a core, within
# BENCH_RETRY_BUDGET (60) seconds of repeats in all.
# The table goes to stdout and to tests/bench/results.md
# (BENCH_RESULTS overrides). BENCH_ONLY=REGEX picks workloads by file name.
# Before measuring, each workload's lateral statement is checked to build
# the same graph as prefetchd (jq -S on both).
set -eu

[ $# -eq 1 ] || {
	echo "usage: $0 BINARY" >&2
	exit 2
}
bin=$1
case $bin in
/*) ;;
*) bin=$(pwd)/$bin ;;
esac
[ -x "$bin" ] || {
	echo "bench: $bin is not an executable" >&2
	exit 1
}
root=$(cd "$(dirname "$0")/../.." && pwd)
bench="$root/tests/bench"
pgcluster="$root/tests/pgcluster.sh"
cluster="$root/.pgbench-data"
results=${BENCH_RESULTS:-$bench/results.md}
secs=${BENCH_SECONDS:-2}
reps=${BENCH_REPS:-3}
warm=${BENCH_WARMUP:-1}
quiet=${BENCH_QUIET_WAIT:-8}
retries=${BENCH_RETRIES:-2}
retry_budget=${BENCH_RETRY_BUDGET:-60}
retry_spent=0
other_max=${BENCH_OTHER_MAX:-20}
only=${BENCH_ONLY:-.}
datasets=${BENCH_DATA:-bench bench2}

for tool in wrk pgbench jq curl cc; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "bench: $tool is missing (make bench installs wrk and jq)" >&2
		exit 1
	}
done

tmp=""
pid=""
alt_pids=""
port=""
started_cluster=0
t_start=$(date +%s)

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	status=$?
	trap - EXIT INT TERM HUP
	for p in $pid $alt_pids; do
		if kill -0 "$p" 2>/dev/null; then
			kill -TERM "$p" 2>/dev/null || true
			wait "$p" 2>/dev/null || true
		fi
	done
	if [ "$started_cluster" -eq 1 ]; then
		sh "$pgcluster" stop "$cluster" || true
	fi
	[ -z "$tmp" ] || [ -n "${BENCH_KEEP:-}" ] || rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

tmp=$(mktemp -d "${TMPDIR:-/tmp}/prefetchd-bench.XXXXXX")
# The sources the binary was just built from (they may change meanwhile).
digest=$(cat "$root"/daemon/*.[ch] | sha256sum | cut -c1-12)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the cluster and the data ----

if ! sh "$pgcluster" status "$cluster" >/dev/null 2>&1; then
	started_cluster=1
	sh "$pgcluster" start "$cluster"
fi
eval "$(sh "$pgcluster" env "$cluster" postgres)"
psql_q() {
	PGOPTIONS='-c client_min_messages=warning' \
		sh "$pgcluster" psql "$cluster" -q -v ON_ERROR_STOP=1 "$@"
}
if [ ! -f "$cluster/bench.tuned" ]; then
	echo "bench: tuning the bench cluster (restart)"
	psql_q -d postgres \
		-c "ALTER SYSTEM SET shared_buffers = '512MB'" \
		-c "ALTER SYSTEM SET effective_cache_size = '4GB'" \
		-c "ALTER SYSTEM SET random_page_cost = 1.1" \
		-c "ALTER SYSTEM SET jit = off"
	sh "$pgcluster" stop "$cluster"
	sh "$pgcluster" start "$cluster"
	touch "$cluster/bench.tuned"
fi
# The files of data set $1, in load order.
data_files() {
	case $1 in
	bench) echo "$root/sql/schema.sql $root/sql/bench.sql" ;;
	bench2) echo "$root/sql/bench2.sql" ;;
	*)
		echo "bench: unknown data set $1 (BENCH_DATA: bench, bench2)" >&2
		exit 1
		;;
	esac
}
for ds in $datasets; do
	files=$(data_files "$ds")
	marker="$cluster/prefetchd_$ds.loaded"
	# shellcheck disable=SC2086 # a list of paths without blanks
	if [ ! -f "$marker" ] || [ -n "$(find $files -newer "$marker" 2>/dev/null)" ]; then
		echo "bench: loading $(echo "$files" | sed "s|$root/||g") into prefetchd_$ds (~20 s)"
		psql_q -d postgres -c "DROP DATABASE IF EXISTS prefetchd_$ds WITH (FORCE)" \
			-c "CREATE DATABASE prefetchd_$ds"
		for f in $files; do
			psql_q -d "prefetchd_$ds" -f "$f"
		done
		touch "$marker"
	fi
done
pgversion=$(psql_q -d postgres -Atc 'SHOW server_version')

# ---- prefetchd ----

# The conninfo of data set $db. BENCH_PGOPTIONS: session settings for
# prefetchd's connections, e.g. "-c work_mem=64MB" (libpq's options).
set_url() {
	url="host=$PGHOST port=$PGPORT dbname=$db user=postgres"
	[ -z "${BENCH_PGOPTIONS:-}" ] || url="$url options='$BENCH_PGOPTIONS'"
}
# Starts the binary on a free port with the flags $4...; sets $1 to its
# pid and $2 to its port; $3 names its log.
start_daemon() {
	log=$tmp/$3.log
	_pv=$1
	_pp=$2
	shift 3
	"$bin" --listen 127.0.0.1:0 --database-url "$url" "$@" 2>"$log" &
	_p=$!
	eval "$_pv=$_p"
	n=0
	_port=""
	while [ -z "$_port" ]; do
		_port=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
		n=$((n + 1))
		if [ "$n" -gt 100 ] || ! kill -0 "$_p" 2>/dev/null; then
			cat "$log" >&2
			echo "bench: prefetchd did not start" >&2
			exit 1
		fi
		[ -n "$_port" ] || sleep 0.1
	done
	eval "$_pp=$_port"
	n=0
	until curl -sf "http://127.0.0.1:$_port/readyz" >/dev/null; do
		n=$((n + 1))
		[ "$n" -lt 600 ] || {
			cat "$log" >&2
			echo "bench: prefetchd never became ready" >&2
			exit 1
		}
		sleep 0.1
	done
}
stop_daemon() {
	if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
		kill -TERM "$1" 2>/dev/null || true
		wait "$1" 2>/dev/null || true
	fi
}
# A fresh daemon per workload, so that each one's peak RSS is its own (the
# heap a workload grew is not given back to the system when it ends); and
# the three alternatives of the plan choice beside it (alt_pids).
restart_daemon() {
	for p in $pid $alt_pids; do stop_daemon "$p"; done
	start_daemon pid port pf
	start_daemon pid_p0 port_p0 p0 --prepare-cache 0
	start_daemon pid_pc port_pc pcustom --plan-mode custom
	start_daemon pid_pg port_pg pgeneric --plan-mode generic
	alt_pids="$pid_p0 $pid_pc $pid_pg"
	sleep 0.3
}
# Percent of the machine's CPU time that was busy over the next second.
busy() {
	a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
	sleep 1
	b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
	echo "$a $b" | awk '{ u = $3 - $1; i = $4 - $2; printf "%d", (u + i > 0) ? 100 * u / (u + i) : 0 }'
}
wait_quiet() {
	t0=$(date +%s)
	while :; do
		b=$(busy)
		[ "$b" -ge 25 ] || break
		[ $(($(date +%s) - t0)) -lt "$quiet" ] || break
	done
	echo "$b"
}
kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# ---- measuring ----

raw=$tmp/raw.tsv # workload tool conns tps p50_us other% pf_ms db_ms client_ms dbq_ms p99_us
: >"$raw"
peaks=$tmp/peaks.tsv # workload peak1_kb peak8_kb fresh_kb after_kb busy%
: >"$peaks"
info=$tmp/info.tsv # workload rows bytes queries same hand_same
: >"$info"
errors=0

# wrk on prefetchd: $1 port, $2 conns, $3 threads, $4 secs, $5 spec.
# Prints transactions/s, median latency (us), failures, requests completed,
# the 99th percentile of latency (us).
run_wrk() {
	out=$(wrk -t"$3" -c"$2" -d"$4"s --timeout 120s -s "$bench/post.lua" \
		"http://127.0.0.1:$1/query" -- "$5" 2>&1 | grep '^WRK ') || {
		echo "0 0 1 0 0"
		return
	}
	echo "$out" | awk -v conns="$2" '{
		for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		bad = v["non2xx"] + v["errors"]
		tps = v["mean_us"] > 0 ? conns / (v["mean_us"] / 1e6) : 0
		printf "%.2f %d %d %d %d\n", tps, v["p50_us"], bad, v["requests"], v["p99_us"]
	}'
}

# pgbench: $1 script, $2 conns, $3 threads, $4 secs. Prints as run_wrk.
run_pgbench() {
	rm -f "$tmp"/pgb.*
	out=$(pgbench -n -M prepared -f "$1" -c "$2" -j "$3" -T "$4" \
		-l --log-prefix="$tmp/pgb" "$db" 2>&1) || {
		echo "$out" >&2
		echo "0 0 1 0 0"
		return
	}
	# connections / mean latency, as for wrk (run_wrk)
	tps=$(cat "$tmp"/pgb.* | awk -v conns="$2" '{ s += $3; n++ }
		END { if (n && s) printf "%.2f", conns / (s / n / 1e6); else print 0 }')
	failed=$(echo "$out" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p')
	pcts=$(cat "$tmp"/pgb.* | awk '{ print $3 }' | sort -n |
		awk '{ a[NR] = $1 } END {
			if (NR) print a[int((NR + 1) / 2)], a[int((NR * 99 + 99) / 100)]
			else print 0, 0 }')
	n=$(cat "$tmp"/pgb.* | wc -l)
	echo "${tps:-0} ${pcts% *} ${failed:-0} $n ${pcts#* }"
}

# CPU time (jiffies) of everything this benchmark runs, as "prefetchd
# database client": prefetchd (the daemon under measure, $measured); the bench cluster's processes (the
# postmaster's own time and its reaped children's, plus its live ones);
# and, as reaped children of this shell, wrk or pgbench. The rest of the
# machine's busy time during a run is "other".
cpu_split() {
	pm=$(head -n 1 "$cluster/postmaster.pid")
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v pf="$measured" -v pm="$pm" -v sh="$$" '
		$1 == pf { p += $14 + $15 }
		$1 == pm { d += $14 + $15 + $16 + $17 }
		$4 == pm { d += $14 + $15 }
		$1 == sh { c += $16 + $17 }
		END { print p + 0, d + 0, c + 0 }'
}
busy_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
hz=$(getconf CLK_TCK)

# Nanoseconds of CPU of the bench database's backends: the live ones'
# /proc/PID/schedstat, plus the postmaster's cutime + cstime (its reaped
# children). The header comment says why.
db_ns() {
	awk -v pm="$(head -n 1 "$cluster/postmaster.pid")" -v db="$db" -v hz="$hz" '
	function line(f,   s) {
		s = ""
		if ((getline s < f) <= 0) s = ""
		close(f)
		return s
	}
	BEGIN {
		s = line("/proc/" pm "/stat")
		sub(/^.*\) /, "", s) # after "pid (comm) ": state is field 1
		split(s, f, " ")
		ns = (f[14] + f[15]) * 1e9 / hz
		n = split(line("/proc/" pm "/task/" pm "/children"), kid, " ")
		for (i = 1; i <= n; i++) {
			s = line("/proc/" kid[i] "/cmdline")
			if (index(s, "postgres: ") != 1) continue
			split(substr(s, 11), w, " ")
			if (w[2] != db) continue
			split(line("/proc/" kid[i] "/schedstat"), t, " ")
			ns += t[1]
		}
		printf "%.0f\n", ns
	}'
}
# db_ns once the backends are quiet: two readings 50 ms apart that differ
# by 0 to 1 ms (or 3 s). A backend reaped between reading the postmaster
# and reading its children is missed by one reading, which then goes down:
# not quiet either.
db_quiet() {
	_q=$(db_ns)
	_i=0
	while [ "$_i" -lt 60 ]; do
		sleep 0.05
		_r=$(db_ns)
		_d=$((_r - _q))
		[ "$_d" -ge 0 ] && [ "$_d" -lt 1000000 ] && break
		_q=$_r
		_i=$((_i + 1))
	done
	echo "$_r"
}

# One measurement: workload tool conns threads secs. Repeated (at most
# BENCH_RETRIES more times, and for at most BENCH_RETRY_BUDGET seconds over
# the whole run, which keeps it under 10 minutes) when other processes used
# more than BENCH_OTHER_MAX % of a core meanwhile.
measure() {
	tries=0
	# the daemon under measure, for cpu_split
	case $2 in
	p0) measured=$pid_p0 ;;
	pcustom) measured=$pid_pc ;;
	pgeneric) measured=$pid_pg ;;
	*) measured=$pid ;;
	esac
	while :; do
		q0=$(db_quiet)
		b0=$(busy_jiffies)
		c0=$(cpu_split)
		t0=$(date +%s%N)
		case $2 in
		pf) res=$(run_wrk "$port" "$3" "$4" "$5" "$spec") ;;
		p0) res=$(run_wrk "$port_p0" "$3" "$4" "$5" "$spec") ;;
		pcustom) res=$(run_wrk "$port_pc" "$3" "$4" "$5" "$spec") ;;
		pgeneric) res=$(run_wrk "$port_pg" "$3" "$4" "$5" "$spec") ;;
		stmts) res=$(run_pgbench "$script" "$3" "$4" "$5") ;;
		hand) res=$(run_pgbench "$hand" "$3" "$4" "$5") ;;
		lateral) res=$(run_pgbench "$lateral" "$3" "$4" "$5") ;;
		esac
		t1=$(date +%s%N)
		c1=$(cpu_split)
		b1=$(busy_jiffies)
		q1=$(db_quiet)
		# "other" (% of a core), then the CPU ms per request of
		# prefetchd, the database and the client
		split=$(echo "$c0 $c1" | awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" \
			-v hz="$hz" -v n="$(echo "$res" | awk -v d="$5" '{ print $1 * d }')" '{
			p = $4 - $1; d = $5 - $2; c = $6 - $3
			x = 100 * (b - p - d - c) / (t / 1e9 * hz)
			k = n > 0 ? 1000 / hz / n : 0
			printf "%d %.3f %.3f %.3f", x < 0 ? 0 : x, p * k, d * k, c * k }')
		other=${split%% *}
		tries=$((tries + 1))
		[ "$other" -gt "$other_max" ] || break
		[ "$tries" -le "$retries" ] || break
		[ $((retry_spent + $5)) -le "$retry_budget" ] || break
		retry_spent=$((retry_spent + $5))
		echo "bench: $1 $2 c$3: other processes used $other% of a core, again" >&2
	done
	# the database's CPU ms per request or transaction completed
	dbq=$(echo "$res" | awk -v q="$((q1 - q0))" '{ printf "%.3f", ($4 > 0 ? q / 1e6 / $4 : 0) }')
	set -- "$1" "$2" "$3" $res $split
	echo "$1	$2	$3	$4	$5	$9	${10}	${11}	${12}	$dbq	$8" >>"$raw"
	if [ "$6" != 0 ]; then
		echo "bench: $1 $2 c$3: $6 failed requests/transactions" >&2
		errors=$((errors + 1))
	fi
}

reset_peak() { echo 5 >"/proc/$pid/clear_refs"; }

# A graph with its lists in one order (by their members' JSON, keys
# sorted), for comparing prefetchd's with the lateral statement's: where
# a level has no order_by, neither Django nor PostgreSQL promises one (on
# bench2, whose book keys are uuids, the two orders differ); a slice's
# members are still compared, as a set.
canon='walk(if type == "object" then to_entries | sort_by(.key) | from_entries
	elif type == "array" then sort_by(tojson) else . end)'

workloads=$(cd "$bench" && ls w*.json | sed 's/\.json$//' | grep -E "$only")
[ -n "$workloads" ] || {
	echo "bench: no workload matches $only" >&2
	exit 1
}

for ds in $datasets; do
db=prefetchd_$ds
set_url
for w in $workloads; do
	key=$ds/$w
	spec="$bench/$w.json"
	lateral="$bench/$w.lateral.sql"
	script="$tmp/$ds.$w.stmts.sql"
	hand="$bench/$w.hand.sql"
	[ -f "$hand" ] || hand=""
	echo "bench: $w on $ds"
	restart_daemon
	load=$(wait_quiet)
	fresh=$(kb "$pid" VmRSS)
	curl -sf "http://127.0.0.1:$port/query?debug=1" -d @"$spec" >"$tmp/debug.json" || {
		echo "bench: $key: prefetchd refused the spec" >&2
		exit 1
	}
	jq -r -f "$bench/stmts.jq" "$tmp/debug.json" >"$script"
	rows=$(jq '.stats.rows' "$tmp/debug.json")
	queries=$(jq '.stats.queries' "$tmp/debug.json")
	bytes=$(curl -sf -o "$tmp/body.json" -w '%{size_download}' \
		"http://127.0.0.1:$port/query" -d @"$spec")
	jq -S "(.results | $canon)" "$tmp/body.json" >"$tmp/a.json"
	psql_q -d "$db" -At -f "$lateral" | jq -S "$canon" >"$tmp/b.json"
	if cmp -s "$tmp/a.json" "$tmp/b.json"; then same=yes; else
		same=NO
		errors=$((errors + 1))
		echo "bench: $key: the lateral statement builds another graph" >&2
	fi
	hand_same=-
	if [ -n "$hand" ]; then
		# Every object of the graph once, without its relations (lists
		# of objects), against the rows of the hand statements.
		objs='[.. | objects | with_entries(select(.value |
			type == "array" and all(.[]; type == "object") | not))] | unique'
		jq -S "(.results | $objs)" "$tmp/body.json" >"$tmp/a.json"
		grep -v -e '^--' -e '^BEGIN' -e '^COMMIT' -e '^[[:space:]]*$' "$hand" |
			while IFS= read -r stmt; do
				echo "SELECT coalesce(json_agg(q), '[]') FROM (${stmt%;}) q;"
			done | psql_q -d "$db" -At | jq -s -S "[.[][]] | $objs" >"$tmp/b.json"
		if cmp -s "$tmp/a.json" "$tmp/b.json"; then hand_same=yes; else
			hand_same=NO
			errors=$((errors + 1))
			echo "bench: $key: the hand statements return other rows than prefetchd's objects" >&2
		fi
	fi
	rm -f "$tmp/a.json" "$tmp/b.json" "$tmp/body.json"
	echo "$key	$rows	$bytes	$queries	$same	$hand_same" >>"$info"
	# Runs at 8 connections of workloads slower than 100 ms per request
	# last three times longer, for enough requests per run.
	secs8=$secs
	if awk -v t="$(jq .stats.total_ms "$tmp/debug.json")" 'BEGIN { exit !(t >= 100) }'; then
		secs8=$((secs * 3))
	fi
	# With a hand column (the database's CPU per request), at both.
	secs1=$secs
	if [ -n "$hand" ]; then
		secs1=$((secs * 3))
		secs8=$((secs * 3))
	fi

	run_wrk "$port" 8 2 "$warm" "$spec" >/dev/null
	run_pgbench "$script" 8 2 "$warm" >/dev/null
	[ -z "$hand" ] || run_pgbench "$hand" 8 2 "$warm" >/dev/null
	run_pgbench "$lateral" 8 2 "$warm" >/dev/null
	for p in $port_p0 $port_pc $port_pg; do
		run_wrk "$p" 8 2 "$warm" "$spec" >/dev/null
	done

	peak1=0
	peak8=0
	r=0
	while [ "$r" -lt "$reps" ]; do
		r=$((r + 1))
		for cj in 1:1 8:2; do
			c=${cj%:*}
			j=${cj#*:}
			d=$secs1
			[ "$c" -eq 1 ] || d=$secs8
			reset_peak
			measure "$key" pf "$c" "$j" "$d"
			k=$(kb "$pid" VmHWM)
			if [ "$c" -eq 1 ]; then
				[ "$k" -le "$peak1" ] || peak1=$k
			else
				[ "$k" -le "$peak8" ] || peak8=$k
			fi
			measure "$key" stmts "$c" "$j" "$d"
			[ -z "$hand" ] || measure "$key" hand "$c" "$j" "$d"
			measure "$key" lateral "$c" "$j" "$d"
		done
		for alt in p0 pcustom pgeneric; do
			measure "$key" "$alt" 8 2 "$secs8"
		done
	done
	echo "$key	$peak1	$peak8	$fresh	$(kb "$pid" VmRSS)	$load" >>"$peaks"
done
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
t_total=$(($(date +%s) - t_start))

# ---- the table ----

# One line per workload: rows bytes queries same, then per tool and conns
# the median tps and median p50, then memory and how busy the machine was.
summary=$tmp/summary.tsv
awk -F'\t' '
function median(s,   n, a, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++) {
		t = a[i]
		for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]
		a[j + 1] = t
	}
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
FILENAME == ARGV[1] { order[++nw] = $1; info[$1] = $2 "\t" $3 "\t" $4 "\t" $5; hs[$1] = $6; next }
FILENAME == ARGV[2] { pk[$1] = $2 "\t" $3 "\t" $4 "\t" $5 "\t" $6; next }
{ tps[$1, $2, $3] = tps[$1, $2, $3] " " $4; lat[$1, $2, $3] = lat[$1, $2, $3] " " $5; oth[$1] = oth[$1] " " $6
  if ($3 == 8) { cp[$1, $2] = cp[$1, $2] " " $7; cd[$1, $2] = cd[$1, $2] " " $8; cc[$1, $2] = cc[$1, $2] " " $9 }
  dq[$1, $2, $3] = dq[$1, $2, $3] " " $10; p99[$1, $2, $3] = p99[$1, $2, $3] " " $11 }
END {
	for (i = 1; i <= nw; i++) {
		w = order[i]
		line = w "\t" info[w]
		split("pf stmts lateral", tools, " ")
		for (t = 1; t <= 3; t++)
			for (c = 1; c <= 8; c += 7)
				line = line "\t" median(tps[w, tools[t], c]) "\t" median(lat[w, tools[t], c])
		line = line "\t" pk[w] "\t" median(oth[w])
		for (t = 1; t <= 2; t++)
			line = line "\t" median(cp[w, tools[t]]) "\t" median(cd[w, tools[t]]) "\t" median(cc[w, tools[t]])
		split("pf stmts hand lateral", tools, " ")
		for (t = 1; t <= 4; t++)
			for (c = 1; c <= 8; c += 7)
				line = line "\t" median(dq[w, tools[t], c])
		for (c = 1; c <= 8; c += 7)
			line = line "\t" median(tps[w, "hand", c]) "\t" median(lat[w, "hand", c])
		line = line "\t" hs[w]
		split("p0 pcustom pgeneric", tools, " ")
		for (t = 1; t <= 3; t++)
			line = line "\t" median(tps[w, tools[t], 8])
		for (c = 8; c >= 1; c -= 7)
			line = line "\t" median(p99[w, "pf", c]) "\t" median(p99[w, "stmts", c])
		print line
	}
}' "$info" "$peaks" "$raw" >"$summary"

# Columns of summary: 1 w, 2 rows, 3 bytes, 4 queries, 5 same,
# pf: 6 tps1 7 lat1 8 tps8 9 lat8; stmts: 10-13; lateral: 14-17;
# 18 peak1 kB, 19 peak8 kB, 20 fresh kB, 21 after kB, 22 busy % before,
# 23 median % of a core used by other processes during the runs; CPU ms
# per request at 8 connections of prefetchd, the database and the client:
# pf 24-26, stmts 27-29; the database's CPU ms per request (db_ns) at 1
# and 8 connections: pf 30-31, stmts 32-33, hand 34-35, lateral 36-37;
# hand: 38 tps1 39 lat1 40 tps8 41 lat8; 42 the hand check (yes, NO, or -
# for a workload without a hand column); tps8 of the plan alternatives:
# 43 p0, 44 pcustom, 45 pgeneric; p99 latency (us) of pf and stmts: 46-47
# at 8 connections, 48-49 at 1.
render() {
	awk -F'\t' '
	function ms(us) { return sprintf("%.2f", us / 1000) }
	function r2(x) { return sprintf("%.2f", x) }
	function mark(ok) { return ok ? "✓" : "✗" }
	function short(w) { sub(/_.*/, "", w); return toupper(w) }
	function div(a, b) { return b > 0 ? a / b : 0 }
	{
		n++; w[n] = $1; for (i = 1; i <= NF; i++) v[n, i] = $i
		id[short($1)] = n
	}
	END {
		print "### Issue 20 targets, 8 connections (medians)"
		print ""
		print "db CPU = the database backends\x27 CPU per request (schedstat, run.sh\x27s header); best alt = the fastest of --prepare-cache 0 (p0), --plan-mode custom (pc) and generic (pg), each its own daemon; pf CPU/MB = prefetchd\x27s CPU per request over the MB it answers."
		print ""
		print "| workload | pf/stmts ≥ 0.8 | pf/lateral ≥ 1.5 | db CPU pf/stmts ≤ 1.0 | p99 pf/stmts ≤ 1.25 | default/best alt ≥ 0.95 | p0 · pc · pg (tps) | pf CPU ms/MB ≤ 1.5 |"
		print "|---|---:|---:|---:|---:|---:|---|---:|"
		for (i = 1; i <= n; i++) {
			a = div(v[i, 8], v[i, 12]); c = div(v[i, 8], v[i, 16])
			e = div(v[i, 31], v[i, 33]); l = div(v[i, 46], v[i, 47])
			best = v[i, 43]; bn = "p0"
			if (v[i, 44] > best) { best = v[i, 44]; bn = "pc" }
			if (v[i, 45] > best) { best = v[i, 45]; bn = "pg" }
			m = div(v[i, 8], best); mb = v[i, 3] / 1e6
			printf "| %s | %s %s | %s %s | %s %s | %s %s | %s %s (%s) | %.1f · %.1f · %.1f | %s |\n",
				w[i], r2(a), mark(a >= 0.8), r2(c), mark(c >= 1.5), r2(e), mark(e > 0 && e <= 1.0),
				r2(l), mark(l > 0 && l <= 1.25), r2(m), mark(m >= 0.95), bn,
				v[i, 43], v[i, 44], v[i, 45],
				(mb >= 1 ? sprintf("%.2f %s", div(v[i, 24], mb), mark(div(v[i, 24], mb) <= 1.5)) : "-")
		}
		print ""
		print "### Throughput, 8 connections (transactions/s, median)"
		print ""
		print "| workload | rows | response | queries | pf | stmts | lateral | pf/stmts ≥ 0.8 | pf/lateral ≥ 1.5 | lateral cost × stmts | same graph |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
		for (i = 1; i <= n; i++) {
			a = div(v[i, 8], v[i, 12]); c = div(v[i, 8], v[i, 16])
			e = div(v[i, 12], v[i, 16])
			printf "| %s | %d | %.2f MB | %d | %.1f | %.1f | %.1f | %s %s | %s %s | %s | %s |\n",
				w[i], v[i, 2], v[i, 3] / 1e6, v[i, 4], v[i, 8], v[i, 12], v[i, 16],
				r2(a), mark(a >= 0.8), r2(c), mark(c >= 1.5), r2(e), v[i, 5]
		}
		print ""
		print "### CPU per request, 8 connections (ms, median)"
		print ""
		print "On a saturated machine throughput goes as 1 / (all CPU per request): the last column is the pf/stmts ratio that the CPU alone allows."
		print ""
		print "| workload | pf: database | pf: prefetchd | pf: wrk | pf: all | stmts: database | stmts: pgbench | stmts: all | stmts all / pf all |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
		for (i = 1; i <= n; i++) {
			pa = v[i, 24] + v[i, 25] + v[i, 26]; sa = v[i, 28] + v[i, 29]
			printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n",
				w[i], v[i, 25], v[i, 24], v[i, 26], pa, v[i, 28], v[i, 29], sa, r2(div(sa, pa))
		}
		nh = 0
		for (i = 1; i <= n; i++) if (v[i, 42] != "-") nh++
		if (nh) {
			print ""
			print "### Database CPU per request against the hand-written SQL (ms, median)"
			print ""
			print "The backends\x27 CPU over each run (schedstat, reaped ones included) / the requests or transactions completed; hand = pgbench on the workload\x27s .hand.sql."
			print ""
			print "| workload | conns | pf | stmts | hand | lateral | pf/hand ≤ 1.10 | stmts/hand | hand: transactions/s | hand: same rows |"
			print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
			for (i = 1; i <= n; i++) {
				if (v[i, 42] == "-") continue
				for (c = 0; c <= 1; c++) {
					a = div(v[i, 30 + c], v[i, 34 + c])
					printf "| %s | %d | %.2f | %.2f | %.2f | %.2f | %s %s | %s | %.1f | %s |\n",
						w[i], c ? 8 : 1, v[i, 30 + c], v[i, 32 + c], v[i, 34 + c], v[i, 36 + c],
						r2(a), mark(a > 0 && a <= 1.10), r2(div(v[i, 32 + c], v[i, 34 + c])),
						v[i, 38 + 2 * c], v[i, 42]
				}
			}
		}
		print ""
		print "### Latency, 1 connection (ms, median)"
		print ""
		print "| workload | pf | stmts | lateral | pf/stmts ≤ 1.25 | pf − stmts | pf µs/row | other load |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|"
		for (i = 1; i <= n; i++) {
			a = div(v[i, 7], v[i, 11])
			printf "| %s | %s | %s | %s | %s %s | %s | %.2f | %d%% |\n",
				w[i], ms(v[i, 7]), ms(v[i, 11]), ms(v[i, 15]),
				r2(a), mark(a <= 1.25), ms(v[i, 7] - v[i, 11]),
				div(v[i, 7], v[i, 2]), v[i, 23]
		}
		print ""
		print "### Memory of prefetchd (a fresh process per workload)"
		print ""
		print "| workload | response | idle, fresh | peak, 1 conn | peak, 8 conns | idle after | budget 64 MB + 2 × response | peak within |"
		print "|---|---:|---:|---:|---:|---:|---:|---|"
		maxpeak = 0; maxfresh = 0; maxafter = 0; maxresp = 0
		for (i = 1; i <= n; i++) {
			budget = 64 * 1024 + 2 * v[i, 3] / 1024
			pk = v[i, 18] > v[i, 19] ? v[i, 18] : v[i, 19]
			printf "| %s | %.2f MB | %.1f MB | %.1f MB | %.1f MB | %.1f MB | %.1f MB | %s |\n",
				w[i], v[i, 3] / 1e6, v[i, 20] / 1024, v[i, 18] / 1024, v[i, 19] / 1024,
				v[i, 21] / 1024, budget / 1024, mark(pk <= budget)
			if (pk > maxpeak) maxpeak = pk
			if (v[i, 20] > maxfresh) maxfresh = v[i, 20]
			if (v[i, 21] > maxafter) maxafter = v[i, 21]
			if (v[i, 3] > maxresp) maxresp = v[i, 3]
		}
		print ""
		print "### Targets"
		print ""
		print "| target | measured | |"
		print "|---|---|---|"
		worst = 1e9; list = ""
		for (i = 1; i <= n; i++) { a = div(v[i, 8], v[i, 12]); if (a < worst) worst = a; if (a < 0.8) list = list " " short(w[i]) }
		printf "| throughput, 8 conns ≥ 0.8 × stmts | worst %s%s | %s |\n", r2(worst), list ? ", below:" list : "", mark(list == "")
		worst = 1e9; list = ""
		for (i = 1; i <= n; i++) { a = div(v[i, 8], v[i, 16]); if (a < worst) worst = a; if (a < 1.5) list = list " " short(w[i]) }
		printf "| throughput, 8 conns ≥ 1.5 × lateral | worst %s%s | %s |\n", r2(worst), list ? ", below:" list : "", mark(list == "")
		worst = 0; list = ""
		for (i = 1; i <= n; i++) { a = div(v[i, 7], v[i, 11]); if (a > worst) worst = a; if (a > 1.25) list = list " " short(w[i]) }
		printf "| latency, 1 conn ≤ 1.25 × stmts | worst %s%s | %s |\n", r2(worst), list ? ", above:" list : "", mark(list == "")
		if (("W5" in id) && ("W5B" in id)) {
			p = id["W5"]; q = id["W5B"]
			a = div(v[p, 7], v[q, 7])
			printf "| slice: W5 (100,000 children) ≤ 1.5 × W5b (10), 1 conn | %s / %s ms = %s (stmts: %s) | %s |\n",
				ms(v[p, 7]), ms(v[q, 7]), r2(a), r2(div(v[p, 11], v[q, 11])), mark(a <= 1.5)
		}
		if (("W1" in id) && ("W6" in id)) {
			p = id["W1"]; q = id["W6"]
			s1 = div(v[p, 7], v[p, 2]); s6 = div(v[q, 7], v[q, 2])
			a = div(s6, s1)
			printf "| scale: µs per row, W6 (%d rows) within 1.5 × W1 (%d rows), 1 conn | %.2f / %.2f = %s (stmts: %s) | %s |\n",
				v[q, 2], v[p, 2], s6, s1, r2(a),
				r2(div(div(v[q, 11], v[q, 2]), div(v[p, 11], v[p, 2]))), mark(a <= 1.5 && a >= 1 / 1.5)
		}
		if (nh) {
			worst = 0; list = ""
			for (i = 1; i <= n; i++) {
				if (v[i, 42] == "-") continue
				for (c = 0; c <= 1; c++) {
					a = div(v[i, 30 + c], v[i, 34 + c]); if (a > worst) worst = a
					if (a > 1.10 || a == 0) list = list " " short(w[i]) (c ? "/8" : "/1")
				}
			}
			printf "| database CPU per request ≤ 1.10 × hand-written SQL, 1 and 8 conns | worst %s%s | %s |\n", r2(worst), list ? ", above:" list : "", mark(list == "")
		}
		printf "| idle RSS < 10 MB | %.1f MB fresh; up to %.1f MB idle after a workload | %s |\n",
			maxfresh / 1024, maxafter / 1024, mark(maxfresh < 10240 && maxafter < 10240)
		budget = 64 * 1024 + 2 * maxresp / 1024
		printf "| peak RSS < 64 MB + 2 × largest response (%.1f MB) | %.1f MB | %s |\n",
			budget / 1024, maxpeak / 1024, mark(maxpeak <= budget)
	}' "$1"
}

# A section per data set, its workloads named without the data set.
table=$(for ds in $datasets; do
	grep "^$ds/" "$summary" | sed "s|^$ds/||" >"$summary.one"
	[ -s "$summary.one" ] || continue
	echo "## Data set $ds ($(data_files "$ds" | sed "s|$root/||g"))"
	echo
	render "$summary.one"
	echo
done)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal:/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo)
wrkv=$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)
{
	echo "# prefetchd benchmark results"
	echo
	echo "Written by \`make bench\` (tests/bench/run.sh) on $(date -u '+%Y-%m-%d %H:%M UTC');"
	echo "daemon sources at the start: sha256 of \`cat daemon/*.[ch]\` $digest."
	echo
	echo "- machine: $(nproc) cores ($cpu), $mem RAM, Linux $(uname -r)"
	echo "- PostgreSQL $pgversion (private cluster .pgbench-data/, unix socket, fsync off,"
	echo "  shared_buffers 512MB, random_page_cost 1.1, jit off, pg_stat_statements loaded),"
	echo "  $wrkv, pgbench $(pgbench --version | awk '{ print $3 }')"
	echo "- command: \`make bench\` = \`sh tests/bench/run.sh build/bench/prefetchd\` with"
	echo "  BENCH_DATA=\"$datasets\" BENCH_ONLY=$only"
	echo "  BENCH_SECONDS=$secs BENCH_REPS=$reps BENCH_WARMUP=$warm (runs at 8 connections of"
	echo "  workloads slower than 100 ms per request: 3 × BENCH_SECONDS); total $t_total s"
	echo "- load average before / after: $load_before / $load_after; the machine is shared:"
	echo "  prefetchd, PostgreSQL and the load generator use the same $(nproc) cores as"
	echo "  anything else running (\"other load\": median % of a core used by other"
	echo "  processes during the runs; a run is repeated up to $retries times when over"
	echo "  $other_max%, and each workload waits up to ${quiet} s for a quiet second first)"
	echo "- pf = prefetchd under wrk (tests/bench/post.lua; wrk -t1 -c1 / -t2 -c8);"
	echo "  stmts = pgbench -M prepared on the transaction prefetchd sends (its ?debug=1"
	echo "  SQL, parameters inlined as literals: stmts.jq); lateral = pgbench -M prepared"
	echo "  on one json_agg + LEFT JOIN LATERAL statement building the same graph"
	echo "  (checked: \"same graph\"); medians of $reps runs, tools interleaved;"
	echo "  transactions/s = connections / mean latency (Little's law), for all three"
	if cut -f42 "$summary" | grep -qv '^-$'; then
		echo "- hand = pgbench -M prepared on a workload's .hand.sql, where there is one"
		echo "  (the statements a person would write, in one transaction; checked: \"same"
		echo "  rows\"); such a workload runs 3 × BENCH_SECONDS at 1 and 8 connections;"
		echo "  database CPU per request: its backends' CPU from /proc (run.sh's header)"
	fi
	echo
	echo "$table"
	if [ "$errors" -gt 0 ]; then
		echo
		echo "**$errors problem(s) during the run: see its output.**"
	fi
} >"$results"

echo
echo "$table"
echo
echo "bench: $t_total s; written to $results"
[ "$errors" -eq 0 ]
