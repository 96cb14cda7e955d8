"""Validation-driven training on MovieLens-100K: what early stopping gives, against fixed epochs.

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/validation_stopping.py --seeds 0 1 2 \\
        --out benchmarks/results/validation_stopping.md --json benchmarks/results/validation_stopping.json

Each model is trained once per seed for `--max-epochs` (the CLI default,
200) with the library's defaults, and after every epoch the run records
full-ranking HR@10 / NDCG@10 on the validation split (`ValidationCallback`,
what training watches) and HR@10 / NDCG@10 / MRR on the test split under both
protocols.  Early stopping with patience P and the best weights restored
stops at the first epoch P checks after the best one and ends with the
best epoch's weights; its test figures are the recorded ones of that best
epoch, exactly: stopping only cuts the same trajectory short (every epoch's
batches depend on the seed and the epoch number alone, and validating draws
no random numbers).  `--check` trains seed 0 of the first model once more
with the real early stopping and checks that it ends where the curve says
(if that curve was kept by `--resume`, it is recorded again first: float
rounding differs between CPU models, so a curve recorded on another machine
parts from this one's after some epochs).

Tables: test figures with the CLI defaults (the default patience: 50 checks
on ML-100K, `tfrec_dyn.training.validation.default_patience`) next to those at a
fixed epoch budget (the one `baselines_ml100k.py` trains, read off the same
runs), the epochs trained, and the test NDCG@10 and epochs for other
patiences.

`--until-patience` ends each run 50 checks (the largest patience in the
table) after its best one instead of at `--max-epochs`: every figure but the
oracle (then the best of the recorded part) is the same, for less training.

`--data jd-appliances` / `jd-computers`: the JD samples as item sequences,
as `adasplit.py` reads them (batches of 32, every item a candidate: JD
sessions return to items); the fixed budgets are `adasplit.py`'s where it
has one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

import tfrec_dyn  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tf_keras as keras
from adasplit import JD_EPOCHS, data_settings, prepared_data
from baselines_ml100k import DEFAULT_EPOCHS, DEFAULT_JD_DIR, command_line, mean_std, write_file
from tfrec_dyn.data.input_pipeline import steps_per_epoch
from tfrec_dyn.metrics.evaluation import model_features, negatives_cache_dir, split_negatives
from tfrec_dyn.metrics.protocols import evaluate
from tfrec_dyn.metrics.scoring import Scorer
from tfrec_dyn.training import PreparedData, TrainConfig
from tfrec_dyn.training.trainer import fit
from tfrec_dyn.training.validation import MAX_PATIENCE, MIN_PATIENCE, PATIENCE_STEPS
from tfrec_dyn.training.validation import default_patience as patience_for, early_stopping

# name -> (registered model, TrainConfig overrides); every other setting is the library default.
MODELS = {
    "sasrec": ("sasrec", {}),
    "gsasrec": ("gsasrec", {}),
    "hstu": ("hstu", {}),
    "gru4rec": ("gru4rec", {}),
    "caser": ("caser", {}),
    "retr": ("retr", {}),
    "rdrsr": ("rdrsr", {}),  # its defaults are rdrsr_ml100k.py's "rdrsr" variant
    # the authors' ML-1M temperature (the default, 0.2, was chosen on ML-100K validation)
    "hstu-t0.05": ("hstu", {"hyperparameters": {"temperature": 0.05}}),
}
# An item table whose scale does not shrink with the catalogue (docs/scale.md: the Glorot default
# starts SASRec, RETR and HSTU slowly at 100k items and more): is it as good on small data?
UNIFORM_TABLE = ("sasrec", "gsasrec", "hstu", "retr")
MODELS.update({f"{name}-uniform": (MODELS[name][0], {"hyperparameters": {"embeddings_initializer": "uniform"}})
               for name in UNIFORM_TABLE})
# the docs' tables' budgets (RDRSR: rdrsr_ml100k.RDRSR_EPOCHS); on the JD samples adasplit.py's
FIXED_EPOCHS = {**DEFAULT_EPOCHS, "gsasrec": 200, "hstu": 200, "hstu-t0.05": 200, "retr": 200, "rdrsr": 60}
FIXED_EPOCHS.update({f"{name}-uniform": FIXED_EPOCHS[name] for name in UNIFORM_TABLE})
PATIENCES = (5, 10, 20, 30, 50)
PROTOCOLS = ("full", "sampled")
METRICS = ("HR@10", "NDCG@10", "MRR")


class TestRecorder(keras.callbacks.Callback):
    """Test HR@10 / NDCG@10 / MRR under both protocols after every epoch (one traced scorer)."""

    def __init__(self, data: PreparedData, config: TrainConfig):
        super().__init__()
        self.arrays = data.eval_arrays("test", config.max_len)
        self.negatives = split_negatives(self.arrays, data.vocab, data.item_counts, config.num_eval_negatives,
                                         config.eval_sampler, negatives_cache_dir())
        self.exclude_seen = config.exclude_seen
        self.curve = {protocol: [] for protocol in PROTOCOLS}
        self.scorer = self.features = None

    def on_train_begin(self, logs=None):
        self.scorer = Scorer(self.model)
        self.features = model_features(self.model, self.arrays.features)

    def on_epoch_end(self, epoch, logs=None):
        for protocol in PROTOCOLS:
            figures = evaluate(self.scorer, self.arrays.histories, self.arrays.targets, protocol=protocol, ks=(10,),
                               negatives=self.negatives if protocol == "sampled" else None,
                               exclude_seen=self.exclude_seen, features=self.features).metrics
            self.curve[protocol].append({name: figures[name] for name in METRICS})


def stopping(validation_ndcg, patience: int):
    """(best epoch, last epoch trained), 1-based, of the library's early stopping
    with `patience` on a validation curve checked every epoch."""
    best, stop = early_stopping(validation_ndcg, patience)
    return best + 1, len(validation_ndcg) if stop is None else stop + 1


def fixed_epochs(data_name: str):
    return FIXED_EPOCHS if data_name == "ml-100k" else JD_EPOCHS


def train_curve(data, data_name, name, seed, max_epochs, patience=0, log=sys.stderr):
    """One training of `max_epochs` with the curves recorded; `patience` None: the
    library's early stopping (the default patience, best weights), 0: none."""
    model, overrides = MODELS[name]
    config = TrainConfig(model=model, epochs=max_epochs, seed=seed, patience=patience,
                         restore_best=patience != 0, **data_settings(data_name), **overrides)
    recorder = TestRecorder(data, config)
    start = time.perf_counter()
    _, history, seconds = fit(config, data.train_sequences, data.vocab.size, data.item_counts, [recorder], verbose=0,
                              side=data.train_side, side_vocab_sizes=data.side_vocab_sizes(),
                              validation=data.eval_arrays("validation", config.max_len))
    print(f"{name} seed {seed}: {len(history.history['loss'])} epochs, {seconds:.0f} s training, "
          f"{time.perf_counter() - start:.0f} s with the evaluations", file=log, flush=True)
    return {"seed": seed, "train_seconds": seconds, "validation_ndcg10": history.validation["NDCG@10"],
            "validation_hr10": history.validation["HR@10"], "test": recorder.curve,
            "best_epoch": history.validation["best_epoch"], "stopped_epoch": history.validation["stopped_epoch"]}


