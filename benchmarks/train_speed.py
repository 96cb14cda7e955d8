"""SASRec training speed on MovieLens-100K, as ratios to baselines measured in the same run.

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/train_speed.py --out benchmarks/results/train_speed.md

Prints Markdown tables and the machine's CPU count; absolute seconds depend on
the machine and on whatever else runs on it (the load average is printed too),
the ratios much less.

1. Throughput: training sequences per second and wall time per epoch for
   SASRec at max_len 50 (the subject) and two baselines, GRU4Rec at max_len 50
   and SASRec at max_len 200.  Each trains `--throughput-epochs` epochs through
   `tfrec_dyn.training.trainer.fit` (the model, loss, input pipeline and
   `model.fit` that `tfrec-dyn train` uses); the first epoch (graph tracing) is
   dropped and the median of the others is taken.  One sequence is one user's
   training sequence with a next-item target at every position, so an epoch is
   every training user once.
2. Time to result: wall time of what `tfrec_dyn.training.train` does (read
   and prepare the data, `fit`, evaluate on the test split) for SASRec with
   the settings of `benchmarks/baselines_ml100k.py` (200 epochs, loss "bce",
   max_len 50), once per seed (`--seeds`, default 0 1 2 as there), with the
   mean full-ranking HR@10 and NDCG@10 checked against the target (HR@10 >=
   0.148 and NDCG@10 >= 0.066, the best ML-100K figures of the RDRSR paper)
   and every run's wall time against the 300 s budget; the baseline in the
   same run is GRU4Rec trained with its benchmark budget (100 epochs, loss
   "ce") on the same seeds.  For
   information, every `--check-every` epochs the SASRec run also scores the
   test split (only to time the run, never to pick a model or stop it) and the
   table gives the first epoch, and the training seconds up to it, at which the
   target held; that evaluation time is not counted in the training seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import statistics
import sys
import time

import tfrec_dyn  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.training import PreparedData, TrainConfig
from tfrec_dyn.training.trainer import evaluate_split, fit

TARGET = {"HR@10": 0.148, "NDCG@10": 0.066}
BUDGET_SECONDS = 300.0


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of every epoch."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class TargetWatch(keras.callbacks.Callback):
    """Scores the test split (full protocol) every `every` epochs and records the
    first epoch at which the target held, with the training seconds up to it
    (time spent in these evaluations excluded).  Never stops training."""

    def __init__(self, data: PreparedData, config: TrainConfig, every: int):
        super().__init__()
        self.data, self.config, self.every = data, config, every
        self.first_epoch = self.first_seconds = None
        self.eval_seconds = 0.0

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.every <= 0 or (epoch + 1) % self.every or self.first_epoch is not None:
            return
        start = time.perf_counter()
        figures = evaluate_split(self.model, self.data, self.config, protocols=("full",), ks=(10,))["full"].metrics
        if all(figures[k] >= v for k, v in TARGET.items()):
            self.first_epoch = epoch + 1
            self.first_seconds = start - self._start - self.eval_seconds
        self.eval_seconds += time.perf_counter() - start


def num_training_sequences(data: PreparedData) -> int:
    """Users with an (input, target) pair: at least 2 training items."""
    return sum(len(s) >= 2 for s in data.train_sequences)


def throughput(data: PreparedData, model, max_len: int, epochs: int, seed: int) -> dict:
    """Median epoch seconds of `model` (a name, or a TrainConfig whose max_len/epochs/seed are replaced)."""
    if isinstance(model, TrainConfig):
        config = dataclasses.replace(model, max_len=max_len, epochs=epochs, seed=seed)
    else:
        config = TrainConfig(model=model, max_len=max_len, epochs=epochs, seed=seed)
    timer = EpochTimer()
    net, _, _ = fit(config, data.train_sequences, data.vocab.size, data.item_counts, callbacks=[timer], verbose=0)
    per_epoch = statistics.median(timer.seconds[1:] or timer.seconds)
    return {"name": f"{config.model}, max_len {max_len}, loss {net.loss_name}", "epoch_seconds": per_epoch,
            "sequences_per_second": num_training_sequences(data) / per_epoch}


def time_to_result(model: str, epochs: int, seed: int, check_every: int = 0) -> dict:
    """What `tfrec_dyn.training.train` does without saving: prepare the data, `fit`,
    evaluate on the test split; wall time of all three."""
    start = time.perf_counter()
    config = TrainConfig(model=model, epochs=epochs, max_len=50, seed=seed)
    data = PreparedData.from_config(config)
    watch = TargetWatch(data, config, check_every)
    net, _, train_seconds = fit(config, data.train_sequences, data.vocab.size, data.item_counts,
                                callbacks=[watch], verbose=0)
    full = evaluate_split(net, data, config)["full"].metrics
    total = time.perf_counter() - start - watch.eval_seconds
    return {"name": f"{model}, {epochs} epochs, loss {net.loss_name}, seed {seed}", "total_seconds": total,
            "train_seconds": train_seconds - watch.eval_seconds, "HR@10": full["HR@10"],
            "NDCG@10": full["NDCG@10"], "first_epoch": watch.first_epoch, "first_seconds": watch.first_seconds}


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{cpus} CPU core(s) available (os.cpu_count() = {os.cpu_count()}), {platform.machine()}, "
            f"TensorFlow {tf.__version__}, {len(tf.config.list_physical_devices('GPU'))} GPU(s); "
            f"load average (1, 5, 15 min): {load}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--throughput-epochs", type=int, default=6, help="per configuration; the first is dropped")
    parser.add_argument("--sasrec-epochs", type=int, default=200)
    parser.add_argument("--gru4rec-epochs", type=int, default=100)
    parser.add_argument("--check-every", type=int, default=10,
                        help="epochs between the informational test-split checks (0: none)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="seeds of the time-to-result runs (throughput uses the first)")
    parser.add_argument("--skip-time-to-result", action="store_true", help="throughput only (about a minute)")
    parser.add_argument("--out", help="also write the Markdown to this file")
    args = parser.parse_args(argv)

    command = "TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/train_speed.py " + \
        " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    lines = [f"Command: `{command.strip()}`  ", f"Machine at start: {machine()}", ""]
    data = PreparedData.from_config(TrainConfig())
    n = num_training_sequences(data)

    rows = [throughput(data, "sasrec", 50, args.throughput_epochs, args.seeds[0]),
            throughput(data, "gru4rec", 50, args.throughput_epochs, args.seeds[0]),
            throughput(data, "sasrec", 200, args.throughput_epochs, args.seeds[0])]
    subject = rows[0]
    lines += [f"#### Training throughput ({n} training sequences per epoch, batch 128, "
              f"median of epochs 2-{args.throughput_epochs}, seed {args.seeds[0]})", "",
              "| configuration | s / epoch | sequences / s | SASRec max_len 50 speed ÷ this |",
              "|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['epoch_seconds']:.3f} | {row['sequences_per_second']:.0f} | "
                     f"{subject['sequences_per_second'] / row['sequences_per_second']:.2f}× |")

    if not args.skip_time_to_result:
        sasrec = [time_to_result("sasrec", args.sasrec_epochs, seed, args.check_every) for seed in args.seeds]
        gru = [time_to_result("gru4rec", args.gru4rec_epochs, seed) for seed in args.seeds]
        gru_wall = statistics.mean(r["total_seconds"] for r in gru)
        lines += ["", "#### Time to result (data preparation + training + test evaluation, as `train` does)", "",
                  "| run | wall s | of which training s | full HR@10 | full NDCG@10 | wall ÷ mean GRU4Rec wall |",
                  "|---|---:|---:|---:|---:|---:|"]
        for runs in (sasrec, gru):
            for row in runs:
                lines.append(f"| {row['name']} | {row['total_seconds']:.0f} | {row['train_seconds']:.0f} | "
                             f"{row['HR@10']:.4f} | {row['NDCG@10']:.4f} | {row['total_seconds'] / gru_wall:.2f}× |")
            mean = {k: statistics.mean(r[k] for r in runs) for k in ("total_seconds", "train_seconds", *TARGET)}
            lines.append(f"| **{runs[0]['name'].split(',')[0]}, mean over seeds {' '.join(map(str, args.seeds))}** | "
                         f"{mean['total_seconds']:.0f} | {mean['train_seconds']:.0f} | {mean['HR@10']:.4f} | "
                         f"{mean['NDCG@10']:.4f} | {mean['total_seconds'] / gru_wall:.2f}× |")
        mean = {k: statistics.mean(r[k] for r in sasrec) for k in TARGET}
        reached = all(mean[k] >= v for k, v in TARGET.items())
        per_seed = sum(all(r[k] >= v for k, v in TARGET.items()) for r in sasrec)
        slowest = max(r["total_seconds"] for r in sasrec)
        lines += ["", f"SASRec target (full HR@10 >= {TARGET['HR@10']} and NDCG@10 >= {TARGET['NDCG@10']}, "
                      f"mean over seeds as in baselines_ml100k.py): {'reached' if reached else 'NOT reached'} "
                      f"(HR@10 {mean['HR@10']:.4f}, NDCG@10 {mean['NDCG@10']:.4f}); single runs meeting both: "
                      f"{per_seed} of {len(sasrec)}.  Slowest run {slowest:.0f} s = {slowest / BUDGET_SECONDS:.2f}× "
                      f"the {BUDGET_SECONDS:.0f} s budget ({'within' if slowest <= BUDGET_SECONDS else 'OVER'})."]
        if args.check_every:
            lines.append(f"Test-split check every {args.check_every} epochs (timing only, not model selection): " +
                         "; ".join(f"seed {seed}: " + (f"target first held at epoch {r['first_epoch']} after "
                                                       f"{r['first_seconds']:.0f} s of training" if r["first_epoch"]
                                                       else "never held at a check")
                                   for seed, r in zip(args.seeds, sasrec)) + ".")
    lines += ["", f"Machine at end: {machine()}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
