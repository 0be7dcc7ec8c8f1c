#!/usr/bin/env bash
# Throughput of 1 MB bundles through TCPCL over the WireGuard tunnel (boringtun + the userspace TCP/IP
# stack) on loopback, with TCPCL over plain loopback TCP in the same run for the ratio, and the bytes the
# tunnel puts on the UDP socket per bundle byte (both directions: data, TCP acknowledgements, TCPCL
# acknowledgements, keepalives, handshakes).                                       target: >= 300 Mbit/s
#
#   bench/wg.sh                                   # 200 bundles of 1 MB, 3 rounds, median
#   bench/wg.sh --bundles 50 --size 100000 --rounds 5 --mtu 1420
#
# Wall-clock figures: on a shared or busy machine, run more than once.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -q -p dtn-wg --example wg_bench -- "$@"