def at(run, epoch, protocol, metric):
    return run["test"][protocol][epoch - 1][metric]


def report(results, command, default_patience, data_name, steps, max_epochs) -> str:
    parts = [f"Command: `{command}`  ",
             "Seeds: " + " ".join(str(r["seed"]) for r in next(iter(results.values()))) +
             f"; mean ± sample std over seeds; {data_name} leave-one-out; library defaults for every model; "
             f"early stopping on full-ranking validation NDCG@10, patience {default_patience} (the CLI "
             f"default here: {PATIENCE_STEPS} training steps at {steps} an epoch, within {MIN_PATIENCE} to "
             f"{MAX_PATIENCE} checks), best weights restored."]
    budgets = fixed_epochs(data_name)
    for protocol in PROTOCOLS:
        parts += [f"\n#### Test, {protocol} protocol: CLI defaults (validation-stopped) vs fixed epochs\n",
                  "| model | epochs trained | best epoch | HR@10 | NDCG@10 | MRR | fixed epochs | HR@10 | NDCG@10 "
                  "| MRR | NDCG@10 change |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, runs in results.items():
            stops = [stopping(r["validation_ndcg10"], default_patience) for r in runs]
            stopped = {m: [at(r, best, protocol, m) for r, (best, _) in zip(runs, stops)] for m in METRICS}
            fixed = budgets.get(name)
            # none: no fixed-epoch table to compare with, or (--until-patience) a run ended before it
            if fixed is None or any(r.get("record_patience") and len(r["test"][protocol]) < fixed
                                    for r in runs):
                parts.append(f"| {name} | {np.mean([s for _, s in stops]):.0f} | {np.mean([b for b, _ in stops]):.0f} | "
                             + " | ".join(mean_std(stopped[m]) for m in METRICS) + " | — | — | — | — | — |")
                continue
            budget = {m: [at(r, min(fixed, len(r["test"][protocol])), protocol, m) for r in runs] for m in METRICS}
            change = np.mean(stopped["NDCG@10"]) / np.mean(budget["NDCG@10"]) - 1
            parts.append(f"| {name} | {np.mean([s for _, s in stops]):.0f} | {np.mean([b for b, _ in stops]):.0f} | "
                         + " | ".join(mean_std(stopped[m]) for m in METRICS) + f" | {fixed} | "
                         + " | ".join(mean_std(budget[m]) for m in METRICS) + f" | {change:+.1%} |")
    capped = sorted({name for name, runs in results.items() for r in runs
                     if stopping(r["validation_ndcg10"], default_patience)[1] == len(r["validation_ndcg10"])
                     == max_epochs < TrainConfig().epochs})
    if capped:  # elsewhere the figures are those of the CLI's 200-epoch maximum: stopping came first
        parts.append(f"\nStopped by the epoch cap, not by patience (the CLI's maximum is {TrainConfig().epochs}): "
                     + ", ".join(capped) + ".")
    parts += ["\n#### Patience: full-protocol test NDCG@10 (epochs trained)\n",
              "| model | " + " | ".join(f"patience {p}" for p in PATIENCES) + " | best of the curve (oracle) |",
              "|---|" + "---:|" * (len(PATIENCES) + 1)]
    for name, runs in results.items():
        cells = []
        for patience in PATIENCES:
            stops = [stopping(r["validation_ndcg10"], patience) for r in runs]
            ndcg = [at(r, best, "full", "NDCG@10") for r, (best, _) in zip(runs, stops)]
            cells.append(f"{mean_std(ndcg)} ({np.mean([s for _, s in stops]):.0f})")
        oracle = [max(e["NDCG@10"] for e in r["test"]["full"]) for r in runs]
        parts.append(f"| {name} | " + " | ".join(cells) + f" | {mean_std(oracle)} |")
    # What a patience is chosen on: validation alone (the test figures above only report).
    patiences = sorted({*PATIENCES, default_patience})
    parts += ["\n#### Patience: validation NDCG@10 left on the table\n",
              "How far the validation NDCG@10 of the restored epoch is below the best of the recorded "
              "validation curve (mean over seeds):\n",
              "| model | " + " | ".join(f"patience {p}" for p in patiences) + " |",
              "|---|" + "---:|" * len(patiences)]
    for name, runs in results.items():
        cells = []
        for patience in patiences:
            shortfall = [1 - r["validation_ndcg10"][stopping(r["validation_ndcg10"], patience)[0] - 1]
                         / max(r["validation_ndcg10"]) for r in runs]
            cells.append(f"{np.mean(shortfall):.1%}")
        parts.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(parts) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--data", default="ml-100k", help="ml-100k, jd-appliances or jd-computers")
    parser.add_argument("--jd-dir", default=DEFAULT_JD_DIR, help="folder of the JD micro-behaviour samples")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--until-patience", action="store_true",
                        help=f"end each run {max(PATIENCES)} checks after its best (not at --max-epochs)")
    parser.add_argument("--check", action="store_true",
                        help="also train seed 0 of the first model with the real early stopping and compare")
    parser.add_argument("--out")
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --json")
    args = parser.parse_args(argv)
    command = command_line("validation_stopping.py", argv)
    data = prepared_data(args.data, args.jd_dir)
    # The CLI's patience (`TrainConfig.patience` unset): a function of the steps in an epoch.
    steps = steps_per_epoch(data.train_sequences, TrainConfig(**data_settings(args.data)).batch_size)
    default_patience = TrainConfig().patience or patience_for(steps)
    record_patience = max(PATIENCES) if args.until_patience else 0
    assert record_patience == 0 or default_patience <= record_patience, (default_patience, record_patience)
    done = {}
    if args.resume and args.json_out and os.path.exists(args.json_out):
        with open(args.json_out) as f:
            done = json.load(f)["results"]
    results, trained = {}, set()
    for name in args.models:
        for seed in args.seeds:
            kept = [r for r in done.get(name, []) if r["seed"] == seed
                    and r.get("record_patience", 0) == record_patience and (len(r["validation_ndcg10"]) == args.max_epochs
                         or r["stopped_epoch"] and len(r["validation_ndcg10"]) < args.max_epochs)]
            if not kept:
                kept = [{**train_curve(data, args.data, name, seed, args.max_epochs, record_patience),
                         "record_patience": record_patience}]
                trained.add((name, seed))
            results.setdefault(name, []).append(kept[0])
            if args.json_out:
                write_file(args.json_out, json.dumps({"command": command, "max_epochs": args.max_epochs,
                                                      "results": results}, indent=2, default=float))
    if args.check:
        name, run = args.models[0], results[args.models[0]][0]
        if (name, run["seed"]) not in trained:  # a kept curve may come from another machine: record it here
            run = train_curve(data, args.data, name, run["seed"], args.max_epochs, record_patience)
        best, stopped = stopping(run["validation_ndcg10"], default_patience)
        real = train_curve(data, args.data, name, run["seed"], args.max_epochs, patience=None)
        assert (real["best_epoch"], real["stopped_epoch"] or args.max_epochs) == (best, stopped), (real, best, stopped)
        np.testing.assert_allclose(real["validation_ndcg10"], run["validation_ndcg10"][:stopped], atol=1e-6)
        print(f"--check: early stopping of {name} seed {run['seed']} stopped at {stopped} with the best epoch "
              f"{best}, as its curve says", file=sys.stderr)
    text = report(results, command, default_patience, args.data, steps, args.max_epochs)
    print(text)
    if args.out:
        write_file(args.out, text)


if __name__ == "__main__":
    main()
