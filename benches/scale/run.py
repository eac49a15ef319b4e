#!/usr/bin/env python3
"""Hit throughput and memory of edge with many cached objects, beside few.

Starts the synthetic origin (examples/scale_origin.rs: /o/<n>, --size bytes each) and
two memory-only edges on one core each run: one holding --small objects (1,000), one
holding --objects (1,000,000). Fills both (every object fetched once, then requested
once more so its response headers are built, as a hit builds them), records each
edge's RSS and its memory tier's own accounting from /stats, then runs wrk with
zipf-distributed requests (exponent --zipf) over each edge's objects in interleaved
rounds (small, large, small, large, ...) and prints the medians:

    hit req/s with --objects ÷ hit req/s with --small   (target: within 15%)
    RSS with --objects ÷ (memory budget + 64 MiB)        (target: at most 1)

Every address is 127.0.0.1; everything started is stopped on exit. Results go to
target/scale/results.json.

    benches/scale/run.sh                       # 1,000,000 objects, 3 rounds x 10 s
    benches/scale/run.sh --objects 100000 --rounds 1 --duration 3   # a quick look
"""

import argparse
import bisect
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "target" / "scale"

FILL_LUA = """
local n = tonumber(os.getenv("SCALE_N"))
local i = tonumber(os.getenv("SCALE_FROM") or "0")
request = function()
  i = i + 1
  if i > n then i = 1 end
  return wrk.format("GET", "/o/" .. i)
end
"""

ZIPF_LUA = """
local paths = {}
for line in io.lines(os.getenv("SCALE_SAMPLES")) do
  paths[#paths + 1] = "/o/" .. line
end
local i = 0
request = function()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i])
end
"""

EDGE_TOML = """[server]
listen = "127.0.0.1:{port}"
workers = 1
shutdown_grace = "1s"
[admin]
listen = "127.0.0.1:{admin}"
[cache]
memory = "{memory}"
memory_object_max = "1MiB"
disk = "0"
dir = "{work}/cache-{name}"
[origin]
max_idle_per_host = 256
[[site]]
name = "scale"
hosts = ["*"]
origin = "http://127.0.0.1:{origin}"
"""


def log(message):
    print(f"[scale] {message}", file=sys.stderr, flush=True)


def parse_size(text):
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def rss_bytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def stats(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=10) as r:
        return json.load(r)


def memory_tier(admin):
    tiers = stats(admin).get("tiers", {})
    return tiers.get("memory", {})


def wrk(args, lua, env, url, duration, connections=64, cpu=None):
    script = OUT / f"{lua[0]}.lua"
    script.write_text(lua[1])
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(script), url]
    if cpu is not None and not args.no_pin:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"wrk failed: {out.stderr}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out.stdout)
    errors = re.search(r"Socket errors:.*", out.stdout)
    return rps, int(non2xx.group(1)) if non2xx else 0, errors.group(0) if errors else ""


