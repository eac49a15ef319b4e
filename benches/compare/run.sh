#!/usr/bin/env bash
# The side-by-side benchmark: edge, nginx proxy_cache, Varnish, a bare hyper server and
# a replay of edge's answers on this machine. Installs nginx, varnish and wrk with
# apt-get when missing, builds edge, the ceiling and replay in release mode, then hands
# over to run.py (see --help).
#
#   benches/compare/run.sh            # the measured run: 3 rounds x 10 s, 64 connections
#   benches/compare/run.sh --smoke    # 1 round x 2 s: does the harness work end to end?
#
# Results: target/compare/results.json; logs and raw wrk output: target/compare/work/logs.
# run.py stops everything it started on any exit (it owns the processes, not this shell).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v varnishd >/dev/null || [ -x /usr/sbin/varnishd ] || need+=(varnish)
if [ "${#need[@]}" -gt 0 ] && [[ " $* " != *" --no-install "* ]]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing: ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    echo "[compare] installing ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
    # Debian starts the packaged services on install; the benchmark runs its own.
    for s in nginx varnish; do service "$s" stop >/dev/null 2>&1 || true; done
fi

exec python3 "$here/run.py" "$@"
