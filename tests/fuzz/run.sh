#!/usr/bin/env bash
# Runs every libFuzzer harness of BUILD (default build-fuzz) for SECONDS
# each (default 60), one after the other, over a scratch copy of its
# committed corpus (tests/fuzz/corpus/<target>; new inputs stay in
# BUILD/fuzz-corpus/<target>, not in the tree), and prints one table of
# the executions per harness.  A crash, leak, timeout or broken
# invariant leaves its input in BUILD/fuzz-artifacts/<target>/ and makes
# the run fail (after all harnesses ran).
#   usage: run.sh [BUILD [SECONDS [TARGET...]]]
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-fuzz}
secs=${2:-60}
shift 2 2>/dev/null || shift $#
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        t=${f#tests/fuzz/fuzz_}
        targets+=("${t%.c}")
    done
fi
fail=0
rows=()
for t in "${targets[@]}"; do
    exe=$build/fuzz/fuzz_$t
    corpus=$build/fuzz-corpus/$t
    art=$build/fuzz-artifacts/$t
    log=$build/fuzz-logs/$t.log
    mkdir -p "$corpus" "$art" "$(dirname "$log")"
    if [ ! -x "$exe" ]; then
        rows+=("$t|-|missing|$exe not built")
        fail=1
        continue
    fi
    # -timeout: one input taking this long is a hang; -rss_limit_mb: a
    # memory blow-up; the committed regression inputs are read as seeds too
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$art/" \
        "$corpus" tests/fuzz/corpus/"$t" $( [ -d tests/fuzz/regress/"$t" ] && echo tests/fuzz/regress/"$t" ) \
        >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        rows+=("$t|${execs:-?}|ok|")
    else
        crash=$(ls -t "$art" 2>/dev/null | head -1)
        rows+=("$t|${execs:-?}|FAILED|$art/$crash (log: $log)")
        fail=1
    fi
done
printf '\n%-16s %14s  %-7s %s\n' harness executions result detail
for r in "${rows[@]}"; do
    IFS='|' read -r t e s d <<<"$r"
    printf '%-16s %14s  %-7s %s\n' "$t" "$e" "$s" "$d"
done
exit $fail
