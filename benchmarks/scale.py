"""Every model at production sizes: read, train, evaluate, export and serve, with ratios.

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/scale.py --sizes S M \\
        --out docs/scale_results.md --json benchmarks/results/scale.json

Sizes (synthetic `user item` logs of `tfrec_dyn.data.synthetic`, seed 0,
Zipf popularity, heavy-tailed lengths, a learnable successor pattern):

| size | users | items | interactions (about) |
|---|---:|---:|---:|
| XS | 5,000 | 10,000 | 100k (a quick check of this script) |
| S | 50,000 | 100,000 | 1M |
| M | 500,000 | 1,000,000 | 10M |

For each size the log is generated once into `--work-dir`.  Each (model,
loss) then runs in a fresh Python process, so that its peak RSS is its own,
and measures:

* read: lines/s of `load_dataset` (what `tfrec-dyn train` reads with), and
  the seconds to split, build the vocabulary and encode (`PreparedData`);
* train: training sequences/s over `--steps` steps of `model.fit`, after an
  untimed first epoch of as many steps (tracing, warm-up); batch 128, max_len 50,
  `--optimizer` (default lazy_adam: Keras' Adam costs a pass over the whole
  item table and its two moment slots every step, see
  `tfrec_dyn.training.optimizers`);
* evaluate: users/s of the full protocol (`tfrec_dyn.metrics.evaluate`,
  the whole catalogue ranked a chunk at a time) on a seeded sample of
  `--eval-users` test users, after an untimed pass over a full batch and
  one of the last batch's size (each batch shape is traced once), against a
  plain matmul of the same shape ([256 users × K, d] x [d, V] in chunks of
  8192 items, summed; K the vectors a user is scored with: 1, RDRSR's
  interests, AdaSplit's sub-sequences) timed in the same process: the
  machine's limit for that arithmetic.  "ranking users/s"
  leaves out the model's forward pass (the user states of the same
  batches, timed alone): what the chunked ranking itself costs;
* export: size of the SavedModel (`export_saved_model`);
* serve: p50 / p99 latency of batch-1 predict requests (top-10 of the whole
  catalogue) by `benchmarks/serve_load.py`, 1 client, `--serve-seconds`;
* peak RSS of the process, and what reading the log added to the RSS, per
  interaction (the data as the library holds it in memory).

Ratios in the report: training sequences/s at each size ÷ at the smallest
size run, per (model, loss); evaluation users/s ÷ the matmul's.  A failure
(an exception, a timeout, running out of memory) is reported as such for that
row; the other rows still run.

`--complete` runs instead what a user runs, the CLI, end to end, per row:
`tfrec-dyn train` (read, one whole epoch, the test evaluation under both
protocols on a seeded sample of `--eval-users` users), `tfrec-dyn export` and
`serve_load.py` against the exported model; it reports each command's seconds
and peak RSS (of that process alone, `os.wait4`), the test NDCG@10 of both
protocols and the served p50 / p99.  A run is `MODEL:LOSS` plus any
`:KEY=VALUE` (`trainer=tp` goes to `--trainer`, the TP trainer's options to
`--trainer-option`, the rest to `--hp`); a model
that reads side fields (HUP) reads the same log written as JD sessions:

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/scale.py --complete --sizes M \\
        --runs retr:gbce sasrec:gbce:trainer=tp adasplit:sampled_softmax:scoring=max hup:sampled_ce
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time

SIZES = {"XS": dict(num_users=5_000, num_items=10_000), "S": dict(num_users=50_000, num_items=100_000),
         "M": dict(num_users=500_000, num_items=1_000_000)}
MEAN_LENGTH = 20
# (model, loss): every model with a loss whose cost does not grow with the catalogue.
RUNS = [("sasrec", "bce"), ("sasrec", "gbce"), ("sasrec", "sampled_softmax"), ("gru4rec", "sampled_softmax"),
        ("caser", "sampled_softmax"), ("retr", "gbce"), ("rdrsr", "sampled_ce"), ("adasplit", "sampled_softmax")]
MAX_LEN, BATCH, EVAL_BATCH, MATMUL_CHUNK = 50, 128, 256, 8192
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WORK_DIR = os.path.join(tempfile.gettempdir(), "tfrec_scale")  # the synthetic logs, generated once


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _rss() -> int:
    """Resident bytes now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def log_path(work_dir: str, size: str, format: str = "user-item") -> str:  # pylint: disable=redefined-builtin
    """The size's synthetic log in `format` (`SyntheticLog.write`'s), generated on first use."""
    path = os.path.join(work_dir, f"synthetic_{size}." + ("txt" if format == "user-item" else format))
    if not os.path.exists(path):
        os.makedirs(work_dir, exist_ok=True)
        # In a child of its own: generating M takes gigabytes, and a child started later by this
        # process reports this process's high-water mark as its own peak RSS (Linux keeps it
        # across the vfork + exec that starts a subprocess).
        child = multiprocessing.get_context("spawn").Process(target=_write_log, args=(path, size, format))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"generating {path} failed (exit {child.exitcode})")
    return path


