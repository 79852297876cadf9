#!/bin/sh
# make valgrind: the unit tests in-process (CK_FORK=no) under valgrind, then
# tests/run.sh with every prefetchd the integration tests start wrapped in
# valgrind (PFTEST_WRAPPER, see tests/integration/harness.h). valgrind logs
# one file per process in BUILD_DIR/valgrind-logs; errors (invalid reads
# and writes, uninitialised values, bad frees) and definite leaks count as
# errors, and every log must end with "ERROR SUMMARY: 0 errors": a log
# without a summary is a process that did not exit by itself (killed, or
# crashed), which fails the run too, as do the tests themselves. Prints
# "N passed, N failed" last (CI reads it).
set -eu

[ $# -eq 1 ] || {
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=$(cd "$1" && pwd)
logs="$build/valgrind-logs"
rm -rf "$logs"
mkdir -p "$logs"

vg="valgrind --error-exitcode=99 --leak-check=full \
--errors-for-leak-kinds=definite --show-leak-kinds=definite \
--num-callers=30 --child-silent-after-fork=yes"

status=0
echo "== unit tests under valgrind"
CK_FORK=no $vg --log-file="$logs/unit.%p.log" "$build/check_unit" || status=1

echo "== integration tests, prefetchd under valgrind"
PFTEST_WRAPPER="$vg --log-file=$logs/prefetchd.%p.log" \
	sh tests/run.sh "$build" >"$logs/run.out" 2>&1 || status=1
tail -n 40 "$logs/run.out"

daemons=$(find "$logs" -name 'prefetchd.*.log' | wc -l)
bad=0
for f in "$logs"/*.log; do
	grep -q "ERROR SUMMARY: 0 errors" "$f" && continue
	bad=$((bad + 1))
	echo "--- valgrind report: $f"
	grep -v "^==[0-9]*== *$" "$f" | head -n 80
done
echo "valgrind: $daemons prefetchd processes, $bad with errors or without a summary"
if [ "$daemons" -eq 0 ]; then
	echo "valgrind: no prefetchd ran under valgrind" >&2
	status=1
fi
[ "$bad" -eq 0 ] || status=1
if [ "$status" -eq 0 ]; then
	echo "1 passed, 0 failed"
else
	echo "0 passed, 1 failed"
fi
exit "$status"
