#!/bin/sh
# make run: serves the demo database with BINARY in the foreground.
#
#   sh tests/demo.sh BINARY [ARGS...]    ARGS go to prefetchd as they are
#
# Without DATABASE_URL it starts the private cluster in .pgdata/ (created on
# first use), creates database prefetchd_demo and loads sql/schema.sql and
# sql/demo.sql into it, again whenever one of them is newer than the last
# load. With DATABASE_URL set it serves that database and starts no cluster.
# It listens on 127.0.0.1:8080 unless PREFETCHD_LISTEN says otherwise. Ctrl-C
# stops prefetchd, then the cluster.
set -eu

[ $# -ge 1 ] || {
	echo "usage: $0 BINARY [ARGS...]" >&2
	exit 2
}
bin=$1
shift
case $bin in
/*) ;;
*) bin=$(pwd)/$bin ;;
esac
[ -x "$bin" ] || {
	echo "demo.sh: $bin is not an executable (run make first)" >&2
	exit 1
}
root=$(cd "$(dirname "$0")/.." && pwd)
pgcluster="$root/tests/pgcluster.sh"

listen=${PREFETCHD_LISTEN:-127.0.0.1:8080}
port=${listen##*:}
host=${listen%:*}
case $host in
'' | 0.0.0.0 | '*' | '[::]') host=localhost ;;
esac
base="$host:$port"

cluster=""
pid=""

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	status=$?
	# Ignored, not reset: check's runner, when stopped, signals its whole
	# process group, which is ours, and the cleanup must still finish.
	trap - EXIT
	trap '' INT TERM HUP
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [ -n "$cluster" ]; then
		echo "demo.sh: stopping the demo cluster"
		sh "$pgcluster" stop "$cluster" || true
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [ -n "${DATABASE_URL:-}" ]; then
	url=$DATABASE_URL
	echo "demo.sh: serving DATABASE_URL"
else
	cluster="$root/.pgdata"
	sh "$pgcluster" start "$cluster"
	pgport=$(cat "$cluster/port")
	pghost=$(cd -P "$cluster" && pwd)
	marker="$cluster/prefetchd_demo.loaded"
	load=0
	if [ ! -f "$marker" ] || [ -n "$(find "$root/sql/schema.sql" \
		"$root/sql/demo.sql" -newer "$marker" 2>/dev/null)" ]; then
		load=1
	fi
	if [ "$load" -eq 1 ]; then
		echo "demo.sh: loading sql/schema.sql and sql/demo.sql into prefetchd_demo"
		psql() {
			PGOPTIONS='-c client_min_messages=warning' \
				sh "$pgcluster" psql "$cluster" -q -v ON_ERROR_STOP=1 "$@"
		}
		psql -d postgres \
			-c 'DROP DATABASE IF EXISTS prefetchd_demo WITH (FORCE)' \
			-c 'CREATE DATABASE prefetchd_demo'
		psql -d prefetchd_demo -f "$root/sql/schema.sql" \
			-f "$root/sql/demo.sql"
		touch "$marker"
	fi
	url="host=$pghost port=$pgport dbname=prefetchd_demo user=postgres"
	echo "demo.sh: database: psql \"$url\""
fi

cat <<EOF

prefetchd on http://$base (Ctrl-C stops it). Try:
  curl -s $base/schema
  curl -s $base/query -d '{"model":"author","prefetch_related":["book_set"],"limit":2}'

EOF

# In the background so that the traps run at once; a non-interactive shell
# starts it with SIGINT ignored, hence the explicit SIGTERM in cleanup.
"$bin" --listen "$listen" --database-url "$url" "$@" &
pid=$!
status=0
wait "$pid" || status=$?
pid=""
exit "$status"
