"""A hyperparameter sweep chosen on validation, never on test (ML-100K by default).

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/sweep.py --model hstu \\
        --variant attn-dropout-0:attention_dropout=0 --variant blocks-1:num_blocks=1 \\
        --out benchmarks/results/hstu_sweep.md --json benchmarks/results/hstu_sweep.json

Each variant is the model's library defaults with the listed changes (a
`TrainConfig` field such as `max_len` or `learning_rate`, otherwise a model
hyperparameter, as `tfrec-dyn train --hp`); "default" is always run.
`--base` moves the starting point: every variant, "default" included, starts
from the defaults with those changes (a variant's own changes win).  Each
trains as the CLI does (validation after every epoch, early stopping, the
best check's weights) on `--seed`, and the table orders the variants by their
best validation NDCG@10, the figure a user without the test split would
choose by.  Test figures are shown beside it for the record; the chosen
variant's 3-seed figures come from `validation_stopping.py`, not from here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import tfrec_dyn  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from baselines_ml100k import command_line, write_file
from tfrec_dyn.training import PreparedData, TrainConfig
from tfrec_dyn.training.flags import key_value
from tfrec_dyn.training.trainer import train
from tfrec_dyn.training.validation import MONITOR

CONFIG_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def parse_changes(text: str):
    """'key=value,key=value' -> {key: value}, values as `tfrec-dyn train --hp` reads them."""
    return dict(key_value(change) for change in text.split(","))


def parse_variant(text: str):
    """'NAME:key=value,key=value' -> (NAME, {key: value})."""
    name, _, changes = text.partition(":")
    if not name or not changes:
        raise argparse.ArgumentTypeError(f"a variant is NAME:key=value[,key=value...], got {text!r}")
    return name, parse_changes(changes)


def variant_config(model: str, data: str, seed: int, epochs: int, settings) -> TrainConfig:
    fields = {"epochs": epochs, **{k: v for k, v in settings.items() if k in CONFIG_FIELDS}}
    hyperparameters = {k: v for k, v in settings.items() if k not in CONFIG_FIELDS}
    return TrainConfig(model=model, data=data, seed=seed, hyperparameters=hyperparameters, **fields)


def run_variant(config: TrainConfig, data: PreparedData):
    start = time.perf_counter()
    result = train(config, data=data, verbose=0)
    validation = result.history["validation"]
    return {"epochs": len(result.history["loss"]), "best_epoch": validation["best_epoch"],
            "validation": validation[f"best_{MONITOR}"], "train_seconds": result.train_seconds,
            "seconds": time.perf_counter() - start,
            "test": {protocol: result.metrics[protocol] for protocol in ("full", "sampled")}}


def report(command: str, model: str, data: str, seed: int, base, variants, runs) -> str:
    start = ("; every variant starts from the library defaults with " + ", ".join(f"{k}={v}" for k, v in base.items())
             if base else "")
    lines = [f"Command: `{command}`  ",
             f"{model}, seed {seed}, {data} leave-one-out, the CLI's validation-based stopping{start}; ordered by best "
             f"validation {MONITOR} (what the choice is made on); test figures for the record.\n",
             f"| variant | changes | epochs | best epoch | validation {MONITOR} | test full HR@10 | test full NDCG@10 "
             "| test sampled NDCG@10 | train s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in sorted(runs, key=lambda n: -runs[n]["validation"]):
        run = runs[name]
        changes = ", ".join(f"{k}={v}" for k, v in variants[name].items()) or "none (the starting point)"
        lines.append(f"| {name} | {changes} | {run['epochs']} | {run['best_epoch']} | {run['validation']:.4f} | "
                     f"{run['test']['full']['HR@10']:.4f} | {run['test']['full']['NDCG@10']:.4f} | "
                     f"{run['test']['sampled']['NDCG@10']:.4f} | {run['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="ml-100k", help="what `tfrec-dyn train --data` takes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs, help="the maximum, as the CLI's")
    parser.add_argument("--base", type=parse_changes, default={},
                        help="key=value[,key=value...]: what every variant starts from instead of the library defaults")
    parser.add_argument("--variant", action="append", type=parse_variant, default=[],
                        help="NAME:key=value[,key=value...] (repeatable)")
    parser.add_argument("--out")
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--resume", action="store_true", help="keep the variants already in --json")
    args = parser.parse_args(argv)
    command = command_line("sweep.py", argv)
    variants = {"default": {}, **dict(args.variant)}
    done = {}
    if args.resume and args.json_out and os.path.exists(args.json_out):
        with open(args.json_out) as f:
            done = json.load(f)["runs"]
    data = PreparedData.from_config(TrainConfig(model=args.model, data=args.data))
    runs = {}
    for name, settings in variants.items():
        kept = done.get(name)
        if (kept and kept["settings"] == settings and kept["max_epochs"] == args.epochs
                and kept.get("base", {}) == args.base):
            runs[name] = kept
        else:
            config = variant_config(args.model, args.data, args.seed, args.epochs, {**args.base, **settings})
            runs[name] = {"settings": settings, "base": args.base, "max_epochs": args.epochs,
                          **run_variant(config, data)}
            print(f"{name}: validation {runs[name]['validation']:.4f} after {runs[name]['epochs']} epochs, "
                  f"{runs[name]['seconds']:.0f} s", file=sys.stderr, flush=True)
        if args.json_out:
            write_file(args.json_out, json.dumps({"command": command, "runs": runs}, indent=2, default=float))
    text = report(command, args.model, args.data, args.seed, args.base, variants, runs)
    print(text)
    if args.out:
        write_file(args.out, text)


if __name__ == "__main__":
    main()
