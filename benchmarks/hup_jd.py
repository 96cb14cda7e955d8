"""HUP, its ablations, GRU4Rec and SASRec on the JD micro-behaviour samples
(the setting of the HUP paper's Tables 2-3, on 1,000-session samples).

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/hup_jd.py --data jd-appliances --seeds 0 1 2 \\
        --validate-every 10 --out benchmarks/results/hup_jd_appliances.md --json benchmarks/results/hup_jd_appliances.json
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/hup_jd.py --data jd-computers --seeds 0 1 2 \\
        --validate-every 10 --out benchmarks/results/hup_jd_computers.md --json benchmarks/results/hup_jd_computers.json

Protocol: `TrainConfig(split="session", split_seed=0)`: the sessions are
shuffled with seed 0, 10 % are test sessions, 10 % validation sessions, the
rest are trained on whole; in a held-out session every move to another item
is predicted (with that item's category) from every micro-behaviour before
it (GRU4Rec's session protocol; `tfrec_dyn.data.splits.session_split`). The same
seed gives every model and every model seed the same sessions. Full ranking
(every item a candidate, the history's items too: users return to items they
saw minutes before),
next-item Recall@20 and MRR@20, next-category Recall@5 and MRR@5 (HUP only:
the baselines do not rank categories).

Inputs: the HUP variants read the micro-behaviours (item, behaviour type,
category, time interval, dwell time); GRU4Rec and SASRec read the same
sessions at the item level (consecutive behaviours on one item merged,
`Interactions.collapse_repeats`), which gives them the same targets and
histories without the micro-behaviour detail they cannot use.

Variants: `hup` (the library defaults: the paper's Behavior-LSTM, attention
signals and cosine loss, λ = (0, 0.5, 0.5)), `hup-tlstm` (time gates only, no
attention signals), `hup-lstm` (plain LSTM cells, no attention signals); the
same three with the full-softmax loss option (`hup-ce`, `hup-tlstm-ce`,
`hup-lstm-ce`: the paper's cosine loss lets the embeddings drift together on
these samples, docs/results.md); `hup-sampled` (sampled softmax), `gru4rec`,
`sasrec`.
`--json` is rewritten after every run and `--resume` keeps the runs already there.
"""

from __future__ import annotations

import argparse
import os

import tfrec_dyn  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from baselines_ml100k import (DEFAULT_JD_DIR, add_variant_arguments, budget_fields, command_line, jd_path,
                              json_writer, report, resumable, run, write_file)
from tfrec_dyn.data import load_dataset
from tfrec_dyn.training import PreparedData, TrainConfig

ABLATION = {"behavior_gate": False, "attention_signal": False}
LSTM = {**ABLATION, "time_gate": False}
# name: (model, hyperparameters, loss (None: the model's default), epochs). Epochs are
# the seed-0 sweeps' best (docs/results.md): HUP with the paper's cosine loss peaks
# at 20, with the full softmax at 25-30; the baselines still rise at 120.
VARIANTS = {
    "hup-ce": ("hup", {}, "ce", 30),
    "hup-tlstm-ce": ("hup", ABLATION, "ce", 30),
    "hup-lstm-ce": ("hup", LSTM, "ce", 30),
    "hup": ("hup", {}, None, 20),
    "hup-tlstm": ("hup", ABLATION, None, 20),
    "hup-lstm": ("hup", LSTM, None, 20),
    "hup-sampled": ("hup", {}, "sampled_ce", 30),
    "gru4rec": ("gru4rec", {}, None, 120),
    "sasrec": ("sasrec", {}, None, 120),
}
MAIN_VARIANTS = ("hup-ce", "hup-tlstm-ce", "hup-lstm-ce", "hup", "gru4rec", "sasrec")
MAX_LEN = {"hup": 100, "gru4rec": 50, "sasrec": 50}  # micro-behaviours vs. items
METRICS = {"full": ("Recall@20", "MRR@20", "Recall@10", "NDCG@10"), "category": ("Recall@5", "MRR@5")}


def configs(names, path, args):
    out = {}
    for name in names:
        model, hyperparameters, loss, own_epochs = VARIANTS[name]
        out[name] = TrainConfig(model=model, data=path, data_format="jd", split="session", split_seed=0,
                                max_len=MAX_LEN[model], loss=loss,
                                hyperparameters=dict(hyperparameters), eval_protocols=("full",),
                                **budget_fields(args, own_epochs))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="jd-appliances", help="jd-appliances or jd-computers")
    parser.add_argument("--jd-dir", default=DEFAULT_JD_DIR, help="folder of the JD micro-behaviour samples")
    add_variant_arguments(parser, VARIANTS, default=MAIN_VARIANTS)
    args = parser.parse_args(argv)

    path = jd_path(args.data, args.jd_dir)
    model_configs = configs(args.variants, os.path.relpath(path), args)
    micro = load_dataset(path, format="jd")
    data = {"micro": PreparedData.from_interactions(micro, split="session", split_seed=0),
            "item": PreparedData.from_interactions(micro.collapse_repeats(), split="session", split_seed=0)}
    command = command_line("hup_jd.py", argv)
    write_json = json_writer(args.json_out, command, model_configs)
    done = resumable(args.json_out, model_configs) if args.resume else {}
    results = {}
    for level in ("micro", "item"):
        level_configs = {name: c for name, c in model_configs.items() if (c.model == "hup") == (level == "micro")}
        if level_configs:
            results.update(run(level_configs, args.seeds, done=done, data=data[level],
                               checkpoint=lambda partial: write_json({**results, **partial})))
    results = {name: results[name] for name in model_configs}
    write_json(results)
    split = data["micro"].split
    stats = (f"Data: {args.data}, {micro.num_users} sessions, {micro.num_interactions} micro-behaviours, "
             f"{data['micro'].vocab.size - 2} items, {data['micro'].side_vocabs['category'].size - 2} categories; "
             f"{len(set(split.test.inputs.user_ids))} test sessions ({len(split.test.inputs.user_ids)} next items "
             f"to predict), {len(set(split.validation.inputs.user_ids))} validation sessions "
             f"({len(split.validation.inputs.user_ids)}); {split.num_short_users} drawn sessions on a single "
             f"item trained on instead.  \n")
    text = stats + report(results, model_configs, args.seeds, command.strip(), metrics=METRICS,
                          protocols=("full", "category"))
    print(text)
    if args.out:
        write_file(args.out, text)


if __name__ == "__main__":
    main()
