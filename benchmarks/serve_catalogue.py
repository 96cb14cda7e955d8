"""Batch-1 serving latency over a catalogue of exactly N items.

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/serve_catalogue.py --items 1000000 --models sasrec \\
        --index-probes 16 --out benchmarks/results/serve_catalogue.md --json benchmarks/results/serve_catalogue.json

The synthetic logs of `scale.py` draw fewer items than their catalogue (the
M log: 610k of 1M; Zipf popularity leaves the tail unsampled), and an item no
one interacted with is not in a model's vocabulary.  The latency of exact
top-k does not depend on what the weights learned, only on the table's shape,
so this builds each model untrained with a vocabulary of exactly `--items`
items (ids `i0`..`i<N-1>`, every one equally counted), exports it as
`tfrec-dyn export` does and measures `serve_load.py` against it: batch-1
predict requests (top-10 of the whole catalogue), 1 client, `--seconds`,
p50 / p99, next to the status endpoint's p50 (the server's own overhead, no
TensorFlow work) measured in the same run.

`--index-probes P` adds, for each model, a row served from an approximate
clustered index (`tfrec_dyn.serving.index`, `--index-clusters`, default the
square root of N) probing P clusters per request.  Its latency is measured
here; its recall needs trained weights and is measured by `scale.py
--complete --index-probes P` (untrained vectors have no clusters to find).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_LEN = 50


def export_untrained(model_name: str, items: int, base: str, index_probes: int = 0, index_clusters: int = 0) -> str:
    """Exports `model_name`, untrained, with a vocabulary of `items` items (and an
    index probing `index_probes` clusters, if not 0); returns the version folder."""
    import numpy as np
    import tf_keras as keras

    from tfrec_dyn.data.vocabulary import Vocabulary
    from tfrec_dyn.models import build_model
    from tfrec_dyn.serving.export import export_saved_model
    from tfrec_dyn.serving.index import ClusterIndexConfig, build_model_index

    vocab = Vocabulary(np.char.add("i", np.arange(items).astype(str)))
    keras.utils.set_random_seed(0)
    model = build_model(model_name, vocab.size, MAX_LEN)
    model({"item_ids": np.full((1, MAX_LEN), 2, np.int32)})  # builds the weights
    index = None if not index_probes else build_model_index(
        model, ClusterIndexConfig(num_clusters=index_clusters, probes=index_probes))
    return export_saved_model(model, vocab, np.ones(vocab.size, np.int64), MAX_LEN, os.path.join(base, "1"),
                              index=index)


def measure(model_name: str, args, index_probes: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as work:
        base = os.path.join(work, model_name)
        export_untrained(model_name, args.items, base, index_probes, args.index_clusters)
        out = os.path.join(work, "load.json")
        done = subprocess.run([sys.executable, os.path.join(HERE, "serve_load.py"), "--model_base_path", base,
                               "--clients", "1", "--seconds", str(args.seconds), "--json", out],
                              capture_output=True, text=True, timeout=args.seconds * 2 + 600)
        row = {"model": model_name, "items": args.items, "top_k": f"index, {index_probes} probed" if index_probes
               else "exact"}
        if done.returncode != 0:
            return {**row, "failed": done.stderr.strip()[-300:]}
        with open(out) as f:
            load = json.load(f)
    return {**row, "p50_ms": load["predict"]["p50_ms"],
            "p99_ms": load["predict"]["p99_ms"], "requests": load["predict"]["requests"],
            "failed_requests": load["predict"]["failed"], "status_p50_ms": load["status (baseline)"]["p50_ms"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--models", nargs="+", default=["sasrec"])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--index-probes", type=int, default=0, metavar="P")
    parser.add_argument("--index-clusters", type=int, default=0, metavar="C")
    parser.add_argument("--out", help="also write the Markdown table here")
    parser.add_argument("--json", help="write the rows as JSON here")
    args = parser.parse_args()
    rows = [measure(name, args, probes) for name in args.models
            for probes in ([0, args.index_probes] if args.index_probes else [0])]
    lines = [f"`python {shlex.join(sys.argv)}`", "", f"{os.cpu_count()} CPU core(s); load average at the end "
             f"{os.getloadavg()[0]:.2f}.", "",
             "| model | items | top-k | predict p50 ms | predict p99 ms | requests | failed | status p50 ms |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        head = f"| {r['model']} | {r['items']:,} | {r['top_k']} |"
        lines.append(f"{head} failed: {r['failed']} | | | | |" if "failed" in r else
                     f"{head} {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests']:,} | {r['failed_requests']} | "
                     f"{r['status_p50_ms']:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if any("failed" in r or r["failed_requests"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
