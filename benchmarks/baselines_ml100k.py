"""PopRec, GRU4Rec, Caser and SASRec on MovieLens-100K under both evaluation protocols.

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/baselines_ml100k.py --seeds 0 1 2 \\
        --out benchmarks/results/baselines_ml100k.md --json benchmarks/results/baselines_ml100k.json

Every model is trained with `tfrec_dyn.training.train` (what `tfrec-dyn train`
runs) on the leave-one-out split of the bundled MovieLens-100K and scored on
the test split under the `full` protocol (every item a candidate, items of the
input history excluded except the target) and the `sampled` protocol (the
target against 100 fixed negatives not in the user's sequence).  Each model is
trained once per seed; the tables give mean ± sample standard deviation over
the seeds of HR@10, NDCG@10 and MRR, and the mean training time (`model.fit`
wall time, evaluation not included).

Per-model settings are the library defaults (embedding sizes, dropout, batch
128, Adam 1e-3, the model's own loss) plus an epoch budget, all overridable:

    --epochs sasrec=300 --loss gru4rec=bce --hp sasrec.dropout=0.5 --max-len 50

The epoch budgets were picked with this script's sweep mode, which also
prints validation HR@10 / NDCG@10 (full ranking) every N epochs:

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/baselines_ml100k.py --models gru4rec caser sasrec \\
        --seeds 0 --epochs gru4rec=160 caser=320 sasrec=300 --validate-every 10 \\
        --out benchmarks/results/epoch_sweep_seed0.md --json benchmarks/results/epoch_sweep_seed0.json
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import platform
import shlex
import sys
import time

import numpy as np

import tfrec_dyn  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from tfrec_dyn.models.registry import MODELS as MODEL_CLASSES
from tfrec_dyn.training import PreparedData, TrainConfig, train
from tfrec_dyn.training.config import OPTIMIZERS

MODELS = ("poprec", "gru4rec", "caser", "sasrec")
# Epoch budgets: PopRec only counts (one pass is exact); GRU4Rec and Caser at the
# peak of validation NDCG@10 in a seed-0 sweep (`--validate-every`, see
# docs/results.md); SASRec at 200 epochs, the library's documented setting.
DEFAULT_EPOCHS = {"poprec": 1, "gru4rec": 100, "caser": 150, "sasrec": 200}
METRICS = ("HR@10", "NDCG@10", "MRR")
PROTOCOLS = ("full", "sampled")


def _model_values(texts, cast, what):
    """["sasrec=200", ...] -> {"sasrec": 200}."""
    values = {}
    for text in texts:
        model, sep, value = text.partition("=")
        if not sep or model not in MODELS:
            raise SystemExit(f"--{what}: expected MODEL=VALUE with MODEL in {MODELS}, got {text!r}")
        values[model] = cast(value)
    return values


def _hyperparameters(texts):
    """["sasrec.dropout=0.5", ...] -> {"sasrec": {"dropout": 0.5}}."""
    values = {}
    for text in texts:
        key, sep, value = text.partition("=")
        model, dot, name = key.partition(".")
        if not sep or not dot or model not in MODELS:
            raise SystemExit(f"--hp: expected MODEL.NAME=VALUE with MODEL in {MODELS}, got {text!r}")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        values.setdefault(model, {})[name] = value
    return values


def configs(args):
    """{model: TrainConfig without the seed} from the command line."""
    epochs = {**DEFAULT_EPOCHS, **_model_values(args.epochs, int, "epochs")}
    losses = _model_values(args.loss, str, "loss")
    hps = _hyperparameters(args.hp)
    # With --validate-every the test figures are those of the last epoch (restore_best off),
    # exactly as without it; the validation curve is only reported.
    return {name: TrainConfig(model=name, data="ml-100k", max_len=args.max_len, epochs=epochs[name],
                              loss=losses.get(name), hyperparameters=hps.get(name, {}),
                              validate_every=args.validate_every if name != "poprec" else 0,
                              restore_best=False, patience=0, optimizer=args.optimizer)
            for name in args.models}


def run(model_configs, seeds, log=sys.stderr, extra=None, done=None, checkpoint=None, data=None):
    """{model: [per-seed {"seed", "train_seconds", "full": {...}, "sampled": {...}}]}.

    `extra(name, result)` may add figures of the trained model to each record;
    `done` holds records of earlier runs to keep instead of training again
    (same layout; see `--resume`), and `checkpoint(results)` is called after
    every run so a long benchmark can be stopped and resumed. `data`: the
    prepared data (default: read from the first config).
    """
    data = data or PreparedData.from_config(next(iter(model_configs.values())))
    results = {}
    for name, base in model_configs.items():
        for seed in seeds:
            earlier = [r for r in (done or {}).get(name, []) if r["seed"] == seed]
            if earlier:
                results.setdefault(name, []).append(earlier[0])
                print(f"{name} seed {seed}: kept from the earlier run", file=log, flush=True)
                continue
            config = dataclasses.replace(base, seed=seed)
            start = time.perf_counter()
            result = train(config, verbose=0, data=data)
            results.setdefault(name, []).append(
                {"seed": seed, "epochs": len(result.history["loss"]), "train_seconds": result.train_seconds,
                 "best_epoch": result.history.get("validation", {}).get("best_epoch"),
                 "total_seconds": time.perf_counter() - start, **result.metrics,
                 "validation_ndcg10": result.history.get("validation", {}).get("NDCG@10", []),
                 "validation_hr10": result.history.get("validation", {}).get("HR@10", []),
                 **(extra(name, result) if extra else {})})
            figures = ", ".join(f"{protocol} NDCG@10 {values['NDCG@10']:.4f}"
                                for protocol, values in result.metrics.items() if "NDCG@10" in values)
            print(f"{name} seed {seed}: {figures} ({result.train_seconds:.0f} s training)", file=log, flush=True)
            if checkpoint:
                checkpoint(results)
    return results


def group_counts(name, result, batch_size=256):
    """Share of test users per number of groups the model formed (RDRSR's
    interests, AdaSplit's sub-sequences; inference time): {"group_counts": [1, 2, ...]}."""
    model = result.model
    method = next((getattr(model, m) for m in ("interests", "subsequences") if hasattr(model, m)), None)
    if method is None:
        return {}
    histories = result.data.eval_arrays("test", model.max_len).histories
    counts = np.concatenate([method({"item_ids": histories[i:i + batch_size]})["count"].numpy()
                             for i in range(0, len(histories), batch_size)])
    k = getattr(model, "max_interests", None) or model.allocator.max_subsequences
    return {"group_counts": (np.bincount(counts, minlength=k + 1)[1:] / len(counts)).tolist()}


def count_table(results, what: str) -> str:
    """Markdown: share of test users per group count, mean ± std over seeds."""
    rows = {name: runs for name, runs in results.items() if "group_counts" in runs[0]}
    if not rows:
        return ""
    k = max(len(runs[0]["group_counts"]) for runs in rows.values())
    lines = [f"\n#### {what} chosen for the test users (share of users, mean ± std over seeds)\n",
             "| model | " + " | ".join(str(n) for n in range(1, k + 1)) + " |", "|---|" + "---:|" * k]
    for name, runs in rows.items():
        shares = np.array([r["group_counts"] + [0.0] * (k - len(r["group_counts"])) for r in runs])
        lines.append(f"| {name} | " + " | ".join(mean_std(shares[:, n]) for n in range(k)) + " |")
    return "\n".join(lines) + "\n"


def add_variant_arguments(parser, variants, default=None) -> None:
    """The options of the resumable variant benchmarks (rdrsr_ml100k.py, adasplit.py);
    `default`: the variants run without --variants (all of them unless given)."""
    parser.add_argument("--variants", nargs="+", default=list(default or variants), choices=list(variants))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="one epoch budget for every variant (default: each its own)")
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--validate-every", type=int, default=0,
                        help="also report validation HR@10 / NDCG@10 every N epochs (the sweep)")
    parser.add_argument("--validation-stopping", action="store_true",
                        help="train as the CLI does: --epochs (default: the CLI's maximum) is a maximum, training "
                             "stops on the validation split with the default patience and keeps the best weights")
    parser.add_argument("--patience", type=int, metavar="CHECKS",
                        help="with --validation-stopping: this patience instead of the default")
    parser.add_argument("--validation-smoothing", type=int, default=1, metavar="CHECKS",
                        help="with --validation-stopping: watch the mean of the last CHECKS checks (default: 1)")
    parser.add_argument("--out", help="also write the Markdown tables to this file")
    parser.add_argument("--json", dest="json_out", help="also write every run's figures as JSON here "
                                                        "(after every training run)")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --json")


