#!/usr/bin/env bash
# CI for the TypeScript client: pinned install (npm ci), codegen + `tsc --noEmit --strict`, then
# the client's live run (create/list/subscribe/search) against a Memspace started here on a free
# port with a temporary SQLite database.
#
#   examples/ts-client/ci.sh [SERVER_BINARY]     # default: target/debug/memspace
#
# A relative SERVER_BINARY is taken from the repository root; the script runs from anywhere.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-target/debug/memspace}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
if [ ! -x "$bin" ]; then
    echo "ts-client ci: no server binary at $bin (cargo build --bin memspace)" >&2
    exit 1
fi

step() { printf '\n==> ts-client: %s\n' "$*"; }
cd "$here"

step "npm ci (versions pinned in package-lock.json)"
npm ci --no-audit --no-fund

step "npm run check (graphql-codegen client preset + tsc --noEmit --strict)"
npm run check

step "live run against $bin"
"$root/scripts/with-server" --bin "$bin" -- npm run live
