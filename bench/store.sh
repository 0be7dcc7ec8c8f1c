#!/usr/bin/env bash
# Runs the store benchmark (dtn-core/store-lmdb/examples/store_bench.rs) and prints the LMDB store's figures
# against the project's targets, one line per figure with PASS or FAIL. Every write measured is durable.
#
#   ingest-1mb  1 MB bundles, one batch each: MB/s of the store against a plain write + sync_data per bundle
#               to one file on the same file system.                                target: ratio >= 0.7
#               Counted: one writer staging through stage() and pipelining (4 in flight, acknowledged
#               on the durability callback, as a convergence layer does), and 4 writers each waiting
#               for every commit. Shown for information: one writer waiting for every commit, which
#               pays every sync in sequence. Five rounds in rotating order, each from a flushed file
#               system; medians reported.
#   small       200-byte bundles from 4 writers pipelining single-bundle batches (submit_with, 512 in
#               flight each), as a convergence layer receiving many bundles does.    target: >= 50,000/s
#   million     1M 200-byte bundles from 100 sources, then the store is closed and reopened:
#               anonymous RSS after reopen                                          target: < 100 MB
#               time to reopen                                                      target: < 1 s
#               summary() + to_bytes() + difference(peer), warm, median             target: < 50 ms
#   all         the three (the default); under a minute where the disk syncs in about a millisecond
#   churn       not in `all`: a sending node's cycle over 200-byte bundles, inserted in batches of 1,000 and
#               each removed with a "forwarded" tombstone once durable, in batches of 100; reports the
#               process's CPU time per bundle (no target; compare builds with it)
#
#   bench/store.sh                               # all
#   bench/store.sh small --count 100000 --writers 8
#   bench/store.sh churn
#   bench/store.sh ingest-1mb --dir /mnt/data    # scratch directory on another file system
#
# Scratch data goes to a temporary directory under --dir (default: the repository root) and is removed at
# the end. Wall-clock figures: on a shared or busy machine, run more than once.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -eq 0 ]]; then
    set -- all
fi
exec cargo run --release -q -p dtn-store-lmdb --example store_bench -- "$@"
