"""RDRSR vs its fixed-count variants and the baselines on MovieLens-100K (the RDRSR paper's Table 1/2 setting).

The paper's protocol: leave-one-out, every item the user has not interacted
with a candidate (our `full` protocol), d = 64, window t = 10, k = 4 interests,
o = 99 sampled negatives, Adam 1e-3; HR and NDCG at 10 and 50.

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/rdrsr_ml100k.py --seeds 0 1 2 \\
        --out benchmarks/results/rdrsr_ml100k.md --json benchmarks/results/rdrsr_ml100k.json

Variants: `rdrsr` (k = 4, the count chosen by the DID), `rdrsr-3` (k = 3),
`rdrsr-f3` (RDRSR-F: the DID's count head off, always 3 interests), and
SASRec, GRU4Rec and Caser with their budgets from `baselines_ml100k.py`.
For every RDRSR variant the report also gives the distribution of the
interest count chosen for the test users (inference-time arg-max).

The RDRSR epoch budget (60) was picked with the validation sweep: validation
NDCG@10 still rising at 50 epochs, best at 55 (benchmarks/results/rdrsr_epoch_sweep.md):

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/rdrsr_ml100k.py --variants rdrsr --seeds 0 \
        --epochs 60 --validate-every 5 --out benchmarks/results/rdrsr_epoch_sweep.md \
        --json benchmarks/results/rdrsr_epoch_sweep.json

A full run takes hours on 2 CPU cores (an RDRSR epoch is about 12-19 s there):
`--json` is rewritten after every training run and `--resume` keeps the runs
already in it (same configuration), so the benchmark can go on where it stopped.
"""

from __future__ import annotations

import argparse

import tfrec_dyn  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from baselines_ml100k import (DEFAULT_EPOCHS, add_variant_arguments, budget_fields, command_line, count_table,
                              group_counts, json_writer, report, resumable, run, write_file)
from tfrec_dyn.training import TrainConfig

RDRSR_EPOCHS = 60
# name -> (model, hyperparameters, epochs); d = 64 is every model's default.
VARIANTS = {
    "rdrsr": ("rdrsr", {"window_len": 10, "max_interests": 4, "num_negatives": 99}, RDRSR_EPOCHS),
    "rdrsr-3": ("rdrsr", {"window_len": 10, "max_interests": 3, "num_negatives": 99}, RDRSR_EPOCHS),
    "rdrsr-f3": ("rdrsr", {"window_len": 10, "max_interests": 3, "fixed_interests": 3, "num_negatives": 99},
                 RDRSR_EPOCHS),
    "sasrec": ("sasrec", {}, DEFAULT_EPOCHS["sasrec"]),
    "gru4rec": ("gru4rec", {}, DEFAULT_EPOCHS["gru4rec"]),
    "caser": ("caser", {}, DEFAULT_EPOCHS["caser"]),
}
METRICS = ("HR@10", "NDCG@10", "HR@50", "NDCG@50")
PAPER = {"HR@10": 0.1480, "NDCG@10": 0.0660, "HR@50": 0.4390, "NDCG@50": 0.1290}  # RDRSR, Table 1


def configs(names, args):
    return {name: TrainConfig(model=VARIANTS[name][0], data="ml-100k", max_len=args.max_len,
                              hyperparameters=dict(VARIANTS[name][1]), **budget_fields(args, VARIANTS[name][2]))
            for name in names}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_variant_arguments(parser, VARIANTS)
    args = parser.parse_args(argv)

    model_configs = configs(args.variants, args)
    command = command_line("rdrsr_ml100k.py", argv)

    write_json = json_writer(args.json_out, command, model_configs)
    done = resumable(args.json_out, model_configs) if args.resume else {}
    results = run(model_configs, args.seeds, extra=group_counts, done=done, checkpoint=write_json)
    write_json(results)
    paper = " | ".join(f"{PAPER[m]:.4f}" for m in METRICS)
    text = report(results, model_configs, args.seeds, command.strip(), metrics=METRICS) + \
        count_table(results, "Interest count") + \
        f"\nThe paper's RDRSR on MovieLens-100K (Table 1, full ranking): {paper} ({' / '.join(METRICS)}).\n"
    print(text)
    if args.out:
        write_file(args.out, text)


if __name__ == "__main__":
    main()