def budget_fields(args, own_epochs: int) -> dict:
    """How long a variant of those benchmarks trains, as `TrainConfig` fields: a fixed
    budget (`--epochs`, else the variant's own) with no early stopping, or with
    `--validation-stopping` the CLI's rule (the `TrainConfig` defaults, or the
    given `--patience` and `--validation-smoothing`)."""
    if not args.validation_stopping and (args.patience is not None or args.validation_smoothing != 1):
        raise SystemExit("--patience and --validation-smoothing go with --validation-stopping")
    if args.validation_stopping:
        return {"epochs": args.epochs or TrainConfig().epochs, "patience": args.patience,
                "validation_smoothing": args.validation_smoothing}
    return {"epochs": args.epochs or own_epochs, "validate_every": args.validate_every, "restore_best": False,
            "patience": 0}


def epochs_cell(runs, config: TrainConfig) -> str:
    """A fixed budget, or (validation-stopped) the mean epochs trained and the mean best epoch."""
    if config.patience == 0 or not config.validate_every:
        return str(config.epochs)
    return f"{np.mean([r['epochs'] for r in runs]):.0f} (best {np.mean([r['best_epoch'] for r in runs]):.0f})"


def command_line(script: str, argv=None) -> str:
    """The command that reproduces this run (`--resume` left out: the output is the same)."""
    args = sys.argv[1:] if argv is None else argv
    return f"TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/{script} " + \
        " ".join(shlex.quote(a) for a in args if a != "--resume")


