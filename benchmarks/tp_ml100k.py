"""GRU4Rec, Caser and SASRec trained plainly and with the transferrable-parameters
trainer ("-TP"), on existing and new users, all / head / tail (the setting of
Yin et al., KDD 2020, Table 3 and Figure 5, on MovieLens-100K):

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/tp_ml100k.py --seeds 0 1 2 \\
        --out benchmarks/results/tp_ml100k.md --json benchmarks/results/tp_ml100k.json
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/tp_ml100k.py --seeds 0 1 2 \\
        --variants sasrec-tp-k1 sasrec-tp-k3 sasrec-tp-lambda0 sasrec-tp-lambda0.01 \\
        sasrec-tp-lambda1 sasrec-tp-lambda10 --out benchmarks/results/tp_sweeps_ml100k.md \\
        --json benchmarks/results/tp_sweeps_ml100k.json
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/tp_ml100k.py --seeds 0 1 2 \\
        --variants sasrec-tp sasrec-tp-lambda0 sasrec-tp-lambda0.01 sasrec-tp-lambda1 sasrec-tp-lambda10 \\
        --validate-every 15 --out benchmarks/results/tp_lambda_validation_ml100k.md \\
        --json benchmarks/results/tp_lambda_validation_ml100k.json   # λ chosen on validation

Protocol: a seeded 20 % of the users (`existing_new_users`, seed 0) are new
users, never trained on; the other 80 % are split leave-one-out as everywhere
else (trained on all but their last two items). Existing users are scored on
their last item from everything before it, new users likewise from their whole
history but the last item. Within each group, the 20 % of users with the most
interactions are head users, the rest tail users (the paper's rule, also the
trainer's head/tail labels). Full ranking, seen items excluded except the
target, HR@10 and NDCG@10. The item vocabulary covers the whole catalogue, so
a new user's items have the embeddings learned from existing users.

Variants: `gru4rec`, `caser`, `sasrec` (plain `fit`) and `gru4rec-tp`,
`caser-tp`, `sasrec-tp` (`TrainConfig(trainer="tp")`, the library defaults:
k = 2, α = 0.1, λ = 0.1, β = 0.001 Adam); the sweeps `sasrec-tp-k1`,
`sasrec-tp-k3` (k) and `sasrec-tp-lambda<λ>` (λ ∈ {0, 0.01, 1, 10}); their
k = 2, λ = 0.1 point is `sasrec-tp` of the main run.
Epoch budgets: plain, those of `baselines_ml100k.py`; TP, `TP_EPOCHS`, the best
validation epoch of the seed-0 sweep (an epoch draws every user once on average:
2 × 16 windows per user instead of one):

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/tp_ml100k.py --variants gru4rec-tp caser-tp sasrec-tp \\
        --seeds 0 --epochs 40 --validate-every 5 --out benchmarks/results/tp_epoch_sweep_ml100k.md \\
        --json benchmarks/results/tp_epoch_sweep_ml100k.json
`--json` is rewritten after every run and `--resume` keeps the runs already there.
"""

from __future__ import annotations

import argparse

import numpy as np

import tfrec_dyn  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from baselines_ml100k import (DEFAULT_EPOCHS, add_variant_arguments, budget_fields, command_line, epochs_cell,
                              json_writer, mean_std, report, resumable, run, write_file)
from tfrec_dyn.data import Vocabulary, existing_new_users, head_tail_users, load_dataset, select_users
from tfrec_dyn.metrics import evaluate
from tfrec_dyn.training import PreparedData, TrainConfig

BASE_MODELS = ("gru4rec", "caser", "sasrec")
VARIANTS = {name: (name, {}) for name in BASE_MODELS}
VARIANTS.update({f"{name}-tp": (name, {}) for name in BASE_MODELS})
VARIANTS.update({"sasrec-tp-k1": ("sasrec", {"inner_steps": 1}), "sasrec-tp-k3": ("sasrec", {"inner_steps": 3})})
VARIANTS.update({f"sasrec-tp-lambda{weight:g}": ("sasrec", {"adversarial_weight": weight})
                 for weight in (0.0, 0.01, 1.0, 10.0)})
