"""Load test of `tfrec-dyn serve`: concurrent clients on 127.0.0.1.

    .venv/bin/python benchmarks/serve_load.py --model_base_path saved_models/sasrec \\
        --clients 8 --seconds 20
    .venv/bin/python benchmarks/serve_load.py --model_base_path saved_models/sasrec \\
        --clients 8 --seconds 30 --swap --out benchmarks/results/serve_swap.md

Starts the server in a subprocess (as a user would), then runs `--clients`
concurrent clients for `--seconds` (both bounded) sending valid predict
requests (row format, histories drawn from the model's own vocabulary), and
reports requests/s, p50/p99 latency and the number of failed requests, which
must be 0.  A baseline measured in the same run, the model status endpoint
(no TensorFlow work), gives the server's own overhead for comparison.

`--swap` serves a copy of the newest version (in a temporary folder, so the
given folder is never touched) and, while the clients run, pushes a new good
version at a quarter of the time and a broken one (garbage `saved_model.pb`)
at three fifths, each renamed into place as the Pusher does.  It reports the
failed valid requests (must be 0), p99 during each swap (from the push until
the server reports the version AVAILABLE or failed, plus one second) against
p99 outside them, and the versions' final states: the good one AVAILABLE, the
broken one END with its error.  Exit status 1 if any valid request failed or a
version did not end in its expected state.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
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


def _versions(base_path):
    from tfrec_dyn.serving.versions import parse_version

    # As the server reads them: numbers (10 is newer than 9), ASCII digits only.
    return sorted(v for v in map(parse_version, os.listdir(base_path)) if v is not None)


def _load(url, make_body, clients, seconds):
    """[(start time, latency s, ok)] of every request the clients sent."""
    samples, lock = [], threading.Lock()
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
                samples.append((start, time.perf_counter() - start, ok))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return samples


def _summary(samples, seconds=None):
    latencies = sorted(latency for _, latency, ok in samples if ok)
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    if seconds is None and samples:
        seconds = max(s + l for s, l, _ in samples) - min(s for s, _, _ in samples)
    return {"requests": len(latencies), "failed": sum(not ok for _, _, ok in samples),
            "requests_per_s": len(latencies) / seconds if seconds else float("nan"),
            "p50_ms": pick(0.50), "p99_ms": pick(0.99)}


def _wait_until_up(url, server):
    for _ in range(1200):
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode} before answering")
        try:
            return _request(url)
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise SystemExit("the server did not answer within 120 s")


def _push(base_path, version, source, broken=False):
    """Copies `source` as `version`, renamed into place when complete (as the Pusher does)."""
    staging = os.path.join(base_path, f".staging-{version}")
    shutil.copytree(source, staging)
    if broken:
        with open(os.path.join(staging, "saved_model.pb"), "wb") as f:
            f.write(b"\x08\x96\x01 not a SavedModel")
    os.rename(staging, os.path.join(base_path, str(version)))


def _swap_events(status_url, base_path, source, newest, seconds, start):
    """Pushes a good then a broken version during the run; returns what happened to each."""
    events = []
    for at, version, broken in ((0.25, newest + 1, False), (0.6, newest + 2, True)):
        time.sleep(max(0.0, start + at * seconds - time.perf_counter()))
        pushed = time.perf_counter()
        _push(base_path, version, source, broken)
        state, entry = None, {}
        while time.perf_counter() < start + seconds + 60:
            entries = {e["version"]: e for e in _request(status_url)[1]["model_version_status"]}
            entry = entries.get(str(version), {})
            if entry.get("state") in ("AVAILABLE", "END"):
                state = entry["state"]
                break
            time.sleep(0.05)
        events.append({"version": version, "broken": broken, "pushed": pushed, "settled": time.perf_counter(),
                       "state": state, "error_code": entry.get("status", {}).get("error_code")})
    return events


def _table(rows):
    lines = ["| endpoint | requests | failed | requests/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    for label, r in rows.items():
        lines.append(f"| {label} | {r['requests']} | {r['failed']} | {r['requests_per_s']:.1f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", required=True)
    parser.add_argument("--model_name", default=None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--history", type=int, default=20, help="items per request history")
    parser.add_argument("--swap", action="store_true", help="push a good and a broken version during the load")
    parser.add_argument("--out", help="also write the Markdown report here")
    parser.add_argument("--json", help="also write the table's rows as JSON here")
    args = parser.parse_args()
    if not 0 < args.clients <= MAX_CLIENTS or not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--clients must be in 1..{MAX_CLIENTS} and --seconds in (0, {MAX_SECONDS}]")
    name = args.model_name or os.path.basename(os.path.normpath(args.model_base_path))
    if not os.path.isdir(args.model_base_path) or not _versions(args.model_base_path):
        parser.error(f"{args.model_base_path}: no numeric version folder (push a model first: make run)")
    version = _versions(args.model_base_path)[-1]
    source = os.path.join(args.model_base_path, str(version))
    scratch = tempfile.mkdtemp(prefix="serve_load-") if args.swap else None
    base_path = args.model_base_path
    if args.swap:  # a copy: the pushes never touch the given folder
        base_path = os.path.join(scratch, name)
        os.makedirs(base_path)
        shutil.copytree(source, os.path.join(base_path, str(version)))
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tfrec_dyn", "serve", "--model_name", name,
                               "--model_base_path", base_path, "--rest_api_port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    base = f"http://127.0.0.1:{port}/v1/models/{name}"
    events, start = [], time.perf_counter()
    try:
        _wait_until_up(base, server)
        # Raw ids to query with: the model's own most popular items (empty history).
        _, popular = _request(base + ":predict", {"inputs": {"item_ids": [[""]], "k": 1000}})
        items = [i for i in popular["outputs"]["item_ids"][0] if i]
        predict = lambda rng: {"instances": [{"item_ids": rng.sample(items, min(args.history, len(items)))}]}
        rows = {"status (baseline)": _summary(_load(base, lambda rng: None, args.clients, args.seconds),
                                              args.seconds)}
        swapper = None
        if args.swap:
            start = time.perf_counter()
            def swap():
                try:
                    events.extend(_swap_events(base, base_path, source, version, args.seconds, start))
                except Exception as error:  # reported below: a run whose pushes failed is a failed run
                    events.append({"error": f"{type(error).__name__}: {error}"})

            swapper = threading.Thread(target=swap)
            swapper.start()
        samples = _load(base + ":predict", predict, args.clients, args.seconds)
        rows["predict"] = _summary(samples, args.seconds)
        if swapper is not None:
            swapper.join()
            if len(events) != 2 or any("error" in e for e in events):
                raise SystemExit(f"the pushes during the run failed: {events}")
            for event in events:
                window = [s for s in samples if event["pushed"] <= s[0] <= event["settled"] + 1.0]
                kind = "broken" if event["broken"] else "good"
                rows[f"predict during the {kind} push (v{event['version']})"] = _summary(window)
            inside = lambda s: any(e["pushed"] <= s[0] <= e["settled"] + 1.0 for e in events)
            rows["predict outside the pushes"] = _summary([s for s in samples if not inside(s)])
    finally:
        server.terminate()
        server.wait(60)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    lines = [f"`{' '.join(['python'] + sys.argv)}`", "",
             f"{args.clients} clients x {args.seconds:.0f} s on {os.cpu_count()} CPU core(s), "
             f"model {name} v{version}, load average at the end {os.getloadavg()[0]:.2f}", "", _table(rows), ""]
    ratio = rows["predict"]["requests_per_s"] / rows["status (baseline)"]["requests_per_s"]
    lines.append(f"predict throughput = {ratio:.2f} x the status endpoint's (same run)")
    failed = rows["predict"]["failed"]
    if args.swap:
        lines.append("")
        for event in events:
            expected = "END" if event["broken"] else "AVAILABLE"
            lines.append(f"- v{event['version']} ({'broken' if event['broken'] else 'good'}) pushed "
                         f"{event['pushed'] - start:.1f} s into the run, {event['state'] or 'never settled'} "
                         f"(error_code {event['error_code']}) {event['settled'] - event['pushed']:.1f} s later; "
                         f"expected {expected}")
            failed += event["state"] != expected
        lines.append(f"- failed valid requests: {rows['predict']['failed']} (must be 0)")
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