JD_FILES = {"jd-appliances": "JD_Applicances_sample", "jd-computers": "JD_Computers_sample"}
DEFAULT_JD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "jd-micro")


def jd_path(name: str, jd_dir: str) -> str:
    """The file of the JD micro-behaviour sample `name` in `jd_dir`, or a one-line exit."""
    if name not in JD_FILES:
        raise SystemExit(f"--data: expected one of {sorted(JD_FILES)}, got {name!r}")
    path = os.path.join(jd_dir, JD_FILES[name])
    if not os.path.exists(path):
        raise SystemExit(f"{path} not found: pass --jd-dir (the folder of the JD micro-behaviour samples)")
    return path


def write_file(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def json_writer(path, command: str, model_configs):
    """A `checkpoint` for `run`: rewrites `path` (when given) with the runs so far."""
    def write(results):
        if path:
            write_file(path, json.dumps({"command": command, "results": results, "configs": {
                name: dataclasses.asdict(c) for name, c in model_configs.items()}}, indent=2, default=float))
    return write


def resumable(json_path, model_configs):
    """Records of an earlier run of the same command (same configs) in `json_path`, by model.

    A `TrainConfig` field added since the earlier run counts as unchanged when
    it holds its default (the behaviour the earlier run had).
    """
    if not json_path or not os.path.exists(json_path):
        return {}
    with open(json_path) as f:
        earlier = json.load(f)
    def record(config):  # as the JSON holds it
        return json.loads(json.dumps(dataclasses.asdict(config)))

    defaults = record(TrainConfig())
    same = {name for name, config in model_configs.items()
            if name in earlier.get("configs", {}) and record(config) == {**defaults, **earlier["configs"][name]}}
    return {name: runs for name, runs in earlier.get("results", {}).items() if name in same}


def default_loss(name: str) -> str:
    return inspect.signature(MODEL_CLASSES[name].__init__).parameters["loss"].default


def mean_std(values) -> str:
    values = np.asarray(values, dtype=np.float64)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.4f} ± {std:.4f}"


def table(results, protocol: str, model_configs, metrics=METRICS) -> str:
    lines = [f"| model | epochs | {' | '.join(metrics)} | train s |",
             "|---|---:|" + "---:|" * len(metrics) + "---:|"]
    for name, runs in results.items():
        if protocol not in runs[0]:  # e.g. category ranking, which only some models do
            continue
        cells = [mean_std([r[protocol][metric] for r in runs]) for metric in metrics]
        times = np.array([r["train_seconds"] for r in runs])
        seconds = f"{times.mean():.0f} ± {times.std(ddof=1) if len(times) > 1 else 0.0:.0f}"
        lines.append(f"| {name} | {epochs_cell(runs, model_configs[name])} | {' | '.join(cells)} | {seconds} |")
    return "\n".join(lines)


