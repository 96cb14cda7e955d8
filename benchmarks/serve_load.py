"""Load test of `tfrec-dyn serve`: concurrent clients on 127.0.0.1.

    .venv/bin/python benchmarks/serve_load.py --model_base_path saved_models/sasrec \\
        --clients 8 --seconds 20

Starts the server in a subprocess (as a user would), then runs `--clients`
concurrent clients for `--seconds` (both bounded) sending valid predict
requests (row format, histories drawn from the model's own vocabulary), and
reports requests/s, p50/p99 latency and the number of failed requests, which
must be 0.  A baseline measured in the same run, the model status endpoint
(no TensorFlow work), gives the server's own overhead for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

MAX_CLIENTS, MAX_SECONDS = 64, 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as response:
        return response.status, json.loads(response.read())


def _load(url, make_body, clients, seconds):
    latencies, failures, lock = [], [0], threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(seed):
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                status, _ = _request(url, make_body(rng))
                ok = status == 200
            except (urllib.error.URLError, OSError, ValueError):
                ok = False
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    failures[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    return {"requests": len(latencies), "failed": failures[0], "requests_per_s": len(latencies) / elapsed,
            "p50_ms": pick(0.50), "p99_ms": pick(0.99)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", required=True)
    parser.add_argument("--model_name", default=None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--history", type=int, default=20, help="items per request history")
    args = parser.parse_args()
    if not 0 < args.clients <= MAX_CLIENTS or not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--clients must be in 1..{MAX_CLIENTS} and --seconds in (0, {MAX_SECONDS}]")
    name = args.model_name or os.path.basename(os.path.normpath(args.model_base_path))
    version = str(max(int(v) for v in os.listdir(args.model_base_path) if v.isdigit()))  # 10 is newer than 9
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tfrec_dyn", "serve", "--model_name", name,
                               "--model_base_path", args.model_base_path, "--rest_api_port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    base = f"http://127.0.0.1:{port}/v1/models/{name}"
    try:
        for _ in range(600):
            try:
                _request(base)
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        # Raw ids to query with: the model's own most popular items (empty history).
        _, popular = _request(base + ":predict", {"inputs": {"item_ids": [[""]], "k": 1000}})
        items = [i for i in popular["outputs"]["item_ids"][0] if i]
        predict = lambda rng: {"instances": [{"item_ids": rng.sample(items, args.history)}]}
        rows = {"status (baseline)": _load(base, lambda rng: None, args.clients, args.seconds),
                "predict": _load(base + ":predict", predict, args.clients, args.seconds)}
    finally:
        server.terminate()
        server.wait(30)
    print(f"{args.clients} clients x {args.seconds:.0f} s on {os.cpu_count()} CPU core(s), model {name} v{version}\n")
    print("| endpoint | requests | failed | requests/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for label, r in rows.items():
        print(f"| {label} | {r['requests']} | {r['failed']} | {r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} |")
    ratio = rows["predict"]["requests_per_s"] / rows["status (baseline)"]["requests_per_s"]
    print(f"\npredict throughput = {ratio:.2f} x the status endpoint's (same run)")
    return 1 if rows["predict"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
