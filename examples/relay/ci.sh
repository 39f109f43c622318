#!/usr/bin/env bash
# CI for the Relay example: pinned install (npm ci), relay-compiler over schema.graphql (it
# refuses `@refetchable` on a type that is not a Node) + `tsc --noEmit --strict`, then the
# generated refetch and pagination operations run against a Memspace started here.
#
#   examples/relay/ci.sh [SERVER_BINARY]     # default: target/debug/memspace
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-target/debug/memspace}"
step() { printf '\n==> relay: %s\n' "$*"; }
cd "$here"

step "npm ci (versions pinned in package-lock.json)"
npm ci --no-audit --no-fund

step "npm run check (relay-compiler + tsc --noEmit --strict)"
npm run check

step "live run against $bin"
"$root/scripts/with-server" --bin "$bin" -- npm run live
