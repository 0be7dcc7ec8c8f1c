#!/usr/bin/env bash
# The van's drain benchmark (apps/demo/examples/drain.rs): how fast a van empties a chain of weather stations,
# compared with copying the same bytes over a plain TCP stream into a synced file, in the same run.
#
#   setup       --stations N (default 3) real nodes in a chain (s1 - s2 - s3), LMDB stores, TCPCLv4 on
#               loopback, epidemic routing, and the van's node dialling the last station; all links down
#   fill        --gb G (default 1; 10^9 bytes of payload in total, split evenly over the stations) of bundles
#               for the van's collection endpoint: camera stills of --still-bytes (default 1,000,000 bytes of
#               incompressible image data in a camera-still batch) and one-minute IMU batches (60 readings,
#               about 900 bytes each) making up --sensor-share of the bytes (default 0.05), interleaved
#   gather      the chain's links come up until the last station holds every bundle, then go down again (not
#               measured: this is the state the stations' windows leave behind). --spread skips it: each
#               station holds only its own data and the chain relays during the measurement
#   measure     the van's link comes up. The van's collector (dtn-collector, as in `dtn demo weather`) takes
#               deliveries 256 at a time, writes each still as a file (write, sync_data, rename) and the
#               sensor rows to CSV, syncs data files, directories and its manifest, then acknowledges.
#               "in its archive": until the collector has synced the last one — the headline figure. The van's
#               node delivers directly (bundles go to the collector unstored, only tombstones are written);
#               "in its store" (link-up until the node stored the last bundle) is shown only if it stored
#               them all first (dtnd's --direct-wait-ms 0 behaviour)
#   baseline    the same payloads, length-prefixed, over one loopback TCP stream into one file on the same
#               disk (the scratch directory), sync_data after every payload of 64 KiB or more (every still)
#               and once per MiB of smaller ones, and at the end; timed from connect to the last sync
#   MB/s        payload bytes (10^6) per second; ratio = MB/s / baseline MB/s
#   target      van archive drain >= 0.6 x baseline
#
# Scratch data (stores, archive, baseline file; about 5 x G GB at the peak) goes to a temporary directory
# under --dir (default: target/ in the repository) and is removed at the end. Wall-clock figures: on a busy
# machine, run more than once. About 1 to 2 minutes for 1 GB.
#
#   bench/drain.sh                    # 1 GB over 3 stations
#   bench/drain.sh --gb 4 --dir /mnt/data
#   bench/drain.sh --gb 1 --spread    # the chain relays while the van drains
#   bench/drain.sh --still-bytes 250000 --sensor-share 0.2
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p dtn-demo --example drain
dir=target
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ ${args[i]} == --dir ]]; then dir=""; fi
done
if [[ -n $dir ]]; then args+=(--dir "$dir"); fi
exec target/release/examples/drain "${args[@]}"