def _write_log(path: str, size: str, format: str) -> None:  # pylint: disable=redefined-builtin
    from tfrec_dyn.data.synthetic import LogSpec, generate_log

    generate_log(LogSpec(mean_length=MEAN_LENGTH, seed=0, **SIZES[size])).write(path + ".part", format)
    os.rename(path + ".part", path)


def _matmul_users_per_second(dim: int, vocab_size: int, users: int, vectors_per_user: int = 1) -> float:
    """Users/s of [256 × vectors_per_user, d] x [d, V] in chunks of 8192 items (summed, so nothing
    V-sized is kept)."""
    import tensorflow as tf

    table = tf.random.normal([MATMUL_CHUNK, dim])
    batch = tf.random.normal([EVAL_BATCH * vectors_per_user, dim])
    chunk = tf.function(lambda u: tf.reduce_sum(tf.matmul(u, table, transpose_b=True)))
    chunk(batch).numpy()  # trace
    chunks = -(-vocab_size // MATMUL_CHUNK)
    batches = -(-users // EVAL_BATCH)
    start = time.perf_counter()
    for _ in range(batches * chunks):
        chunk(batch)
    chunk(batch).numpy()
    return batches * EVAL_BATCH / (time.perf_counter() - start)


def _serve(model_base_path: str, seconds: float) -> dict:
    """p50 / p99 of batch-1 predict requests by serve_load.py (1 client)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        done = subprocess.run([sys.executable, os.path.join(HERE, "serve_load.py"), "--model_base_path",
                               model_base_path, "--clients", "1", "--seconds", str(seconds), "--json", out.name],
                              capture_output=True, text=True, timeout=seconds * 2 + 600)
        if done.returncode != 0:
            raise RuntimeError(f"serve_load.py failed: {done.stderr[-500:]}")
        with open(out.name) as f:
            return json.load(f)["predict"]


def measure(size: str, model_name: str, loss: str, args) -> dict:
    """One (size, model, loss) row; runs in its own process (see `--worker`)."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from tfrec_dyn.data.datasets import load_dataset
    from tfrec_dyn.data.input_pipeline import training_dataset
    from tfrec_dyn.metrics import Scorer, evaluate
    from tfrec_dyn.data.splits import sample_users
    from tfrec_dyn.models import build_model
    from tfrec_dyn.serving.export import export_saved_model
    from tfrec_dyn.training.optimizers import make_optimizer
    from tfrec_dyn.training import PreparedData
    from train_speed import EpochTimer

    row = {"size": size, "model": model_name, "loss": loss, "optimizer": args.optimizer}
    path = log_path(args.work_dir, size)
    before_read = _rss()  # TensorFlow and the library imported
    start = time.perf_counter()
    data = load_dataset(path, format="user-item")
    row["read_s"] = time.perf_counter() - start
    row["lines"] = data.report.lines_read
    row["interactions"] = data.num_interactions
    row["lines_per_s"] = row["lines"] / row["read_s"]
    row["read_rss"] = _rss() - before_read
    start = time.perf_counter()
    prepared = PreparedData.from_interactions(data)
    row["prepare_s"] = time.perf_counter() - start
    vocab_size = prepared.vocab.size
    row.update(users=data.num_users, items=vocab_size - 2)

    keras.utils.set_random_seed(0)
    model = build_model(model_name, vocab_size, MAX_LEN, loss=loss)
    model.compile(optimizer=make_optimizer(args.optimizer, 1e-3))
    dataset = training_dataset(prepared.train_sequences, vocab_size, MAX_LEN, BATCH,
                               num_negatives=model.num_negatives, sampler="uniform",
                               item_counts=prepared.item_counts, negative_layout=model.negative_layout or "per_position")
    timer = EpochTimer()
    model.fit(dataset, epochs=2, steps_per_epoch=args.steps, verbose=0, callbacks=[timer])
    row["train_sequences_per_s"] = args.steps * BATCH / timer.seconds[-1]
    row["train_loss"] = float(model.history.history["loss"][-1])

    arrays = prepared.eval_arrays("test", MAX_LEN)
    rows = sample_users(arrays.user_ids, args.eval_users)
    histories, targets = arrays.histories[rows], arrays.targets[rows]
    scorer = Scorer(model)
    # Trace every batch shape of the timed pass: a full batch and the last one (a retrace in the timed
    # pass was most of the time of ranking 2,000 users at S).
    last = len(rows) % EVAL_BATCH if len(rows) > EVAL_BATCH else 0
    warm_up = np.r_[0:min(EVAL_BATCH, len(rows)), len(rows) - last:len(rows)]
    evaluate(scorer, histories[warm_up], targets[warm_up], batch_size=EVAL_BATCH)
    start = time.perf_counter()
    result = evaluate(scorer, histories, targets, batch_size=EVAL_BATCH)
    eval_seconds = time.perf_counter() - start
    row["eval_users"] = len(rows)
    row["eval_users_per_s"] = len(rows) / eval_seconds
    # The model's forward pass alone (user states of the same batches), to tell the ranking's share.
    start = time.perf_counter()
    for first in range(0, len(rows), EVAL_BATCH):
        tf.nest.map_structure(lambda t: t.numpy(), scorer.state({"item_ids": histories[first:first + EVAL_BATCH]}))
    row["ranking_users_per_s"] = len(rows) / max(eval_seconds - (time.perf_counter() - start), 1e-9)
    row["eval_NDCG@10"] = result.metrics["NDCG@10"]
    state = scorer.state({"item_ids": histories[:1]})
    # The allocation models score with several vectors a user (the episode's `active` [B, K]).
    row["vectors_per_user"] = int(state["active"].shape[-1]) if isinstance(state, dict) and "active" in state else 1
    row["matmul_users_per_s"] = _matmul_users_per_second(int(model.output_embeddings().shape[-1]), vocab_size,
                                                         len(rows), row["vectors_per_user"])

    with tempfile.TemporaryDirectory(dir=args.work_dir) as exported:
        version = os.path.join(exported, "model", "1")
        start = time.perf_counter()
        export_saved_model(model, prepared.vocab, prepared.item_counts, MAX_LEN, version)
        row["export_s"] = time.perf_counter() - start
        row["export_bytes"] = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(version) for f in fs)
        row["peak_rss"] = _peak_rss()  # before the server: it is another process
        served = _serve(os.path.dirname(version), args.serve_seconds)
    row.update(serve_p50_ms=served["p50_ms"], serve_p99_ms=served["p99_ms"], serve_requests=served["requests"],
               serve_failed=served["failed"])
    row["read_rss_per_interaction"] = row["read_rss"] / max(row["interactions"], 1)
    return {key: (float(value) if isinstance(value, np.floating) else value) for key, value in row.items()}


def _timed(command, timeout: float) -> dict:
    """Runs `command`; {seconds, peak_rss (of that process alone), stdout, returncode}."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        while True:  # os.wait4: this child's own rusage (RUSAGE_CHILDREN is a maximum over every child)
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() - start > timeout:
                process.kill()
                process.wait()
                raise RuntimeError(f"timed out after {timeout:.0f} s: {command[3]}")
            time.sleep(0.2)
        peak = usage.ru_maxrss * 1024  # Linux reports KiB
        out.seek(0), err.seek(0)
        done = {"seconds": time.perf_counter() - start, "peak_rss": peak, "stdout": out.read(),
                "returncode": process.returncode, "stderr": err.read()}
    if done["returncode"] != 0:
        reason = "killed (out of memory?)" if done["returncode"] in (-9, 137) else f"exit {done['returncode']}"
        tail = (done["stderr"].strip().splitlines() or [""])[-1][:300]
        raise RuntimeError(f"{command[3]}: {reason}: {tail}")
    return done


def complete(size: str, run: str, args) -> dict:
    """One `--complete` row: `tfrec-dyn train`, `tfrec-dyn export`, one served load (see the module docstring)."""
    from tfrec_dyn.models import MODELS
    from tfrec_dyn.training.config import TP_OPTION_NAMES

    model, loss, *options = run.split(":")
    row = {"size": size, "model": model, "loss": loss, "options": ":".join(options), "optimizer": args.optimizer}
    fmt = "jd" if getattr(MODELS[model], "side_fields", ()) else "user-item"
    extra = []
    for option in options:
        key, value = option.split("=", 1)
        extra += ([f"--{key}", value] if key == "trainer" else ["--trainer-option", option]
                  if key in TP_OPTION_NAMES else ["--hp", option])
    cli = [sys.executable, "-m", "tfrec_dyn"]
    try:
        with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
            trained = _timed(cli + ["train", "--data", log_path(args.work_dir, size, fmt), "--format", fmt,
                                    "--model", model, "--loss", loss, "--epochs", "1", "--validate-every", "0", "--max-len", str(MAX_LEN),
                                    "--batch-size", str(BATCH), "--optimizer", args.optimizer,
                                    "--eval-users", str(args.eval_users), "--out", os.path.join(work, "run"),
                                    "--quiet", "--json", *extra], args.timeout)
            summary = json.loads(trained["stdout"][trained["stdout"].index("{"):])
            base = os.path.join(work, "served")
            exported = _timed(cli + ["export", os.path.join(work, "run"), "--model_base_path", base], args.timeout)
            export_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(base) for f in fs)
            served = _serve(base, args.serve_seconds)
            if args.index_probes:  # the same run served from an approximate index, and its recall
                indexed = _timed(cli + ["export", os.path.join(work, "run"), "--model_base_path", base + "_index",
                                        "--index-probes", str(args.index_probes), "--json"], args.timeout)
                index = json.loads(indexed["stdout"].strip().splitlines()[-1])
                served_index = _serve(base + "_index", args.serve_seconds)
                row.update(index_clusters=index["index_clusters"], index_probes=index["index_probes"],
                           index_recall_at_10=index["index_recall_at_10"], index_export_s=indexed["seconds"],
                           index_p50_ms=served_index["p50_ms"], index_p99_ms=served_index["p99_ms"])
    except (RuntimeError, ValueError) as error:
        return {**row, "failed": str(error)}
    row.update(train_command_s=trained["seconds"], train_s=summary["train_seconds"], train_peak_rss=trained["peak_rss"],
               export_s=exported["seconds"], export_peak_rss=exported["peak_rss"], export_bytes=export_bytes,
               serve_p50_ms=served["p50_ms"], serve_p99_ms=served["p99_ms"], serve_requests=served["requests"],
               serve_failed=served["failed"])
    for protocol, metrics in summary["protocols"].items():
        row[f"{protocol}_NDCG@10"] = metrics["NDCG@10"]
    return row


def complete_report(results, command: str) -> str:
    lines = [f"`{command}`", "",
             f"{os.cpu_count()} CPU core(s); one epoch, batch {BATCH}, max_len {MAX_LEN}; peak RSS of each command's "
             "process alone.", "",
             "| size | model | loss | options | train command s | of which training s | peak RSS MB | "
             "full NDCG@10 | sampled NDCG@10 | export s | export MB | serve p50 ms | serve p99 ms | requests |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        head = f"| {r['size']} | {r['model']} | {r['loss']} | {r['options'] or '—'} |"
        if "failed" in r:
            lines.append(f"{head} failed: {r['failed']} |" + " |" * 9)
            continue
        lines.append(f"{head} {r['train_command_s']:,.0f} | {r['train_s']:,.0f} | "
                     f"{_mb(max(r['train_peak_rss'], r['export_peak_rss']))} | "
                     f"{r.get('full_NDCG@10', float('nan')):.4f} | "
                     f"{r.get('sampled_NDCG@10', float('nan')):.4f} | {r['export_s']:.0f} | {_mb(r['export_bytes'])} | "
                     f"{r['serve_p50_ms']:.1f} | {r['serve_p99_ms']:.1f} | {r['serve_requests']:,} |")
    indexed = [r for r in results if "index_recall_at_10" in r]
    if indexed:
        lines += ["", "The same models served from the approximate index (`tfrec-dyn export --index-probes`); "
                  "recall@10 against exact top-k on 1,000 test users:", "",
                  "| size | model | loss | clusters | probed | recall@10 | export s | serve p50 ms | serve p99 ms |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['size']} | {r['model']} | {r['loss']} | {r['index_clusters']:,} | {r['index_probes']} | "
                  f"{r['index_recall_at_10']:.4f} | {r['index_export_s']:.0f} | {r['index_p50_ms']:.1f} | "
                  f"{r['index_p99_ms']:.1f} |" for r in indexed]
    return "\n".join(lines)


def _run_worker(size, model, loss, args) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", size, model, loss, "--work-dir", args.work_dir,
               "--steps", str(args.steps), "--eval-users", str(args.eval_users),
               "--serve-seconds", str(args.serve_seconds), "--optimizer", args.optimizer]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"size": size, "model": model, "loss": loss, "failed": f"timed out after {args.timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        reason = "killed (out of memory?)" if done.returncode in (-9, 137) else f"exit {done.returncode}"
        tail = (done.stderr.strip().splitlines() or [""])[-1][:300]
        return {"size": size, "model": model, "loss": loss, "failed": f"{reason}: {tail}"}
    return json.loads(lines[-1])


def _mb(value) -> str:
    return f"{value / 2 ** 20:,.0f}"


def report(results, command: str) -> str:
    done = [r for r in results if "failed" not in r]
    lines = [f"`{command}`", "",
             f"{os.cpu_count()} CPU core(s), {platform.processor() or platform.machine()}, "
             f"load average at the end {os.getloadavg()[0]:.2f}; batch {BATCH}, max_len {MAX_LEN}, "
             f"optimizer {', '.join(sorted({r.get('optimizer', 'adam') for r in results}))}.", "",
             "| size | model | loss | users | items | interactions | lines/s read | prepare s | train seq/s | "
             "eval users/s | ranking users/s | vectors a user | matmul users/s | ranking ÷ matmul | export MB | serve p50 ms | serve p99 ms | "
             "peak RSS MB | read RSS/interaction B |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if "failed" in r:
            lines.append(f"| {r['size']} | {r['model']} | {r['loss']} | failed: {r['failed']} |" + " |" * 15)
            continue
        lines.append(
            f"| {r['size']} | {r['model']} | {r['loss']} | {r['users']:,} | {r['items']:,} | {r['interactions']:,} | "
            f"{r['lines_per_s']:,.0f} | {r['prepare_s']:.1f} | {r['train_sequences_per_s']:,.0f} | "
            f"{r['eval_users_per_s']:,.0f} | {r.get('ranking_users_per_s', float('nan')):,.0f} | "
            f"{r.get('vectors_per_user', 1)} | {r['matmul_users_per_s']:,.0f} | {r.get('ranking_users_per_s', float('nan')) / r['matmul_users_per_s']:.2f} | {_mb(r['export_bytes'])} | "
            f"{r['serve_p50_ms']:.1f} | {r['serve_p99_ms']:.1f} | {_mb(r['peak_rss'])} | "
            f"{r['read_rss_per_interaction']:.0f} |")
    sizes = [s for s in SIZES if any(r["size"] == s for r in done)]
    if len(sizes) > 1:
        lines += ["", f"Training sequences/s at each size ÷ at {sizes[0]} (same model and loss, same run):", "",
                  "| model | loss | " + " | ".join(sizes[1:]) + " |", "|---|---|" + "---:|" * (len(sizes) - 1)]
        for model, loss in RUNS:
            speed = {r["size"]: r["train_sequences_per_s"] for r in done if (r["model"], r["loss"]) == (model, loss)}
            if sizes[0] in speed:
                cells = [f"{speed[s] / speed[sizes[0]]:.2f}" if s in speed else "—" for s in sizes[1:]]
                lines.append(f"| {model} | {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    from tfrec_dyn.training.config import OPTIMIZERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["S", "M"])
    parser.add_argument("--runs", nargs="+", metavar="MODEL:LOSS", help="default: every model (see RUNS)")
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps (after as many untimed)")
    parser.add_argument("--eval-users", type=int, default=2000)
    parser.add_argument("--serve-seconds", type=float, default=15)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="lazy_adam")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per (size, model, loss) row")
    parser.add_argument("--out", help="also write the Markdown report here")
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--index-probes", type=int, default=0, metavar="P",
                        help="with --complete: also export with an approximate index probing P clusters, "
                             "serve it and report its recall@10 against exact top-k")
    parser.add_argument("--complete", action="store_true",
                        help="run the CLI end to end per row (train one epoch, evaluate, export, serve)")
    parser.add_argument("--worker", nargs=3, metavar=("SIZE", "MODEL", "LOSS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.path.insert(0, HERE)
        print(json.dumps(measure(*args.worker, args)), flush=True)
        return 0
    runs = args.runs or [f"{model}:{loss}" for model, loss in RUNS]
    results = []
    for size in args.sizes:
        start = time.perf_counter()
        log_path(args.work_dir, size)
        print(f"{size}: log ready in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        for run in runs:
            if args.complete:
                results.append(complete(size, run, args))
            else:
                results.append(_run_worker(size, *run.split(":", 1), args))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
            if args.json:  # after every row: a long run keeps what it has measured
                with open(args.json, "w") as f:
                    json.dump(results, f, indent=1)
    text = (complete_report if args.complete else report)(results, "python " + shlex.join(sys.argv))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 1 if any("failed" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
