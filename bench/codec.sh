#!/usr/bin/env bash
# Runs the codec benchmark (ours and bp7, the codec of dtn7-rs, on the same bytes in the same run) and prints
# throughput and the ratios the project's targets are stated in.
#
#   bench/codec.sh                 # criterion wall-clock run (~2 minutes), then the summary
#   bench/codec.sh --summary       # summary of the last run only
#   bench/codec.sh --instructions  # callgrind instruction counts per small-bundle decode: repeatable on a
#                                  # busy machine, where wall-clock numbers are not
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--instructions" ]]; then
    command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
    cargo build --release -q -p dtn-core --example decode_loop
    n=100000
    count() {
        valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/decode_loop "$n" "$@" 2>&1 \
            | awk '/refs:/ { gsub(",", "", $NF); print $NF }'
    }
    ours=$(count ours)
    theirs=$(count bp7)
    python3 - "$ours" "$theirs" "$n" <<'PY'
import sys
ours, theirs, n = (int(x) for x in sys.argv[1:])
print(f"instructions per decode+validate of a 100-byte-payload bundle: ours {ours / n:.0f}, bp7 {theirs / n:.0f}, "
      f"ratio {theirs / ours:.2f}x")
PY
    exit 0
fi

if [[ "${1:-}" != "--summary" ]]; then
    cargo bench -p dtn-core --bench codec -- --noplot
fi

python3 - <<'PY'
import json, os
root = "target/criterion"
def mean_ns(group, name, size):
    p = os.path.join(root, group, name, str(size), "new", "estimates.json")
    return json.load(open(p))["mean"]["point_estimate"]

small, large = 100, 1 << 20
large_bytes = None
for line in open(os.path.join(root, "decode_validate_large_1MB", "ours", str(large), "new", "benchmark.json")):
    large_bytes = json.loads(line)["throughput"]["Bytes"]

rows = []
d_ours = mean_ns("decode_validate_small_100B", "ours", small)
d_stream = mean_ns("decode_validate_small_100B", "ours_streaming", small)
d_bp7 = mean_ns("decode_validate_small_100B", "bp7", small)
print("decode + validate, 100-byte payload:")
print(f"  ours            {1e3 / d_ours:6.2f} M bundles/s  ({d_ours:7.1f} ns)   target >= 2.00 M/s: {'PASS' if 1e3 / d_ours >= 2 else 'FAIL'}")
print(f"  ours, streaming {1e3 / d_stream:6.2f} M bundles/s  ({d_stream:7.1f} ns)")
print(f"  bp7             {1e3 / d_bp7:6.2f} M bundles/s  ({d_bp7:7.1f} ns)")
print(f"  ratio ours/bp7  {d_bp7 / d_ours:6.2f}x   target >= 3x: {'PASS' if d_bp7 / d_ours >= 3 else 'FAIL'}")
L_ours = mean_ns("decode_validate_large_1MB", "ours", large)
L_stream = mean_ns("decode_validate_large_1MB", "ours_streaming", large)
L_bp7 = mean_ns("decode_validate_large_1MB", "bp7", large)
gbs = lambda ns: large_bytes / ns  # bytes per ns == GB/s
print("decode + validate, 1 MiB payload (CRC-32C over everything):")
print(f"  ours            {gbs(L_ours):6.2f} GB/s   target >= 1 GB/s: {'PASS' if gbs(L_ours) >= 1 else 'FAIL'}")
print(f"  ours, streaming {gbs(L_stream):6.2f} GB/s")
print(f"  bp7             {gbs(L_bp7):6.2f} GB/s   ratio {L_bp7 / L_ours:.2f}x")
for size, label in ((small, "100-byte payload"), (large, "1 MiB payload")):
    g = f"encode_{'small_100B' if size == small else 'large_1MB'}"
    r = mean_ns(g, "ours_reencode", size)
    b = mean_ns(g, "ours_build_encode", size)
    s = mean_ns(g, "ours_stream_encode", size)
    p = mean_ns(g, "bp7", size)
    print(f"encode, {label}: ours re-encode {r:.0f} ns, ours build+encode {b:.0f} ns, ours streaming {s:.0f} ns, bp7 {p:.0f} ns")
PY
