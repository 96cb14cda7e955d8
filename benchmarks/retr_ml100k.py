"""RETR vs SASRec on MovieLens-100K, with the ablations of the RETR paper's Table 3.

Every variant gets SASRec's budget from `baselines_ml100k.py` (d 64, 2 blocks,
1 head, dropout 0.2, max_len 50, 200 epochs, Adam 1e-3, batch 128) and differs
only in what the variant name says; RETR trains with its own loss (eq. 7, "bpr",
one sampled negative per position) and SASRec with its paper's "bce".

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/retr_ml100k.py --variants sasrec retr \\
        retr-no-router retr-no-hierarchy --seeds 0 1 2 \\
        --out benchmarks/results/retr_ml100k.md --json benchmarks/results/retr_ml100k.json

Prints both protocols' tables (mean ± std over seeds), then parameter counts
and seconds per training epoch as ratios to SASRec's, measured in the same run
(the median of `--speed-epochs` epochs per variant, the first one dropped, as
`train_speed.py` does). `--speed-only` skips the accuracy runs:

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/retr_ml100k.py --speed-only \
        --variants sasrec retr retr-no-router retr-L1 retr-L3 sasrec-L1 sasrec-L3
"""

from __future__ import annotations

import argparse

import numpy as np

import tfrec_dyn  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from baselines_ml100k import DEFAULT_EPOCHS, command_line, json_writer, report, run, write_file
from tfrec_dyn.models import build_model
from tfrec_dyn.training import PreparedData, TrainConfig
from train_speed import machine, throughput

# name -> (model, hyperparameters); everything else is SASRec's budget.
VARIANTS = {
    "sasrec": ("sasrec", {}),
    "retr": ("retr", {}),
    "retr-no-router": ("retr", {"use_router": False}),
    "retr-no-hierarchy": ("retr", {"hierarchical": False}),
    "retr-tau0.4": ("retr", {"temperature": 0.4}),
    "retr-tau1": ("retr", {"temperature": 1.0}),
    "retr-tau2": ("retr", {"temperature": 2.0}),
    "retr-L1": ("retr", {"num_blocks": 1}),
    "retr-L3": ("retr", {"num_blocks": 3}),
    "sasrec-L1": ("sasrec", {"num_blocks": 1}),
    "sasrec-L3": ("sasrec", {"num_blocks": 3}),
    # Beyond the paper's ablations: what else differs between RETR and SASRec here.
    "retr-norm-first": ("retr", {"norm_first": True}),  # SASRec's block arrangement
    "retr-no-router-norm-first": ("retr", {"use_router": False, "norm_first": True}),
    "retr-bce": ("retr", {"loss": "bce"}),  # SASRec's loss
    "retr-ce": ("retr", {"loss": "ce"}),
    "sasrec-ce": ("sasrec", {"loss": "ce"}),
    "retr-mask-keys": ("retr", {"mask_keys": True}),
}


def configs(names, epochs, max_len):
    return {name: TrainConfig(model=VARIANTS[name][0], data="ml-100k", max_len=max_len, epochs=epochs,
                              hyperparameters=dict(VARIANTS[name][1]), validate_every=0)
            for name in names}


def cost_table(model_configs, speed_epochs, seed=0) -> str:
    """Parameters and median seconds per training epoch, each also as a ratio to SASRec's (same run)."""
    data = PreparedData.from_config(next(iter(model_configs.values())))
    params, per_epoch = {}, {}
    for name, c in model_configs.items():
        model = build_model(c.model, data.vocab.size, c.max_len, **c.hyperparameters)
        model({"item_ids": np.ones((1, c.max_len), np.int32)})  # builds the weights
        params[name] = model.count_params()
        per_epoch[name] = throughput(data, c, c.max_len, speed_epochs, seed)["epoch_seconds"]
    base = "sasrec" if "sasrec" in model_configs else next(iter(model_configs))
    lines = [machine() + "\n", f"| model | parameters | × {base} | s / epoch | × {base} |", "|---|---:|---:|---:|---:|"]
    for name in model_configs:
        lines.append(f"| {name} | {params[name]:,} | {params[name] / params[base]:.3f} | "
                     f"{per_epoch[name]:.3f} | {per_epoch[name] / per_epoch[base]:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["sasrec", "retr", "retr-no-router", "retr-no-hierarchy"],
                        choices=sorted(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS["sasrec"])
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--speed-epochs", type=int, default=6, help="epochs per variant for the speed table")
    parser.add_argument("--speed-only", action="store_true", help="only the parameter and speed table")
    parser.add_argument("--out", help="also write the Markdown tables to this file")
    parser.add_argument("--json", dest="json_out", help="also write every run's figures as JSON here")
    args = parser.parse_args(argv)

    model_configs = configs(args.variants, args.epochs, args.max_len)
    command = command_line("retr_ml100k.py", argv)
    results = {} if args.speed_only else run(model_configs, args.seeds)
    text = (f"Command: `{command.strip()}`\n" if args.speed_only else report(results, model_configs, args.seeds,
                                                                           command.strip())) + \
        f"\n#### Cost: parameters; seconds per training epoch (median of {args.speed_epochs}, first dropped)\n\n" + \
        cost_table(model_configs, args.speed_epochs) + "\n"
    print(text)
    json_writer(args.json_out, command, model_configs)(results)
    if args.out:
        write_file(args.out, text)


if __name__ == "__main__":
    main()