MAIN_VARIANTS = ("gru4rec", "gru4rec-tp", "caser", "caser-tp", "sasrec", "sasrec-tp")
TP_EPOCHS = {"gru4rec": 15, "caser": 30, "sasrec": 15}
GROUPS = ("existing", "new")
SUBSETS = ("all", "head", "tail")
METRICS = ("HR@10", "NDCG@10")


def prepared_data(new_fraction: float = 0.2, seed: int = 0):
    """(existing users' PreparedData, new users' PreparedData, {group: head user ids})."""
    data = load_dataset("ml-100k")
    existing_ids, new_ids = existing_new_users(data, new_fraction, seed=seed)
    vocab = Vocabulary.build(data.items)  # the whole catalogue: new users' items are rankable too
    groups = {"existing": select_users(data, existing_ids), "new": select_users(data, new_ids)}
    prepared = {group: PreparedData.from_interactions(interactions, vocab) for group, interactions in groups.items()}
    heads = {group: set(head_tail_users(interactions)[0]) for group, interactions in groups.items()}
    return prepared["existing"], prepared["new"], heads


def configs(names, args):
    out = {}
    for name in names:
        model, options = VARIANTS[name]
        tp = "-tp" in name
        out[name] = TrainConfig(model=model, data="ml-100k", max_len=args.max_len,
                                trainer="tp" if tp else "standard", trainer_options=dict(options),
                                eval_protocols=("full",),
                                **budget_fields(args, (TP_EPOCHS if tp else DEFAULT_EPOCHS)[model]))
    return out


def group_figures(new_data: PreparedData, heads):
    """`extra` for `run`: HR@10 / NDCG@10 of existing and new users, all / head / tail."""
    def figures(name, result):
        out = {}
        for group, data in (("existing", result.data), ("new", new_data)):
            arrays = data.eval_arrays("test", result.model.max_len)
            ranked = evaluate(result.model, arrays.histories, arrays.targets, ks=(10,),
                              exclude_seen=True)
            head = np.array([user in heads[group] for user in arrays.user_ids])
            out[group] = {"all": ranked.metrics, "head": ranked.metrics_for(head), "tail": ranked.metrics_for(~head)}
        return {"groups": out}
    return figures


def group_table(results, model_configs) -> str:
    header = " | ".join(f"{group} {subset} {metric}" for group in GROUPS for subset in SUBSETS for metric in METRICS)
    lines = [f"| model | trainer | epochs | {header} |", "|---|---|---:|" + "---:|" * (len(GROUPS) * len(SUBSETS) * 2)]
    for name, runs in results.items():
        cells = [mean_std([r["groups"][group][subset][metric] for r in runs])
                 for group in GROUPS for subset in SUBSETS for metric in METRICS]
        config = model_configs[name]
        options = f" {config.trainer_options}" if config.trainer_options else ""
        lines.append(f"| {name} | {config.trainer}{options} | {epochs_cell(runs, config)} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_variant_arguments(parser, VARIANTS, default=MAIN_VARIANTS)
    args = parser.parse_args(argv)

    existing, new, heads = prepared_data()
    model_configs = configs(args.variants, args)
    command = command_line("tp_ml100k.py", argv)
    write_json = json_writer(args.json_out, command, model_configs)
    done = resumable(args.json_out, model_configs) if args.resume else {}
    results = run(model_configs, args.seeds, extra=group_figures(new, heads), done=done, checkpoint=write_json,
                  data=existing)
    write_json(results)
    stats = (f"Data: ml-100k, {existing.interactions.num_users} existing users "
             f"({len(heads['existing'])} head), {new.interactions.num_users} new users ({len(heads['new'])} head); "
             f"{existing.vocab.size - 2} items.  \n")
    text = (stats + report(results, model_configs, args.seeds, command.strip(), metrics=METRICS, protocols=("full",))
            + "\n#### Existing and new users, all / head / tail (full ranking, mean ± std over seeds)\n\n"
            + group_table(results, model_configs))
    print(text)
    if args.out:
        write_file(args.out, text)


if __name__ == "__main__":
    main()
