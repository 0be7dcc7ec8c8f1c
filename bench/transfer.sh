#!/usr/bin/env bash
# Runs the transfer benchmark (apps/dtnd/examples/transfer_bench.rs): two of our nodes and two dtn7-rs 0.21.0
# nodes on loopback in the same run, each pair A -> B over TCPCLv4, and a plain write + sync_data of the same
# bytes on the same disk. Prints one row per payload size and system, then one line per target, PASS or FAIL.
#
#   sizes       100 B x 100,000 bundles, 64 KB x 5,000, 1 MB x 500 (KB = 1024 B, MB = 1024 KB); every size
#               and system on two fresh nodes, after one warm-up bundle
#   bundles/s   from the first submit at A to the last delivery at B; Mbit/s: payload bits, 10^6 per second
#   ours        4 senders: POST /send/batch of 1,000 payloads, at most 4 MiB of payload a request (so 64 per
#               request at 64 KB), for payloads up to 64 KiB; else (1 MB) one POST /send each;
#               both answer once the bundles are durable. Delivered = read by the application from B's
#               WebSocket (GET /ws, 2 readers); column "counted s": when B's /stats counted the last one.
#   dtn7-rs     4 senders, one POST /send each (it has no batch call). Delivered = B's /status/info delivered
#               counter: handed to the endpoint's in-memory queue, not read by anyone. --dtn7-store picks its
#               store (default mem: nothing durable); per-bundle logging off.
#   disk        the same bytes written to one file in pieces of the payload size; sync_data after every piece
#               of 1 MiB or more, and once per MiB written (and at the end) for smaller pieces
#   submit s    until A had acknowledged the last submit; cpu s: CPU seconds of A, B and the benchmark
#
#   targets     1 MB     ours Mbit/s >= 0.6 x disk write + sync_data
#               64 KB    ours >= 3,000 bundles/s
#               100 B    ours >= 50,000 bundles/s (batch submit, group commit)
#               each     ours >= 10 x dtn7-rs bundles/s (the line names dtn7's store)
#
# A timed run stops after --timeout seconds (default 60), or when nothing arrives for 10 s after the last
# submit, and then reports the rate up to its last delivery as delivered/count; a stopped run of ours fails
# its targets. About 3 to 4 minutes on 2 cores.
#
#   bench/transfer.sh                                    # all sizes, ours and dtn7-rs
#   bench/transfer.sh --sizes 100 --counts 200000 --skip-dtn7
#   bench/transfer.sh --dtn7-store sled --dir /mnt/data  # dtn7 on a persistent store; scratch elsewhere
#
# dtn7-rs comes from $DTN7_BIN, else ~/.cache/dtn-interop/dtn7-0.21.0/bin (scripts/install-dtn7.sh installs
# it); without it only ours and the disk are measured. Scratch data goes to a temporary directory under --dir
# (default: the repository root) and is removed at the end. Wall-clock figures: on a busy machine, run more
# than once.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p dtnd
exec cargo run --release -q -p dtnd --example transfer_bench -- "$@"
