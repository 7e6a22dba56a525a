"""Load test of `bertkit serve`: N concurrent clients on loopback, dynamic batching on and off.

    python benchmarks/serve_load.py --run RUN_DIR [--clients 1 8 32] [--requests 400] [--seconds 60]

For each setting (batching on, off) a server is started on a free loopback port; for each client count,
the clients send one-sentence requests (SST-2 dev sentences, in turn) back to back until `--requests`
have been answered or `--seconds` have passed. Prints one JSON object: requests/s, p50/p95/p99 latency in
ms and the error count per setting and client count, and the speed-up batching gives.
"""

from __future__ import annotations

import argparse
import csv
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, texts: list[str]) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", data=json.dumps({"inputs": texts}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def _load(port: int, texts: list[str], clients: int, requests: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(10**9))
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            with lock:
                k = next(counter)
            if k >= requests:
                return
            start = time.perf_counter()
            status = _post(port, [texts[k % len(texts)]])
            with lock:
                latencies.append(time.perf_counter() - start)
                errors += status != 200

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = sorted(1000 * x for x in latencies)

    def pct(q: float) -> float:
        return round(ms[min(len(ms) - 1, int(q * len(ms)))], 1)

    return {"requests": len(ms), "errors": errors, "requests_per_s": round(len(ms) / wall, 1),
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "mean_ms": round(statistics.mean(ms), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a classification run directory (or ONNX export)")
    parser.add_argument("--data", default=str(REPO / "data" / "sst2" / "dev.csv"))
    parser.add_argument("--column", default="sentence")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=400, help="requests per client count")
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per client count")
    args = parser.parse_args()
    with open(args.data, encoding="utf-8") as fh:
        texts = [row[args.column] for row in csv.DictReader(fh)]
    out: dict = {"run": args.run, "requests_per_count": args.requests, "results": {}}
    for mode, flags in (("batching", []), ("no_batching", ["--no-batching"])):
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "bertkit", "serve", args.run, "--port", str(port),
                                   "--quiet", *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 120
            while _post(port, ["warm up"]) != 200:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit(f"the server for {mode} did not start")
                time.sleep(0.5)
            for _ in range(20):
                _post(port, [texts[0]])
            out["results"][mode] = {str(c): _load(port, texts, c, args.requests, args.seconds) for c in args.clients}
            print(json.dumps({mode: out["results"][mode]}), file=sys.stderr, flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    on, off = out["results"]["batching"], out["results"]["no_batching"]
    out["batching_speedup"] = {c: round(on[c]["requests_per_s"] / off[c]["requests_per_s"], 2) for c in on}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
