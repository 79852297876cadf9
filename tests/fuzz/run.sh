#!/bin/sh
# make fuzz: runs the libFuzzer target for SECONDS (tests/fuzz/README is in
# the Makefile's comment). BUILD_DIR holds fuzz_request and seeds; the seed
# corpus is extracted afresh from every request in proto/examples,
# tests/cases and tests/unit/plan_cases.json, plus the committed
# tests/fuzz/corpus and tests/fuzz/regressions. New inputs that libFuzzer
# finds interesting go to BUILD_DIR/corpus (kept between runs, not
# committed); an input that crashes, leaks, times out or breaks an
# invariant is written to tests/fuzz/regressions/, where the unit tests
# replay it (commit it with the fix). Exit status: libFuzzer's (0: clean).
set -eu

[ $# -eq 2 ] || {
	echo "usage: $0 BUILD_DIR SECONDS" >&2
	exit 2
}
build=$1
seconds=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

rm -rf "$build/seed-corpus"
mkdir -p "$build/seed-corpus" "$build/corpus" tests/fuzz/regressions
# shellcheck disable=SC2046 # file lists
"$build/seeds" "$build/seed-corpus" $(ls proto/examples/*.json tests/cases/*.json \
	tests/unit/plan_cases.json 2>/dev/null)

# -rss_limit_mb and -timeout bound one input; -max_len leaves room for deep
# nesting. Leak detection is on (ASan's default with libFuzzer).
exec "$build/fuzz_request" \
	-max_total_time="$seconds" \
	-dict=tests/fuzz/request.dict \
	-max_len=4096 \
	-timeout=10 \
	-rss_limit_mb=2048 \
	-print_final_stats=1 \
	-artifact_prefix=tests/fuzz/regressions/ \
	"$build/corpus" "$build/seed-corpus" tests/fuzz/corpus tests/fuzz/regressions
