#!/usr/bin/env bash
# Compression benchmark (issue 5): edge's br, zstd and gzip variants against `gzip -6`
# (what nginx sends), `brotli -q 11` and `zstd -19`, over the minified builds of six
# front-end packages fetched from npm. Prints a Markdown table and writes
# target/compression-bench.json.
#
#   benches/compression/run.sh            # fetch the corpus into a temp dir, run, clean up
#   CORPUS_DIR=/tmp/corpus benches/compression/run.sh   # keep (and reuse) the corpus
#
# Needs npm and network access to the npm registry; installs the brotli and zstd
# command-line tools with apt-get when they are missing. The corpus is never committed.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

# Pinned, so that results compare across runs.
packages=(react-dom@18.3.1 bootstrap@5.3.3 jquery@3.7.1 lodash@4.17.21 three@0.160.0 d3@7.9.0)
# The file of each package a site serves: its main minified build.
files=(
    react-dom/umd/react-dom.production.min.js
    bootstrap/dist/css/bootstrap.min.css
    bootstrap/dist/js/bootstrap.bundle.min.js
    jquery/dist/jquery.min.js
    lodash/lodash.min.js
    three/build/three.module.min.js
    d3/dist/d3.min.js
)

missing=()
for tool in gzip brotli zstd; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${missing[*]} with apt-get" >&2
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -n "${CORPUS_DIR:-}" ]; then
    corpus="$CORPUS_DIR"
    mkdir -p "$corpus"
else
    corpus="$(mktemp -d)"
    trap 'rm -rf "$corpus"' EXIT
fi

for spec in "${packages[@]}"; do
    name="${spec%@*}"
    version="${spec##*@}"
    dir="$corpus/$name"
    if [ -f "$dir/.version" ] && [ "$(cat "$dir/.version")" = "$version" ]; then
        continue
    fi
    echo "fetching $spec" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    tarball="$(cd "$corpus" && npm pack --silent "$spec" | tail -n 1)"
    tar -xzf "$corpus/$tarball" -C "$dir" --strip-components=1
    rm -f "$corpus/$tarball"
    echo "$version" >"$dir/.version"
done

paths=()
for file in "${files[@]}"; do
    [ -f "$corpus/$file" ] || { echo "missing $file in the corpus" >&2; exit 1; }
    paths+=("$corpus/$file")
done

cargo bench --quiet --bench compression -- \
    --json "$root/target/compression-bench.json" "${paths[@]}"
