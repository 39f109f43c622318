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
tmp="$(mktemp -d)"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
    rm -rf "$tmp"
}
trap stop_server EXIT INT TERM

# A fixed admin key (MEMSPACE_ADMIN_KEY needs 24+ characters) for a throwaway database.
key="ts-client-ci-admin-key-0123456789abcdef"
port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
url="http://127.0.0.1:$port"

MEMSPACE_ADMIN_KEY="$key" "$bin" serve --bind "127.0.0.1:$port" \
    --database-url "sqlite://$tmp/db.sqlite?mode=rwc" >"$tmp/server.log" 2>&1 &
server_pid=$!

healthy=""
for _ in $(seq 1 150); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "ts-client ci: the server exited during startup; its log:" >&2
        cat "$tmp/server.log" >&2
        exit 1
    fi
    if node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$url/healthz"; then
        healthy=1
        break
    fi
    sleep 0.2
done
if [ -z "$healthy" ]; then
    echo "ts-client ci: $url/healthz did not answer within 30 s; server log:" >&2
    cat "$tmp/server.log" >&2
    exit 1
fi

if ! MEMSPACE_URL="$url" MEMSPACE_KEY="$key" npm run live; then
    echo "ts-client ci: live run failed; server log (last 50 lines):" >&2
    tail -n 50 "$tmp/server.log" >&2
    exit 1
fi
