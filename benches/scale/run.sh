#!/usr/bin/env bash
# Hit throughput and RSS with 1,000,000 cached objects beside 1,000 (see run.py).
# Installs wrk when missing (Debian).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v wrk >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
exec python3 benches/scale/run.py "$@"