def zipf_samples(n, s, count, seed):
    """`count` object numbers in 1..n drawn with P(k) proportional to 1/k^s."""
    cumulative = []
    total = 0.0
    for k in range(1, n + 1):
        total += 1.0 / (k**s)
        cumulative.append(total)
    rng = random.Random(seed)
    return [bisect.bisect_left(cumulative, rng.random() * total) + 1 for _ in range(count)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", type=int, default=1_000_000)
    p.add_argument("--small", type=int, default=1_000)
    p.add_argument("--size", type=int, default=512, help="body bytes per object")
    p.add_argument("--memory", default="2GiB", help="each edge's cache.memory budget")
    p.add_argument("--zipf", type=float, default=1.0, help="zipf exponent")
    p.add_argument("--samples", type=int, default=500_000, help="zipf paths per wrk run (looped)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--port-base", type=int, default=18190)
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--edge-bin", help="an edge binary to run instead of target/release/edge")
    p.add_argument("--no-pin", action="store_true")
    args = p.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    work = OUT / "work"
    work.mkdir(exist_ok=True)
    if not args.no_build:
        log("building edge and the scale origin (release)")
        subprocess.run(
            ["cargo", "build", "--release", "--locked", "--bin", "edge", "--example", "scale_origin"],
            cwd=ROOT,
            check=True,
        )
    release = ROOT / "target" / "release"
    procs = []

    def stop_all(*_):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        base = args.port_base
        origin_port = base
        procs.append(
            subprocess.Popen(
                [release / "examples" / "scale_origin", "--listen", f"127.0.0.1:{origin_port}", "--size", str(args.size)],
                stderr=open(work / "origin.log", "w"),
            )
        )
        edges = {}
        for i, (name, n) in enumerate([("small", args.small), ("large", args.objects)]):
            port, admin = base + 1 + 2 * i, base + 2 + 2 * i
            config = work / f"edge-{name}.toml"
            config.write_text(
                EDGE_TOML.format(port=port, admin=admin, memory=args.memory, work=work, name=name, origin=origin_port)
            )
            cmd = [args.edge_bin or str(release / "edge"), "serve", "--config", str(config)]
            if not args.no_pin:
                cmd = ["taskset", "-c", "0"] + cmd
            proc = subprocess.Popen(cmd, env={**os.environ, "RUST_LOG": "warn"}, stderr=open(work / f"edge-{name}.log", "w"))
            procs.append(proc)
            edges[name] = {"n": n, "port": port, "admin": admin, "proc": proc}
        deadline = time.time() + 30
        for edge in edges.values():
            while True:
                try:
                    stats(edge["admin"])
                    break
                except OSError:
                    if time.time() > deadline:
                        raise SystemExit("edge did not start; see target/scale/work/")
                    time.sleep(0.2)

        for name, edge in edges.items():
            n = edge["n"]
            url = f"http://127.0.0.1:{edge['port']}"
            started = time.time()
            # Every object once (misses), then once more (hits that build the headers).
            for pass_name in ("fill", "hit every object once"):
                requested = 0
                while requested < n:
                    duration = max(1, min(30, (n - requested) // 20_000 + 1))
                    env = {"SCALE_N": str(n), "SCALE_FROM": str(requested)}
                    rps, non2xx, errors = wrk(args, ("fill", FILL_LUA), env, url, duration, cpu=1)
                    if non2xx or errors:
                        raise SystemExit(f"{name} {pass_name}: {non2xx} non-2xx responses {errors}")
                    requested += int(rps * duration)
                entries = memory_tier(edge["admin"]).get("entries", 0)
                rss = rss_bytes(edge["proc"].pid)
                edge[f"rss after {pass_name}"] = rss
                log(f"{name}: {pass_name}: {entries:,} entries in memory after "
                    f"{time.time() - started:.0f} s, RSS {rss / (1 << 20):,.0f} MiB")
            edge["entries"] = memory_tier(edge["admin"]).get("entries", 0)
            edge["accounted_bytes"] = memory_tier(edge["admin"]).get("charged", 0)
            edge["body_bytes"] = memory_tier(edge["admin"]).get("bytes", 0)
            edge["rss_after_fill"] = rss_bytes(edge["proc"].pid)
            samples = work / f"zipf-{name}.txt"
            samples.write_text("\n".join(map(str, zipf_samples(n, args.zipf, args.samples, 7))) + "\n")
            edge["samples"] = samples

        rounds = {name: [] for name in edges}
        for r in range(args.rounds):
            for name, edge in edges.items():
                env = {"SCALE_SAMPLES": str(edge["samples"])}
                url = f"http://127.0.0.1:{edge['port']}"
                rps, non2xx, errors = wrk(args, ("zipf", ZIPF_LUA), env, url, args.duration, cpu=1)
                rounds[name].append({"rps": rps, "non2xx": non2xx, "errors": errors})
                log(f"round {r + 1} {name:5} {edge['n']:>9,} objects: {rps:>10,.0f} req/s")
        for name, edge in edges.items():
            edge["rss_after_runs"] = rss_bytes(edge["proc"].pid)
            edge["misses"] = stats(edge["admin"]).get("requests", {}).get("miss", None)

        budget = parse_size(args.memory)
        small, large = edges["small"], edges["large"]
        small_rps = statistics.median(x["rps"] for x in rounds["small"])
        large_rps = statistics.median(x["rps"] for x in rounds["large"])
        ratio = large_rps / small_rps
        rss = max(large["rss_after_fill"], large["rss_after_runs"])
        bound = budget + (64 << 20)
        mib = lambda b: f"{b / (1 << 20):,.0f} MiB"
        print()
        print(f"zipf s={args.zipf}, {args.size}-byte objects, memory budget {args.memory}, "
              f"median of {args.rounds} interleaved round(s) x {args.duration} s, 64 connections")
        print(f"  {'objects':>10} {'in memory':>10} {'hit req/s':>10} {'RSS':>10} {'charged':>10} {'RSS/entry':>10}")
        for name, rps in (("small", small_rps), ("large", large_rps)):
            e = edges[name]
            per = (max(e["rss_after_fill"], e["rss_after_runs"]) / max(e["entries"], 1))
            print(f"  {e['n']:>10,} {e['entries']:>10,} {rps:>10,.0f} "
                  f"{mib(max(e['rss_after_fill'], e['rss_after_runs'])):>10} {mib(e['accounted_bytes']):>10} {per:>9,.0f}B")
        print(f"    target large ÷ small req/s ≥ 0.85: {ratio:.3f} — {'met' if ratio >= 0.85 else 'NOT met'}")
        print(f"    target RSS ≤ budget + 64 MiB: {mib(rss)} vs {mib(bound)} — {'met' if rss <= bound else 'NOT met'}")
        result = {
            "objects": args.objects, "small": args.small, "size": args.size, "memory": args.memory,
            "zipf": args.zipf, "rounds": rounds, "ratio": ratio, "rss_bound": bound,
            "edges": {k: {x: v[x] for x in v if x not in ("proc", "samples")}
                      for k, v in edges.items()},
        }
        (OUT / "results.json").write_text(json.dumps(result, indent=2))
        print(f"\nresults: {OUT / 'results.json'}")
    finally:
        stop_all()


if __name__ == "__main__":
    main()
