#!/usr/bin/env bash
# Simulator benchmarks (the `sim` build profile: release with whole-program optimisation): wall time and peak RSS of
#   1. the 126-node, 12-hour epidemic city (sim/scenarios/city-126.toml: ~1,440 messages of 500 kB-1 MB,
#      250 kB/s radios and 5 MB buffers, six trams with a second 10 Mbit/s radio and 50 MB buffers),
#      replayed from a contact trace in the ONE's format that this script generates first;
#   2. the same with a denser trace (the same hosts in a 2 km x 1.5 km world: about 3.7 times the contacts);
#   3. the 10,000-node run (sim/scenarios/scale-10k.toml).
#
#   bench/sim.sh            # all three
#   bench/sim.sh --quick    # only the first
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --profile sim -q -p dtn-sim
bin=target/sim/dtn-sim
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

measure() { # label, then the command
    local label=$1
    shift
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/stdout" 2>"$work/stderr"
    read -r wall rss <"$work/time"
    printf '%-44s wall %6.2f s   peak RSS %6.1f MB   %s\n' "$label" "$wall" "$(echo "$rss / 1024" | bc -l)" \
        "$(grep -E '^(delivery_prob|overhead_ratio)' "$work/stdout" | tr '\n' ' ')"
}

city=sim/scenarios/city-126.toml
$bin trace "$city" --out "$work/city.trace" 2>/dev/null
echo "city-126 trace: $(grep -c ' up$' "$work/city.trace") contacts ($(wc -l <"$work/city.trace") events)"
measure "city-126, 12 h, epidemic, trace replay" $bin run "$city" --trace "$work/city.trace" --out "$work/out" -q

[[ "${1:-}" == "--quick" ]] && exit 0

sed 's/^world = .*/world = [2000, 1500]/' "$city" >"$work/dense.toml"
$bin trace "$work/dense.toml" --out "$work/dense.trace" 2>/dev/null
echo "dense trace: $(grep -c ' up$' "$work/dense.trace") contacts"
measure "city-126 dense, 12 h, epidemic, trace replay" $bin run "$city" --trace "$work/dense.trace" --out "$work/out" -q
measure "scale-10k, 1 h, spray-and-wait, mobility" $bin run sim/scenarios/scale-10k.toml --out "$work/out" -q
