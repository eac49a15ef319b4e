#!/usr/bin/env python3
"""edge beside nginx proxy_cache, Varnish and a bare hyper server, on one machine.

Generates an asset set, starts an origin (nginx serving the files) and, in front of it,
edge, nginx proxy_cache and Varnish, plus the hyper "ceiling" (examples/ceiling.rs)
serving the same bytes from memory and "replay" (examples/replay.rs) writing edge's own
answers and doing nothing else: the most this client can measure. Warms every cache,
then runs wrk in interleaved rounds (edge, nginx, varnish, ceiling, replay, edge, ...)
for each test, with each
server pinned to CPU 0 and wrk to CPU 1 when the machine has two cores. Prints a table
of medians (req/s, p50, p99, server CPU µs per request, bytes per response) with edge's
ratio to each peer, and writes everything to target/compare/results.json.

Every address is 127.0.0.1. Everything started is stopped on exit, whatever the exit.

    benches/compare/run.sh                 # 3 rounds x 10 s per test and server
    benches/compare/run.sh --smoke         # 1 round x 2 s: proves the harness works
    benches/compare/run.sh --help          # every option
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import gzip
import http.client
import json
import os
import platform
import pwd
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LOOPBACK = "127.0.0.1"

SERVERS = {
    "edge": "edge (release build, memory + disk tier)",
    "nginx": "nginx proxy_cache (1 worker)",
    "varnish": "Varnish (malloc storage, 1 thread pool)",
    "ceiling": "bare hyper from memory (examples/ceiling.rs)",
    "replay": "edge's own answers replayed, no other work (examples/replay.rs): the client's limit",
}

# name → path, request headers, what it checks, the target for edge
TESTS = {
    "hit_1k": {
        "path": "/css/site.css",
        "headers": {},
        "expect_status": 200,
        "what": "1 KB CSS, cache hit, identity",
        "targets": [("nginx", 1.8), ("ceiling", 0.8)],
    },
    "js_br_gzip": {
        "path": "/js/app.js",
        "headers": {"Accept-Encoding": "br, gzip"},
        "expect_status": 200,
        "what": "100 KB JS to a client accepting br and gzip (stored compressed)",
        "targets": [("nginx", 1.3)],
        "fewer_bytes_than": "nginx",
    },
    "not_modified_304": {
        "path": "/css/site.css",
        "headers": {"If-None-Match": "@ETAG@"},
        "expect_status": 304,
        "what": "304 to If-None-Match with the server's own ETag",
        "targets": [("nginx", 1.5)],
    },
    "big_5m": {
        "path": "/files/big.bin",
        "headers": {},
        "expect_status": 200,
        "what": "5 MiB object (edge: from the disk tier)",
        "targets": [("nginx", 1.0)],
    },
    "img_200k": {
        "path": "/img/hero.jpg",
        "headers": {},
        "expect_status": 200,
        "what": "200 KB image, cache hit, identity (not in the default set)",
        "targets": [],
    },
}
DEFAULT_TESTS = ["hit_1k", "js_br_gzip", "not_modified_304", "big_5m"]

# ---------------------------------------------------------------------------- processes

STARTED: list[tuple[str, subprocess.Popen]] = []


def log(message: str) -> None:
    print(f"[compare] {message}", file=sys.stderr, flush=True)


def stop_all() -> None:
    """Stops every process this run started, newest first: TERM, then KILL."""
    while STARTED:
        name, proc = STARTED.pop()
        if proc.poll() is not None:
            continue
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log(f"{name} (pid {proc.pid}) did not stop on SIGTERM; killing it")
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def start(name: str, argv: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """Starts a long-running process in its own session, so that stopping it stops its
    children (nginx workers, the Varnish child) too."""
    out = open(log_path, "ab")
    proc = subprocess.Popen(
        argv,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    STARTED.append((name, proc))
    return proc


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
            return True
        except OSError:
            return False


def wait_ready(name: str, proc: subprocess.Popen, port: int, path: str, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            status, _, _ = fetch(port, path)
            if status < 500:
                return
            last = f"status {status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
    raise SystemExit(f"{name} did not become ready on 127.0.0.1:{port} ({last}); log:\n{tail}")


def fetch(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def wire_answer(port: int, path: str, headers: dict) -> bytes:
    """One response exactly as sent on the wire (status line, header block and body) to
    the request wrk sends. wrk's own byte count also holds the partial responses in
    flight when a run stops, which for large objects is far off."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {LOOPBACK}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection((LOOPBACK, port), timeout=30) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        status = int(head.split(b" ", 2)[1])
        if status == 304 or status < 200:
            length = 0
        elif b"content-length" in fields:
            length = int(fields[b"content-length"])
        else:
            raise SystemExit(f"127.0.0.1:{port}{path} answered without Content-Length; cannot size it")
        body = [rest]
        received = len(rest)
        while received < length:
            chunk = s.recv(1 << 20)
            if not chunk:
                raise SystemExit(f"127.0.0.1:{port}{path}: the connection closed {length - received} bytes short")
            body.append(chunk)
            received += len(chunk)
        return (head + b"\r\n\r\n" + b"".join(body))[: len(head) + 4 + length]


