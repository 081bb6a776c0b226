#!/bin/sh
# tests/fuzz.sh [SECONDS] [TARGET]: fuzzes a parser with libFuzzer for
# SECONDS (default 20), starting from the seeds in tests/fuzz/TARGET/, and
# ends with "fuzz.sh: ok" or "fuzz.sh: FAIL" (meson's suite fuzz reads the
# exit status). TARGET is tests/fuzz_TARGET.c, which fuzzes src/cli/TARGET.c:
#   http       the HTTP request parser of `vigil serve` (the default)
#   http_resp  the response parser of `vigil bench --http`
#   http_reqs  the request files of `vigil bench --http --requests`
#
# Needs clang with libFuzzer (Debian: apt-get install clang); installs
# nothing. Everything it writes goes to a directory of its own under
# ${VIGIL_FUZZ_OUT:-/tmp}: the build, a copy of the seeds that the fuzzer
# grows, and any crash. The directory is removed after a clean run and kept
# (its path printed) after a failure. Exit status: 0 clean, 1 a crash or no
# build.
set -u

seconds=${1:-20}
target=${2:-http}
case $seconds in
'' | *[!0-9]*) echo "usage: $0 [SECONDS] [http|http_resp|http_reqs]" >&2; exit 2 ;;
esac
case $target in
http | http_resp | http_reqs) ;;
*) echo "usage: $0 [SECONDS] [http|http_resp|http_reqs]" >&2; exit 2 ;;
esac
src=$(cd "$(dirname "$0")/.." && pwd)
cc=${CLANG:-clang}

verdict() { # ok|FAIL
    echo "fuzz.sh: $1"
}

work=$(mktemp -d "${VIGIL_FUZZ_OUT:-/tmp}/vigil-fuzz-$target.XXXXXX") || { verdict FAIL; exit 1; }
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz.sh: no $cc (apt-get install clang)" >&2
    rm -rf "$work"
    verdict FAIL
    exit 1
fi
if ! "$cc" -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I "$src/src/cli" -I "$src/include" "$src/tests/fuzz_$target.c" "$src/src/cli/$target.c" \
    -o "$work/fuzz" 2>"$work/build.log"; then
    cat "$work/build.log" >&2
    echo "fuzz.sh: the build failed (kept in $work)" >&2
    verdict FAIL
    exit 1
fi

mkdir "$work/corpus" "$work/artifacts"
cp "$src"/tests/fuzz/"$target"/* "$work/corpus/"
# run from the work directory: libFuzzer drops files in the current one
(cd "$work" && ./fuzz -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 \
    -max_len=4096 -print_final_stats=1 -artifact_prefix="$work/artifacts/" corpus \
    >"$work/fuzz.log" 2>&1)
rc=$?
grep -E '^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+ *DONE)' "$work/fuzz.log" |
    sed 's/^/fuzz.sh: /'

crash=$(ls "$work"/artifacts/* 2>/dev/null | head -n 1)
if [ $rc -eq 0 ] && [ -z "$crash" ]; then
    rm -rf "$work"
    verdict ok
    exit 0
fi

# what failed, and on which input, escaped so that CRs and NULs show
grep -E 'fuzz_http[a-z_]*:|ERROR:|runtime error|SUMMARY' "$work/fuzz.log" | head -n 20 >&2
if [ -n "$crash" ]; then
    echo "fuzz.sh: input ($(wc -c <"$crash") bytes, $crash):" >&2
    od -A d -c "$crash" | head -n 64 >&2
else
    tail -n 30 "$work/fuzz.log" >&2
fi
echo "fuzz.sh: log and inputs kept in $work" >&2
verdict FAIL
exit 1
