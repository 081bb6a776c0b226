#!/usr/bin/env bash
# bench/profile_ab.sh OLD_VIGIL NEW_VIGIL [ROUNDS (3)] [KINDS (spin,block)]
# Stall recovery of two builds of vigil, measured in one run: `vigil profile`
# of each, alternated ROUNDS times (so both see the same machine), then the
# median of each scenario's detection p50 and recovery p50 per build, and
# their ratio (new / old). Each profile takes about 8 s per scenario.
set -euo pipefail
OLD=${1:?usage: bench/profile_ab.sh OLD_VIGIL NEW_VIGIL [ROUNDS] [KINDS]}
NEW=${2:?usage: bench/profile_ab.sh OLD_VIGIL NEW_VIGIL [ROUNDS] [KINDS]}
ROUNDS=${3:-3}
KINDS=${4:-spin,block}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for r in $(seq "$ROUNDS"); do
    for side in old new; do
        bin=$OLD; [ $side = new ] && bin=$NEW
        # rows: scenario detect p50/p99 recover p50/max ...
        "$bin" profile --kinds "$KINDS" --out "$T/p-$side-$r" 2>/dev/null |
            awk -v s=$side '/^(uring|epoll)-/ { split($2, d, "/"); split($3, c, "/"); print s, $1, d[1], c[1] }' \
            >>"$T/rows"
    done
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf '| scenario | detect p50 old | new | recover p50 old | new | recover new/old |\n|---|---|---|---|---|---|\n'
for sc in $(awk '{ print $2 }' "$T/rows" | sort -u); do
    dold=$(awk -v x="$sc" '$1 == "old" && $2 == x { print $3 }' "$T/rows" | median)
    dnew=$(awk -v x="$sc" '$1 == "new" && $2 == x { print $3 }' "$T/rows" | median)
    rold=$(awk -v x="$sc" '$1 == "old" && $2 == x { print $4 }' "$T/rows" | median)
    rnew=$(awk -v x="$sc" '$1 == "new" && $2 == x { print $4 }' "$T/rows" | median)
    ratio=$(awk -v a="$rnew" -v b="$rold" 'BEGIN { printf "%.2fx", b ? a / b : 0 }')
    printf '| %s | %s ms | %s ms | %s ms | %s ms | %s |\n' "$sc" "$dold" "$dnew" "$rold" "$rnew" "$ratio"
done
