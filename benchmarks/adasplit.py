"""AdaSplit, its ablations, RDRSR and SASRec on MovieLens-100K and the JD samples
(the setting of the AdaSplit paper's Table 2).

Leave-one-out, full ranking (every item a candidate; on MovieLens-100K the
input history's items are excluded except the target, on the JD sessions,
where users return to items, nothing is), NDCG and MRR at 5 and 10 as in the
paper:

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/adasplit.py --data ml-100k --seeds 0 1 2 \\
        --out benchmarks/results/adasplit_ml100k.md --json benchmarks/results/adasplit_ml100k.json
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/adasplit.py --data jd-computers --seeds 0 1 2 \\
        --validate-every 5 --out benchmarks/results/adasplit_jd_computers.md \\
        --json benchmarks/results/adasplit_jd_computers.json

`--data`: `ml-100k`, or `jd-appliances` / `jd-computers`, the 1,000-session
JD micro-behaviour samples in `../shared/data/jd-micro/` (or `--jd-dir`),
items only: each session is a sequence, consecutive micro-behaviours on the
same SKU are one item (`Interactions.collapse_repeats`), sessions left with
fewer than 3 items are trained on but not evaluated (the leave-one-out rule).

Variants: `adasplit` (the library defaults), `adasplit-no-create` (K fixed
sub-sequences, no create action), `adasplit-no-curriculum` (a constant
creation penalty), `rdrsr` and `sasrec`; `adasplit-readout-none` (scores
from the sub-sequence states as the paper) and `adasplit-readout-dense` for
the readout comparison. The report adds the share of test
users per number of sub-sequences (AdaSplit) or interests (RDRSR).

Epoch budgets: `--epochs N` for every variant, or each variant's own
(`EPOCHS` on MovieLens, `JD_EPOCHS` with batches of `JD_BATCH_SIZE` on the JD
samples; pick them with `--validate-every 5` on seed 0). `--json` is
rewritten after every run and `--resume` keeps the runs already there.
"""

from __future__ import annotations

import argparse

import tfrec_dyn  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from baselines_ml100k import (DEFAULT_EPOCHS, DEFAULT_JD_DIR, add_variant_arguments, budget_fields, command_line,
                              count_table, group_counts, jd_path, json_writer, report, resumable, run, write_file)
from tfrec_dyn.data import load_dataset
from tfrec_dyn.training import PreparedData, TrainConfig

VARIANTS = {
    "adasplit": ("adasplit", {}),
    "adasplit-no-create": ("adasplit", {"allow_create": False}),
    "adasplit-no-curriculum": ("adasplit", {"curriculum": "none"}),
    "adasplit-readout-none": ("adasplit", {"readout": "none"}),
    "adasplit-readout-dense": ("adasplit", {"readout": "dense"}),
    "rdrsr": ("rdrsr", {}),
    "sasrec": ("sasrec", {}),
}
MAIN_VARIANTS = ("adasplit", "adasplit-no-create", "adasplit-no-curriculum", "rdrsr", "sasrec")
EPOCHS = {"adasplit": 40, "rdrsr": 60, "sasrec": DEFAULT_EPOCHS["sasrec"]}
# The JD samples: 1,000 sequences, ~8 batches of 128 per epoch, too few updates for
# AdaSplit to converge in 40 epochs (validation NDCG@10 still rising); batches of 32
# reach its peak in 20-25 (benchmarks/results/adasplit_jd_batch32_sweep.md).
JD_BATCH_SIZE = 32
JD_EPOCHS = {"adasplit": 20, "rdrsr": 20, "sasrec": 60}
METRICS = ("NDCG@5", "MRR@5", "NDCG@10", "MRR@10", "HR@10")


def prepared_data(name: str, jd_dir: str) -> PreparedData:
    if name == "ml-100k":
        return PreparedData.from_config(TrainConfig(data="ml-100k"))
    return PreparedData.from_interactions(load_dataset(jd_path(name, jd_dir), format="jd").collapse_repeats())


def data_settings(data_name: str) -> dict:
    """The `TrainConfig` fields a data set fixes (also validation_stopping.py's). JD sessions
    return to items seen minutes before: there every item stays a candidate (see
    `TrainConfig.exclude_seen`); MovieLens users rate a movie once (the defaults)."""
    if data_name == "ml-100k":
        return {"data": data_name}
    return {"data": data_name, "batch_size": JD_BATCH_SIZE, "exclude_seen": False}


def configs(names, data_name, args):
    budgets = EPOCHS if data_name == "ml-100k" else JD_EPOCHS
    settings = {**data_settings(data_name), **({"batch_size": args.batch_size} if args.batch_size else {})}
    return {name: TrainConfig(model=VARIANTS[name][0], max_len=args.max_len, hyperparameters=dict(VARIANTS[name][1]),
                              **settings, **budget_fields(args, budgets[VARIANTS[name][0]]))
            for name in names}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="ml-100k", help="ml-100k, jd-appliances or jd-computers")
    parser.add_argument("--jd-dir", default=DEFAULT_JD_DIR, help="folder of the JD micro-behaviour samples")
    parser.add_argument("--batch-size", type=int, help=f"sequences per batch (default: 128 on ml-100k, "
                                                         f"{JD_BATCH_SIZE} on the JD samples)")
    add_variant_arguments(parser, VARIANTS, default=MAIN_VARIANTS)
    args = parser.parse_args(argv)

    data = prepared_data(args.data, args.jd_dir)
    model_configs = configs(args.variants, args.data, args)
    command = command_line("adasplit.py", argv)

    write_json = json_writer(args.json_out, command, model_configs)
    done = resumable(args.json_out, model_configs) if args.resume else {}
    results = run(model_configs, args.seeds, extra=group_counts, done=done, checkpoint=write_json, data=data)
    write_json(results)
    stats = (f"Data: {args.data}, {data.interactions.num_users} sequences, "
             f"{data.interactions.num_interactions} interactions, {data.vocab.size - 2} items.  \n")
    text = stats + report(results, model_configs, args.seeds, command.strip(), metrics=METRICS) + \
        count_table(results, "Sub-sequences (AdaSplit) / interests (RDRSR)")
    print(text)
    if args.out:
        write_file(args.out, text)


if __name__ == "__main__":
    main()
