#!/usr/bin/env bash
# Install dtn7-rs 0.21.0 (crate `dtn7`: dtnd, dtnsend, dtnrecv, dtnquery, ...)
# into a cache directory, for interoperability tests.
#
# Usage: scripts/install-dtn7.sh [DIR]
#   DIR defaults to $HOME/.cache/dtn-interop/dtn7-0.21.0
#
# Idempotent: does nothing if DIR/bin/dtnd exists and reports version 0.21.0.
# On success the last line of stdout is the bin directory (DIR/bin).
# On failure exits non-zero with a one-line reason on stderr.
# NOTE: the daemon is also called `dtnd` by other projects; always invoke it
# by its full path, e.g. "$(scripts/install-dtn7.sh | tail -n1)/dtnd".
set -u

VERSION=0.21.0
DIR=${1:-"$HOME/.cache/dtn-interop/dtn7-$VERSION"}
BIN="$DIR/bin"

fail() { echo "install-dtn7: $*" >&2; exit 1; }

installed_ok() {
    [ -x "$BIN/dtnd" ] || return 1
    "$BIN/dtnd" --version 2>/dev/null | grep -q "\b$VERSION\b"
}

if installed_ok; then
    echo "dtn7 $VERSION already installed in $DIR" >&2
    echo "$BIN"
    exit 0
fi

command -v cargo >/dev/null 2>&1 || fail "cargo not found in PATH"
mkdir -p "$DIR" 2>/dev/null || fail "cannot create $DIR"

LOG="$DIR/install.log"
: > "$LOG" || fail "cannot write $LOG"

echo "install-dtn7: building dtn7 $VERSION into $DIR (log: $LOG)" >&2
if ! cargo install dtn7 --version "$VERSION" --locked --root "$DIR" >>"$LOG" 2>&1; then
    echo "install-dtn7: --locked install failed, retrying without --locked" >&2
    cargo install dtn7 --version "$VERSION" --root "$DIR" >>"$LOG" 2>&1 \
        || fail "cargo install dtn7 $VERSION failed (see $LOG: $(grep -m1 '^error' "$LOG" || tail -n1 "$LOG"))"
fi

installed_ok || fail "installed $BIN/dtnd does not report version $VERSION"
echo "$BIN"
