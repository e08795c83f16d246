#!/usr/bin/env bash
# Sets ShadowMover up on a fresh Debian machine and runs a first backup and restore:
# installs the system libraries, builds a release binary, creates a local chunk store (the embedded
# default: $SHADOWMOVER_STORE, else ~/.local/share/shadowmover/store), backs up a directory
# (default: this checkout's Sources/ and docs/), restores it into a temporary directory and compares.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh --test   # --test: Ceph too, so that `swift test` runs the S3 tests

swift build -c release
BIN="$PWD/.build/release/shadowmover"
tools/install-completions.sh "$BIN"
STORE="${SHADOWMOVER_STORE:-${XDG_DATA_HOME:-$HOME/.local/share}/shadowmover/store}"
mkdir -p "$(dirname "$STORE")"
# The store is encrypted; its password is random, in a file next to it that only this user can read.
PASSWORD_FILE="${SHADOWMOVER_PASSWORD_FILE:-$STORE.password}"
if [ ! -f "$STORE/config" ]; then
    if [ ! -f "$PASSWORD_FILE" ]; then
        (umask 077 && head -c 32 /dev/urandom | base64 > "$PASSWORD_FILE")
        echo "made a random password for the store in $PASSWORD_FILE: keep it — without it the backups cannot be read"
    fi
    "$BIN" init --store "$STORE" --password-file "$PASSWORD_FILE"
fi
export SHADOWMOVER_PASSWORD_FILE="$PASSWORD_FILE"

SOURCES=("$@")
if [ ${#SOURCES[@]} -eq 0 ]; then SOURCES=("$PWD/Sources" "$PWD/docs"); fi

"$BIN" backup --store "$STORE" "${SOURCES[@]}"
"$BIN" snapshots --store "$STORE"

TARGET="$(mktemp -d "${TMPDIR:-/tmp}/shadowmover-restore.XXXXXX")"
"$BIN" restore --store "$STORE" latest --target "$TARGET"
for s in "${SOURCES[@]}"; do
    abs="$(cd "$s" && pwd)"
    diff -r "$abs" "$TARGET$abs"
done
echo "restore verified: $TARGET matches the backed-up paths"
echo "binary: $BIN   store: $STORE   password file: $PASSWORD_FILE"