def curve_table(results, model_configs) -> str:
    """Validation HR@10 / NDCG@10 (full ranking, mean over seeds) every `validate_every` epochs."""
    lines = []
    for name, runs in results.items():
        every = model_configs[name].validate_every
        if not every or not runs[0]["validation_ndcg10"] or model_configs[name].patience != 0:  # not fixed-length
            continue
        ndcg = np.mean([r["validation_ndcg10"] for r in runs], axis=0)
        hr = np.mean([r["validation_hr10"] for r in runs], axis=0)
        best = int(np.argmax(ndcg))
        lines += [f"\n\n#### {name}: validation split, full ranking, every {every} epochs "
                  f"(best NDCG@10 at epoch {(best + 1) * every})\n",
                  "| epoch | " + " | ".join(str((i + 1) * every) for i in range(len(ndcg))) + " |",
                  "|---|" + "---:|" * len(ndcg),
                  "| HR@10 | " + " | ".join(f"{v:.4f}" for v in hr) + " |",
                  "| NDCG@10 | " + " | ".join(f"**{v:.4f}**" if i == best else f"{v:.4f}"
                                             for i, v in enumerate(ndcg)) + " |"]
    return "\n".join(lines)


def report(results, model_configs, seeds, command: str, metrics=METRICS, protocols=PROTOCOLS) -> str:
    """Markdown: the command, the settings and one table per protocol (`metrics`:
    the columns, or {protocol: columns})."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"Command: `{command}`  ",
             f"Seeds: {' '.join(map(str, seeds))}; mean ± sample std over seeds; "
             f"max_len {next(iter(model_configs.values())).max_len}; {cpus} CPU(s) available "
             f"({platform.processor() or platform.machine()}).  ",
             "Settings: " + "; ".join(
                 f"{name} loss {c.loss or default_loss(c.model)}" + (f" {c.hyperparameters}" if c.hyperparameters else "")
                 for name, c in model_configs.items())]
    seen = ("seen items excluded except the target" if next(iter(model_configs.values())).exclude_seen
            else "seen items included")
    titles = {"full": f"Full ranking (all items; {seen})",
              "sampled": "Sampled (target vs. 100 fixed negatives not in the user's sequence)",
              "category": "Next category (all categories ranked)"}
    for protocol in protocols:
        parts.append(f"\n#### {titles[protocol]}\n")
        parts.append(table(results, protocol, model_configs,
                           metrics[protocol] if isinstance(metrics, dict) else metrics))
    curves = curve_table(results, model_configs)
    if curves:
        parts.append("\n### Convergence (test figures above are from the last epoch)" + curves)
    return "\n".join(parts) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--epochs", nargs="*", default=[], metavar="MODEL=N",
                        help=f"epoch budget per model (default: {DEFAULT_EPOCHS})")
    parser.add_argument("--loss", nargs="*", default=[], metavar="MODEL=LOSS",
                        help="bce or ce per model (default: the model's own: ce for GRU4Rec and PopRec, "
                             "bce for Caser and SASRec)")
    parser.add_argument("--hp", nargs="*", default=[], metavar="MODEL.NAME=VALUE",
                        help="model hyperparameter, e.g. sasrec.dropout=0.5")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                        help="adam, or lazy_adam (what the scale benchmarks train with)")
    parser.add_argument("--validate-every", type=int, default=0, metavar="N",
                        help="also report validation HR@10 / NDCG@10 every N epochs (the epoch sweep); "
                             "the test figures stay those of the last epoch")
    parser.add_argument("--out", help="also write the Markdown tables to this file")
    parser.add_argument("--json", dest="json_out", help="also write every run's figures as JSON here")
    args = parser.parse_args(argv)

    model_configs = configs(args)
    results = run(model_configs, args.seeds)
    command = command_line("baselines_ml100k.py", argv)
    text = report(results, model_configs, args.seeds, command.strip())
    print(text)
    json_writer(args.json_out, command, model_configs)(results)
    if args.out:
        write_file(args.out, text)


if __name__ == "__main__":
    main()
