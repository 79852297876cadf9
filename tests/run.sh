#!/bin/sh
# make test-only: runs BUILD_DIR/check_unit, then BUILD_DIR/check_integration
# and tests/validate.py (the protocol against proto/'s JSON Schemas) against a
# throwaway PostgreSQL cluster (database prefetchd_test loaded with
# sql/schema.sql + sql/demo.sql, then tests/django/*.sql), which is always
# stopped and removed at the end. The last line is "N passed, N failed" over
# both runners (CI reads it); the exit status is non-zero when a test failed
# or a runner crashed.
#
# The integration tests find their world in the environment: PFTEST_BIN,
# PFTEST_PGHOST, PFTEST_PGPORT, PFTEST_PGDATA, PFTEST_PGCTL (a command prefix:
# $PFTEST_PGCTL stop|start "$PFTEST_PGDATA"), PFTEST_DB, PFTEST_ROOT and
# PFTEST_TMPDIR. They run their own queries as role pftest, so that
# pg_stat_statements tells them apart from prefetchd's (user postgres).
# check's own variables work as usual: CK_FORK=no, CK_VERBOSITY=verbose,
# CK_RUN_SUITE=..., CK_RUN_CASE=...
set -eu

[ $# -eq 1 ] || {
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
}
build=$1
case $build in
/*) ;;
*) build=$(pwd)/$build ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
pgcluster="$root/tests/pgcluster.sh"

case $build in
*asan*)
	# Later entries win, so options already in the environment still apply.
	ASAN_OPTIONS="detect_leaks=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
	UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
	export ASAN_OPTIONS UBSAN_OPTIONS
	;;
esac

passed=0
failed=0
tmp=""
pgdata=""
runner=""

cleanup() {
	status=$?
	# A second signal must not cut the cleanup short.
	trap - EXIT
	trap '' INT TERM HUP
	if [ -n "$runner" ]; then
		kill -TERM "$runner" 2>/dev/null || true
		wait "$runner" 2>/dev/null || true
	fi
	if [ -n "$pgdata" ]; then
		sh "$pgcluster" stop "$pgdata" >/dev/null 2>&1 || true
	fi
	[ -z "$tmp" ] || rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

tmp=$(mktemp -d "${TMPDIR:-/tmp}/prefetchd-test.XXXXXX")
# As root the cluster runs as user postgres, which must reach it.
chmod 755 "$tmp"

# Runs one check runner (NAME BINARY), showing its output, and adds its
# "Checks: X, Failures: Y, Errors: Z" lines to the totals. A runner that
# prints no summary, or exits non-zero with nothing counted as failed (it
# crashed, or a sanitizer fired at exit), counts as one failed test.
run_checks() {
	name=$1
	shift
	out="$tmp/$name.out"
	if [ ! -x "$1" ]; then
		echo "run.sh: $1 is missing (build it first)" >&2
		failed=$((failed + 1))
		return
	fi
	echo "== $name"
	# A direct child, so that cleanup can stop it, in a session of its own:
	# check's runner answers SIGINT/SIGTERM by signalling its whole process
	# group, which must not be ours (nor make's). Its output is shown as it
	# comes.
	setsid "$@" >"$out" 2>&1 &
	runner=$!
	tail -s 0.2 -n +1 -f --pid="$runner" "$out" &
	shower=$!
	rc=0
	wait "$runner" || rc=$?
	runner=""
	wait "$shower" || true
	sed -n 's/.*Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2 \3/p' \
		"$out" >"$tmp/$name.counts"
	bad=0
	seen=0
	while read -r c f e; do
		seen=1
		bad=$((bad + f + e))
		passed=$((passed + c - f - e))
	done <"$tmp/$name.counts"
	if [ "$seen" -eq 0 ]; then
		echo "run.sh: $name printed no summary (exit status $rc)" >&2
		bad=1
	elif [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
		echo "run.sh: $name exited with status $rc" >&2
		bad=1
	fi
	failed=$((failed + bad))
}

# Creates and loads the test database; returns non-zero on any failure.
setup_database() {
	pgdata="$tmp/pg"
	sh "$pgcluster" start "$pgdata" || return 1
	psql() {
		PGOPTIONS='-c client_min_messages=warning' \
			sh "$pgcluster" psql "$pgdata" -q -v ON_ERROR_STOP=1 "$@"
	}
	psql -d postgres -c 'CREATE DATABASE prefetchd_test' \
		-c 'CREATE ROLE pftest SUPERUSER LOGIN' || return 1
	for f in schema.sql demo.sql; do
		[ -f "$root/sql/$f" ] || {
			echo "run.sh: sql/$f is missing" >&2
			return 1
		}
	done
	psql -d prefetchd_test -f "$root/sql/schema.sql" \
		-f "$root/sql/demo.sql" \
		-c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' ||
		return 1
	# Django's own test data, for tests/integration/check_django_suites.c
	# (tests/django/README.md): more tables in schema public.
	for f in "$root"/tests/django/*.sql; do
		[ -f "$f" ] || continue
		psql -d prefetchd_test -f "$f" || return 1
	done
}

run_checks unit "$build/check_unit"

if setup_database; then
	PFTEST_BIN="$build/prefetchd"
	PFTEST_PGHOST="$pgdata"
	PFTEST_PGPORT=$(cat "$pgdata/port")
	PFTEST_PGDATA="$pgdata"
	PFTEST_PGCTL="sh $pgcluster"
	PFTEST_DB=prefetchd_test
	PFTEST_ROOT="$root"
	PFTEST_TMPDIR="$tmp/t"
	mkdir "$PFTEST_TMPDIR"
	export PFTEST_BIN PFTEST_PGHOST PFTEST_PGPORT PFTEST_PGDATA PFTEST_PGCTL \
		PFTEST_DB PFTEST_ROOT PFTEST_TMPDIR
	run_checks integration "$build/check_integration"
	# A test that passed removed its files; those left are the failures'.
	for log in "$PFTEST_TMPDIR"/*/prefetchd-*.log; do
		[ -s "$log" ] || continue
		echo "--- ${log#"$PFTEST_TMPDIR"/} (a failed test's prefetchd, last 30 lines)"
		tail -n 30 "$log"
	done
	# The protocol against its JSON Schemas and OpenAPI document
	# (proto/): every example and case through a prefetchd of its own.
	# Debian's python3 first: python3-jsonschema is installed there.
	python=/usr/bin/python3
	[ -x "$python" ] || python=$(command -v python3 || echo python3)
	run_checks protocol "$python" "$root/tests/validate.py" \
		--spawn "$PFTEST_BIN" --database-url \
		"host=$PFTEST_PGHOST port=$PFTEST_PGPORT dbname=$PFTEST_DB user=postgres"
	# The Django bridge (proto/django): fetch(qs) against Django 3.2's own
	# evaluation, through a prefetchd of its own with the overlay that
	# prefetchd_overlay writes (python3-django, python3-psycopg2).
	run_checks django "$python" "$root/proto/django/tests/run.py"
else
	echo "run.sh: could not set up the test database; integration tests not run" >&2
	failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