def cpu_ticks(root_pid: int) -> int:
    """utime + stime of `root_pid` and all its descendants (every thread included)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry)
        parents[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])
    total = 0
    for pid, t in ticks.items():
        p = pid
        while p > 1:
            if p == root_pid:
                total += t
                break
            p = parents.get(p, 0)
    return total


# ---------------------------------------------------------------------------- assets


def js_like(rng: random.Random, size: int) -> bytes:
    """Minified-JavaScript-like text that compresses about as well as real bundles."""
    words = ["function", "return", "const", "let", "var", "if", "else", "for", "while", "this",
             "new", "null", "undefined", "true", "false", "typeof", "document", "window",
             "prototype", "length", "push", "map", "filter", "reduce", "Promise", "then"]
    idents = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$")
                      for _ in range(rng.randint(1, 9))) for _ in range(1500)]
    punct = ["(", ")", "{", "}", ";", ",", ".", "=", "===", "!==", "&&", "||", "+", "?", ":", "[", "]", "=>"]
    out: list[str] = []
    n = 0
    while n < size:
        r = rng.random()
        if r < 0.30:
            tok = rng.choice(idents)
        elif r < 0.45:
            tok = rng.choice(words) + " "
        elif r < 0.85:
            tok = rng.choice(punct)
        elif r < 0.93:
            tok = str(rng.randint(0, 99999))
        else:
            tok = '"' + rng.choice(idents) + "-" + rng.choice(idents) + '"'
        out.append(tok)
        n += len(tok)
    return "".join(out).encode()[:size]


def css_like(rng: random.Random, size: int) -> bytes:
    props = ["margin", "padding", "color", "background", "display", "font-size", "border", "width"]
    values = ["0", "auto", "1rem", "#fff", "#1a2b3c", "flex", "none", "100%", "2px solid #ccc"]
    out = []
    n = 0
    while n < size:
        rule = ".c%x{%s}" % (rng.randint(0, 0xFFFF), ";".join(
            f"{rng.choice(props)}:{rng.choice(values)}" for _ in range(rng.randint(1, 4))))
        out.append(rule)
        n += len(rule)
    return "".join(out).encode()[:size]


def make_assets(root: Path) -> dict[str, int]:
    rng = random.Random(7)
    files = {
        "css/site.css": css_like(rng, 1024),
        "js/app.js": js_like(rng, 100 * 1024),
        "img/hero.jpg": rng.randbytes(200 * 1024),
        "files/big.bin": rng.randbytes(5 * 1024 * 1024),
    }
    # A fixed modification time keeps nginx's ETag and Last-Modified the same run to run.
    mtime = 1_748_944_800
    sizes = {}
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
        sizes["/" + rel] = len(data)
    stored = root / "js/app.js.gz"
    stored.write_bytes(gzip.compress(files["js/app.js"], compresslevel=9, mtime=0))
    os.utime(stored, (mtime, mtime))
    sizes["/js/app.js.gz"] = stored.stat().st_size
    return sizes


# ---------------------------------------------------------------------------- set-up


def install_missing(allow: bool) -> None:
    missing = [pkg for pkg, binary in (("nginx", "nginx"), ("varnish", "varnishd"), ("wrk", "wrk"))
               if not (shutil.which(binary) or Path(f"/usr/sbin/{binary}").exists())]
    if not missing:
        return
    if not allow:
        raise SystemExit(f"missing: {', '.join(missing)} (install them, or drop --no-install)")
    if os.geteuid() != 0:
        raise SystemExit(f"missing: {', '.join(missing)}; run as root or `sudo apt-get install -y {' '.join(missing)}`")
    log(f"installing {', '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, env=env)
    # Debian starts the packaged services on install; this benchmark runs its own.
    for service in ("nginx", "varnish"):
        if service in missing:
            subprocess.run(["service", service, "stop"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)


def binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def build(args) -> tuple[Path, Path, Path]:
    edge = Path(args.edge_bin) if args.edge_bin else REPO / "target/release/edge"
    ceiling = REPO / "target/release/examples/ceiling"
    replay = REPO / "target/release/examples/replay"
    if not args.no_build:
        log("building edge, the ceiling and replay (release)")
        cmd = ["cargo", "build", "--release", "--example", "ceiling", "--example", "replay"]
        if not args.edge_bin:
            cmd += ["--bin", "edge"]
        subprocess.run(cmd, cwd=REPO, check=True)
    for b in (edge, ceiling, replay):
        if not b.exists():
            raise SystemExit(f"{b} does not exist (build it, or drop --no-build)")
    return edge, ceiling, replay


def render(template: str, values: dict[str, str]) -> str:
    text = (HERE / template).read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    return text


def version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
        return rev + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


# ---------------------------------------------------------------------------- probes

HIT_HEADERS = ("cache-status", "x-cache-status")


def cache_word(headers: dict) -> str:
    for name in HIT_HEADERS:
        if name in headers:
            return headers[name]
    return "-"


def is_hit(server: str, headers: dict) -> bool:
    if server in ("ceiling", "replay"):
        return True
    word = cache_word(headers).lower()
    return "hit" in word or word == "static"


def test_headers(test: dict, etag: str | None) -> dict:
    return {k: (etag or "") if v == "@ETAG@" else v for k, v in test["headers"].items()}


def warm(server: str, port: int, test_name: str, test: dict, etags: dict) -> dict:
    """Asks until the answer is a hit (and, for edge's compressible responses, until the
    background compression has produced the encoded variant, up to a limit); returns
    what the last answer looked like."""
    path = test["path"]
    if "@ETAG@" in test["headers"].values() and (server, path) not in etags:
        fetch(port, path)
        status, headers, _ = fetch(port, path)
        etags[(server, path)] = headers.get("etag")
    headers_sent = test_headers(test, etags.get((server, path)))
    wants_encoding = "accept-encoding" in {k.lower() for k in headers_sent}
    deadline = time.monotonic() + 15
    while True:
        status, headers, body = fetch(port, path, headers_sent)
        hit = is_hit(server, headers) or status == 304
        encoded = "content-encoding" in headers
        done = hit and (encoded or not wants_encoding)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return {
        "status": status,
        "wire_bytes": len(wire_answer(port, path, headers_sent)),
        "expected_status": test["expect_status"],
        "ok": status == test["expect_status"],
        "cache": cache_word(headers),
        "hit": hit,
        "content_encoding": headers.get("content-encoding", "identity"),
        "body_bytes": len(body),
        "etag": headers.get("etag"),
        "request_headers": headers_sent,
    }


# ---------------------------------------------------------------------------- wrk


def run_wrk(args, port: int, path: str, headers: dict, duration: int, pin: bool, log_dir: Path, label: str) -> dict:
    argv = []
    if pin:
        argv += ["taskset", "-c", "1"]
    argv += ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{duration}s",
             "--timeout", "10s", "-s", str(HERE / "report.lua")]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    url = f"http://{LOOPBACK}:{port}{path}"
    assert url.startswith("http://127.0.0.1:"), url
    argv.append(url)
    # wrk is the only child reaped while it runs: the children's rusage grows by its CPU.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    STARTED.append(("wrk", proc))
    out, _ = proc.communicate()
    STARTED.remove(("wrk", proc))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (log_dir / f"wrk-{label}.txt").write_text(out)
    for line in out.splitlines():
        if line.startswith("WRK_JSON "):
            report = json.loads(line[len("WRK_JSON "):])
            report["cpu_s"] = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
            return report
    raise SystemExit(f"wrk printed no report for {label}:\n{out}")


def measure(args, server: str, port: int, pid: int, path: str, headers: dict, duration: int,
            pin: bool, log_dir: Path, label: str) -> dict:
    before = cpu_ticks(pid)
    report = run_wrk(args, port, path, headers, duration, pin, log_dir, label)
    after = cpu_ticks(pid)
    requests = max(report["requests"], 1)
    seconds = report["duration_us"] / 1e6
    hz = os.sysconf("SC_CLK_TCK")
    cpu_s = (after - before) / hz
    errors = sum(report["errors"].values())
    return {
        "rps": report["requests"] / seconds if seconds else 0.0,
        "p50_us": report["latency_us"]["p50"],
        "p99_us": report["latency_us"]["p99"],
        "p999_us": report["latency_us"]["p999"],
        "cpu_us_per_req": cpu_s * 1e6 / requests,
        "server_cpu_s": cpu_s,
        # Share of one core wrk used (its threads share CPU 1 when pinned): near 100%,
        # the client, not the server, set the pace.
        "client_cpu_pct": 100 * report["cpu_s"] / seconds / (1 if pin else args.threads) if seconds else 0.0,
        "wrk_bytes_per_resp": report["bytes"] / requests,
        "requests": report["requests"],
        "errors": errors,
        "wrk": report,
    }


# ---------------------------------------------------------------------------- report


def median_of(runs: list[dict]) -> dict:
    keys = ("rps", "p50_us", "p99_us", "p999_us", "cpu_us_per_req", "wrk_bytes_per_resp",
            "client_cpu_pct")
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["errors"] = sum(r["errors"] for r in runs)
    out["rounds"] = len(runs)
    return out


def fmt_us(us: float) -> str:
    return f"{us / 1000:.2f}ms" if us >= 1000 else f"{us:.0f}µs"


def table(test_name: str, test: dict, medians: dict, probes: dict, servers: list[str]) -> str:
    lines = [f"\n{test_name}: {test['what']}  —  GET {test['path']}"
             + (f"  {test_headers(test, '<etag>')}" if test["headers"] else "")]
    head = f"  {'server':<9}{'req/s':>11}{'p50':>10}{'p99':>10}{'CPU µs/req':>12}{'bytes/resp':>12}" \
           f"{'errors':>8}{'wrk CPU':>9}  {'answer seen':<28}{'edge ÷ this':>12}"
    lines.append(head)
    edge = medians.get("edge")
    for s in servers:
        m = medians[s]
        p = probes[s]
        answer = f"{p['status']} {p['content_encoding']} {'hit' if p['hit'] else 'MISS:' + p['cache'][:12]}"
        if not p["ok"]:
            answer = f"UNEXPECTED {p['status']}"
        ratio = "" if s == "edge" or not edge or not m["rps"] else f"{edge['rps'] / m['rps']:.2f}×"
        lines.append(f"  {s:<9}{m['rps']:>11,.0f}{fmt_us(m['p50_us']):>10}{fmt_us(m['p99_us']):>10}"
                     f"{m['cpu_us_per_req']:>12.1f}{m['bytes_per_resp']:>12,.0f}{m['errors']:>8}"
                     f"{m['client_cpu_pct']:>8.0f}%  {answer:<28}{ratio:>12}")
    bound = [s for s in servers if medians[s]["client_cpu_pct"] >= CLIENT_BOUND_PCT]
    if bound:
        lines.append(f"  wrk's core was at least {CLIENT_BOUND_PCT}% busy against {', '.join(bound)}: "
                     "there the client set the pace, and a req/s ratio understates the faster server "
                     "(compare CPU µs/req)")
    return "\n".join(lines)


# wrk's CPU share (of its one core) from which a run is taken to be client-bound.
CLIENT_BOUND_PCT = 90


def targets(test: dict, medians: dict) -> list[dict]:
    out = []
    edge = medians.get("edge")
    if not edge:
        return out
    for peer, want in test["targets"]:
        if peer in medians and medians[peer]["rps"]:
            got = edge["rps"] / medians[peer]["rps"]
            out.append({"target": f"req/s ≥ {want}× {peer}", "measured": round(got, 3), "met": got >= want})
    peer = test.get("fewer_bytes_than")
    if peer in medians:
        e, p = edge["bytes_per_resp"], medians[peer]["bytes_per_resp"]
        out.append({"target": f"fewer bytes/response than {peer}", "measured": f"{e:,.0f} vs {p:,.0f}",
                    "met": e < p})
    if "nginx" in medians:
        e, p = edge["p99_us"], medians["nginx"]["p99_us"]
        out.append({"target": "p99 ≤ nginx's", "measured": f"{fmt_us(e)} vs {fmt_us(p)}", "met": e <= p})
    return out


def client_limit(test: dict, medians: dict) -> list[dict]:
    """What each req/s target asks of the client: the req/s it means, against what
    replay (edge's answers and no other work) reached in the same run."""
    replay = medians.get("replay", {}).get("rps")
    out = []
    if not replay:
        return out
    for peer, want in test["targets"]:
        if peer in medians and peer != "replay" and medians[peer]["rps"]:
            needed = want * medians[peer]["rps"]
            out.append({"target": f"req/s ≥ {want}× {peer}", "needs_rps": round(needed),
                        "replay_rps": round(replay), "needs_of_replay": round(needed / replay, 3),
                        "what": f"{want}× {peer} is {needed:,.0f} req/s: {needed / replay:.2f}× what "
                                f"replay reached ({replay:,.0f}), "
                                + ("beyond this client" if needed > replay else "within this client")})
    return out


# ---------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="1 round of 2 s per test and server, short warm-up")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of wrk per server and test before round 1 (0: none)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: wrk has one core)")
    p.add_argument("--servers", default="edge,nginx,varnish,ceiling,replay", help="order within a round")
    p.add_argument("--tests", default=",".join(DEFAULT_TESTS), help=f"from {', '.join(TESTS)}")
    p.add_argument("--port-base", type=int, default=18080, help="origin port; the others follow it")
    p.add_argument("--nginx-js", choices=["static", "cache"], default="static",
                   help="nginx's /js/: gzip_static from disk (default) or its proxy_cache gzip variant")
    p.add_argument("--edge-memory-object-max", default="4MiB",
                   help="edge's cache.memory_object_max; the default puts the 5 MiB object on disk only")
    p.add_argument("--edge-bin", help="use this edge binary instead of building one")
    p.add_argument("--no-build", action="store_true", help="use the binaries already in target/release")
    p.add_argument("--no-install", action="store_true", help="fail instead of apt-get installing what is missing")
    p.add_argument("--no-pin", action="store_true", help="do not pin servers and wrk to cores")
    p.add_argument("--out", default=str(REPO / "target/compare/results.json"), help="results JSON")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.duration, args.warmup = 1, 2, 1
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.tests = [t.strip() for t in args.tests.split(",") if t.strip()]
    for s in args.servers:
        if s not in SERVERS:
            p.error(f"unknown server {s!r} (use {', '.join(SERVERS)})")
    if "replay" in args.servers and "edge" not in args.servers:
        p.error("replay answers with edge's own answers: it needs edge in --servers")
    for t in args.tests:
        if t not in TESTS:
            p.error(f"unknown test {t!r} (use {', '.join(TESTS)})")
    if args.rounds < 1 or args.duration <= 0:
        p.error("--rounds must be ≥ 1 and --duration > 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    atexit.register(stop_all)
    try:
        return run(args)
    finally:
        stop_all()


def run(args) -> int:
    install_missing(not args.no_install)
    edge_bin, ceiling_bin, replay_bin = build(args)

    out_dir = Path(args.out).resolve().parent
    work = out_dir / "work"
    if work.exists():
        shutil.rmtree(work)
    logs = work / "logs"
    for d in (logs, work / "nginx-tmp", work / "nginx-cache", work / "edge-cache", work / "varnish"):
        d.mkdir(parents=True, exist_ok=True)
    assets = work / "assets"
    sizes = make_assets(assets)
    user = pwd.getpwuid(os.geteuid()).pw_name

    cores = os.cpu_count() or 1
    pin = cores >= 2 and not args.no_pin and shutil.which("taskset") is not None
    server_cpu = ["taskset", "-c", "0"] if pin else []
    side_cpu = ["taskset", "-c", "1"] if pin else []

    ports = {name: args.port_base + i for i, name in enumerate(["origin", "edge", "nginx", "varnish", "ceiling", "replay"])}
    admin_ports = {"edge": args.port_base + 10, "varnish": args.port_base + 11}
    for name, port in [*ports.items(), *(("admin " + k, v) for k, v in admin_ports.items())]:
        if not port_free(port):
            raise SystemExit(f"127.0.0.1:{port} ({name}) is in use; pick another --port-base")

    values = {"WORK": str(work), "ASSETS": str(assets), "USER": user,
              "ORIGIN_PORT": str(ports["origin"])}
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        log(f"load average is {load_before[0]:.2f}: other work is running, the numbers will be noisy")

    # The origin: on the wrk core, since it only serves the warm-up misses.
    conf = work / "origin.nginx.conf"
    conf.write_text(render("origin.nginx.conf.in", values))
    nginx = binary("nginx")
    proc = start("origin", [*side_cpu, nginx, "-p", str(work), "-e", str(logs / "origin.error.log"), "-c", str(conf)],
                 logs / "origin.log")
    wait_ready("origin", proc, ports["origin"], "/css/site.css", logs / "origin.log")

    pids: dict[str, int] = {}
    if "edge" in args.servers:
        conf = work / "edge.toml"
        conf.write_text(render("edge.toml.in", {**values, "PORT": str(ports["edge"]),
                                                "ADMIN_PORT": str(admin_ports["edge"]),
                                                "MEMORY_OBJECT_MAX": args.edge_memory_object_max}))
        env = dict(os.environ, RUST_LOG="warn")
        proc = start("edge", [*server_cpu, str(edge_bin), "serve", "--config", str(conf)], logs / "edge.log", env)
        wait_ready("edge", proc, ports["edge"], "/css/site.css", logs / "edge.log")
        pids["edge"] = proc.pid
    if "nginx" in args.servers:
        js = ""
        if args.nginx_js == "static":
            js = ("        location /js/ {\n"
                  f"            root {assets};\n"
                  "            gzip_static on;\n"
                  "            gzip_vary on;\n"
                  "            add_header Cache-Control \"public, max-age=86400\";\n"
                  "            add_header X-Cache-Status STATIC;\n"
                  "        }\n")
        conf = work / "nginx.conf"
        conf.write_text(render("nginx.conf.in", {**values, "PORT": str(ports["nginx"]), "JS_LOCATION": js}))
        proc = start("nginx", [*server_cpu, nginx, "-p", str(work), "-e", str(logs / "nginx.error.log"),
                               "-c", str(conf)], logs / "nginx.log")
        wait_ready("nginx", proc, ports["nginx"], "/css/site.css", logs / "nginx.log")
        pids["nginx"] = proc.pid
    if "varnish" in args.servers:
        vcl = work / "varnish.vcl"
        vcl.write_text(render("varnish.vcl.in", values))
        argv = [*server_cpu, binary("varnishd"), "-F", "-j", "none", "-n", str(work / "varnish"),
                "-a", f"{LOOPBACK}:{ports['varnish']}", "-T", f"{LOOPBACK}:{admin_ports['varnish']}",
                "-f", str(vcl), "-s", "malloc,1G",
                "-p", "thread_pools=1", "-p", "thread_pool_min=100", "-p", "thread_pool_max=1000",
                "-p", "timeout_idle=300"]
        proc = start("varnish", argv, logs / "varnish.log")
        wait_ready("varnish", proc, ports["varnish"], "/css/site.css", logs / "varnish.log", timeout=120)
        pids["varnish"] = proc.pid
    if "ceiling" in args.servers:
        proc = start("ceiling", [*server_cpu, str(ceiling_bin), "--listen", f"{LOOPBACK}:{ports['ceiling']}",
                                 "--dir", str(assets), "--cache-control", "public, max-age=86400"],
                     logs / "ceiling.log")
        wait_ready("ceiling", proc, ports["ceiling"], "/css/site.css", logs / "ceiling.log")
        pids["ceiling"] = proc.pid

    servers = args.servers
    log(f"servers up: {', '.join(f'{s}=127.0.0.1:{ports[s]}' for s in servers)}; "
        f"pinning {'servers→CPU 0, wrk→CPU 1' if pin else 'off'}")

    # Warm: every path twice through every cache, then until each test's answer is a
    # hit in the form the test asks for; then a short wrk run per server and test.
    etags: dict = {}
    probes: dict[str, dict] = {t: {} for t in args.tests}
    caches = [s for s in servers if s != "replay"]
    for s in caches:
        for path in sizes:
            if not path.endswith(".gz"):
                fetch(ports[s], path)
                fetch(ports[s], path)
        for t in args.tests:
            probes[t][s] = warm(s, ports[s], t, TESTS[t], etags)

    def warm_up(group: list[str]) -> None:
        if args.warmup > 0:
            log(f"warm-up: {args.warmup:g} s of wrk per test for {', '.join(group)}")
            for t in args.tests:
                for s in group:
                    hdrs = test_headers(TESTS[t], etags.get((s, TESTS[t]["path"])))
                    run_wrk(args, ports[s], TESTS[t]["path"], hdrs, args.warmup, pin, logs, f"warmup-{t}-{s}")
            for t in args.tests:  # what each answers after warm-up (edge may have compressed by now)
                for s in group:
                    probes[t][s] = warm(s, ports[s], t, TESTS[t], etags)

    warm_up(caches)
    if "replay" in servers:
        # edge's answers to wrk's requests, now that it is warm, replayed by a server that
        # does nothing else: the most any server could show with this client.
        answers = work / "replay"
        answers.mkdir()
        index = []
        for t in args.tests:
            path = TESTS[t]["path"]
            etags[("replay", path)] = etags.get(("edge", path))
            hdrs = test_headers(TESTS[t], etags.get(("edge", path)))
            (answers / f"{t}.http").write_bytes(wire_answer(ports["edge"], path, hdrs))
            inm = any(k.lower() == "if-none-match" for k in hdrs)
            index.append(f"{path}\t{int(inm)}\t{t}.http\n")
        (answers / "index").write_text("".join(index))
        proc = start("replay", [*server_cpu, str(replay_bin), "--listen", f"{LOOPBACK}:{ports['replay']}",
                                "--answers", str(answers)], logs / "replay.log")
        wait_ready("replay", proc, ports["replay"], "/css/site.css", logs / "replay.log")
        pids["replay"] = proc.pid
        for t in args.tests:
            probes[t]["replay"] = warm("replay", ports["replay"], t, TESTS[t], etags)
        warm_up(["replay"])

    runs: dict[str, dict[str, list]] = {t: {s: [] for s in servers} for t in args.tests}
    total = args.rounds * len(args.tests) * len(servers)
    n = 0
    for r in range(args.rounds):
        for t in args.tests:
            test = TESTS[t]
            for s in servers:
                n += 1
                hdrs = test_headers(test, etags.get((s, test["path"])))
                res = measure(args, s, ports[s], pids[s], test["path"], hdrs, args.duration, pin, logs,
                              f"r{r + 1}-{t}-{s}")
                runs[t][s].append(res)
                log(f"[{n}/{total}] round {r + 1} {t:<17} {s:<8} {res['rps']:>10,.0f} req/s  "
                    f"p99 {fmt_us(res['p99_us']):>8}  {res['cpu_us_per_req']:.1f} CPU µs/req  "
                    f"wrk {res['client_cpu_pct']:.0f}% CPU")

    if args.smoke:
        kind = "smoke run: 1 short round on a possibly busy machine; not a measurement"
    elif args.rounds < 3 or args.duration < 10:
        kind = "short run (under 3 rounds or 10 s): not a measurement"
    else:
        kind = "measured run" + (" (load average was above 0.5 before it started)" if load_before[0] > 0.5 else "")
    results = {
        "kind": kind,
        "smoke": args.smoke,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": cores, "kernel": platform.release(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
                     "connections": args.connections, "wrk_threads": args.threads,
                     "pinning": "servers on CPU 0, wrk on CPU 1" if pin else "none",
                     "order": servers, "nginx_js": args.nginx_js,
                     "edge_memory_object_max": args.edge_memory_object_max},
        "versions": {"edge": git_rev(), "nginx": version([nginx, "-v"]),
                     "varnish": version([binary("varnishd"), "-V"]), "wrk": version(["wrk", "-v"])},
        "servers": {s: {"port": ports[s], "what": SERVERS[s]} for s in servers},
        "assets": sizes,
        "tests": {},
    }
    title = ("SMOKE RUN (not a measurement)" if args.smoke else
             "SHORT RUN (not a measurement)" if kind.startswith("short") else "Results")
    print(f"\n{title}: median of "
          f"{args.rounds} interleaved round(s) × {args.duration:g} s, {args.connections} connections, "
          f"{'servers on CPU 0, wrk on CPU 1' if pin else 'no pinning'}; load before {load_before[0]:.2f}")
    all_ok = True
    for t in args.tests:
        # Bytes per response: the exact size of the answer the probe saw after warm-up.
        medians = {s: {**median_of(runs[t][s]), "bytes_per_resp": probes[t][s]["wire_bytes"]} for s in servers}
        met = targets(TESTS[t], medians)
        ratios = {}
        if "edge" in medians:
            for s in servers:
                if s != "edge" and medians[s]["rps"]:
                    ratios[s] = {
                        "rps": medians["edge"]["rps"] / medians[s]["rps"],
                        "p99": medians["edge"]["p99_us"] / medians[s]["p99_us"] if medians[s]["p99_us"] else None,
                        "cpu_per_req": (medians["edge"]["cpu_us_per_req"] / medians[s]["cpu_us_per_req"]
                                        if medians[s]["cpu_us_per_req"] else None),
                    }
        results["tests"][t] = {
            "what": TESTS[t]["what"], "path": TESTS[t]["path"], "headers": TESTS[t]["headers"],
            "answers": probes[t], "median": medians, "edge_ratio": ratios, "targets": met,
            "rounds": runs[t],
        }
        limit = client_limit(TESTS[t], medians)
        results["tests"][t]["client_limit"] = limit
        print(table(t, TESTS[t], medians, probes[t], servers))
        for m in met:
            print(f"    target {m['target']}: {m['measured']} — {'met' if m['met'] else 'NOT met'}"
                  + (" (smoke: not meaningful)" if args.smoke else ""))
        for line in limit:
            print(f"    {line['what']}")
        for s in servers:
            if not probes[t][s]["ok"] or medians[s]["errors"]:
                all_ok = False
    results["all_answers_as_expected"] = all_ok

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nresults: {out}\nlogs and wrk output: {logs}")
    if not all_ok:
        print("some answers were not what the test expects (UNEXPECTED above, or wrk errors): "
              "see the logs before trusting those rows")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
