"""SASRec training speed on MovieLens-100K, as ratios to baselines measured in the same run.

    .venv/bin/python benchmarks/train_speed.py

1. Throughput: training sequences per second over 5 epochs (after one warm-up
   epoch) for SASRec at max_len 50 and 200 and for GRU4Rec at max_len 50 (the
   baseline).
2. Time to target: wall time of SASRec training until the test split's full
   ranking reaches HR@10 >= 0.148 and NDCG@10 >= 0.066 (the best figures the
   RDRSR paper reports on ML-100K), checked every 5 epochs.  The check uses the
   test split only to time the run, never to select a model.
"""

from __future__ import annotations

import argparse
import os
import time

import tf_keras as keras

import tfrec_dyn  # noqa: F401
from tfrec_dyn.training import PreparedData, TrainConfig
from tfrec_dyn.training.trainer import evaluate_model, fit

TARGET = {"HR@10": 0.148, "NDCG@10": 0.066}


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def throughput(data, **settings):
    config = TrainConfig(epochs=6, **settings)
    timer = _EpochTimer()
    fit(config, data.train_sequences, data.vocab.size, data.item_counts, callbacks=[timer], verbose=0)
    sequences = sum(1 for s in data.train_sequences if len(s) >= 2)
    per_epoch = sum(timer.seconds[1:]) / len(timer.seconds[1:])
    return sequences / per_epoch, per_epoch


class _StopAtTarget(keras.callbacks.Callback):
    def __init__(self, data, config, every=5):
        super().__init__()
        self.data, self.config, self.every = data, config, every
        self.reached_at, self.figures = None, None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        figures = evaluate_model(self.model, self.data, self.config, protocols=("full",), ks=(10,))["full"].metrics
        self.figures = figures
        if all(figures[k] >= v for k, v in TARGET.items()):
            self.reached_at = epoch + 1
            self.model.stop_training = True


def time_to_target(data, max_epochs=300, **settings):
    config = TrainConfig(epochs=max_epochs, **settings)
    stopper = _StopAtTarget(data, config)
    start = time.perf_counter()
    fit(config, data.train_sequences, data.vocab.size, data.item_counts, callbacks=[stopper], verbose=0)
    return time.perf_counter() - start, stopper.reached_at, stopper.figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = PreparedData.from_config(TrainConfig(data="ml-100k"))
    rows = {
        "GRU4Rec, max_len 50 (baseline)": throughput(data, model="gru4rec", max_len=50, seed=args.seed),
        "SASRec, max_len 50": throughput(data, model="sasrec", max_len=50, seed=args.seed),
        "SASRec, max_len 200": throughput(data, model="sasrec", max_len=200, seed=args.seed),
    }
    baseline = next(iter(rows.values()))[0]
    print(f"MovieLens-100K, {os.cpu_count()} CPU core(s), batch 128, seed {args.seed}\n")
    print("| model | training sequences/s | s/epoch | throughput vs baseline |")
    print("|---|---|---|---|")
    for label, (per_second, per_epoch) in rows.items():
        print(f"| {label} | {per_second:.0f} | {per_epoch:.2f} | {per_second / baseline:.2f}x |")
    print()
    print("| SASRec to full-ranking HR@10 >= 0.148 and NDCG@10 >= 0.066 | wall s | epochs | HR@10 | NDCG@10 |")
    print("|---|---|---|---|---|")
    for label, settings in (("loss bce (paper), max_len 50", {"loss": "bce"}),
                            ("loss ce, max_len 50", {"loss": "ce"})):
        seconds, epochs, figures = time_to_target(data, model="sasrec", max_len=50, seed=args.seed, **settings)
        reached = f"{epochs}" if epochs else "not reached"
        print(f"| {label} | {seconds:.0f} | {reached} | {figures['HR@10']:.4f} | {figures['NDCG@10']:.4f} |")


if __name__ == "__main__":
    main()
