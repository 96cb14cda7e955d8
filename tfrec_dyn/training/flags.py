"""The `TrainConfig` command-line flags: one parser for `tfrec-dyn train`,
`pipelines/local_runner.py` and `pipelines/kubeflow_runner.py`.

    parser = argparse.ArgumentParser()
    add_train_flags(parser)
    config = TrainConfig(**train_config_fields(parser.parse_args()))
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, Dict, Optional

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def key_value(text: str):
    """argparse type for KEY=VALUE settings: VALUE is parsed as JSON, else kept as a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_train_flags(parser: argparse.ArgumentParser, epochs: Optional[int] = None, data: Optional[str] = "ml-100k",
                    data_help: str = "built-in data set name or a path (default: ml-100k)") -> None:
    """Adds every `TrainConfig` flag to `parser`; `epochs` (default:
    `TrainConfig`'s) and `data` set the defaults (`data=None`: the flag is required)."""
    from tfrec_dyn.data.datasets import FORMAT_NAMES
    from tfrec_dyn.data.input_pipeline import SHARED_SAMPLERS
    from tfrec_dyn.models.registry import MODELS
    from tfrec_dyn.training.config import OPTIMIZERS, SPLITS, TP_OPTION_NAMES, TRAINERS, TrainConfig

    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    losses = sorted({loss for model in MODELS.values() for loss in model.supported_losses})
    parser.add_argument("--model", default="sasrec", choices=sorted(MODELS))
    parser.add_argument("--data", default=data, required=data is None, help=data_help)
    parser.add_argument("--format", dest="data_format",
                        help=f"data format when it cannot be guessed from the path: {', '.join(FORMAT_NAMES)}")
    parser.add_argument("--columns", type=json.loads,
                        help='column mapping for csv/tsv/jsonl logs, e.g. \'{"user": "uid", "item": "sku"}\'')
    parser.add_argument("--k-core", type=int, default=0)
    parser.add_argument("--max-items", type=int, default=None, metavar="N",
                        help="refuse a catalogue of more than N items (default: no limit)")
    parser.add_argument("--split", choices=SPLITS, default="leave_one_out",
                        help="hold out each user's last items, or whole sessions (session logs such as JD)")
    parser.add_argument("--split-seed", type=int, default=0, help="seeds the session split")
    parser.add_argument("--collapse-repeats", action=argparse.BooleanOptionalAction, default=None,
                        help="leave-one-out: count consecutive events on one item as one, so targets are moves to "
                             "another item (default: yes for micro-behaviour logs such as JD's, no for user-item "
                             "and MovieLens logs, whose standard protocol predicts the next event)")
    parser.add_argument("--include-seen", action="store_true",
                        help="keep the user's seen items as candidates when evaluating (the next event, repeats "
                             "included; default for --split session); without it a target the user already had "
                             "counts as a miss (novel-item prediction)")
    parser.add_argument("--epochs", type=int, default=epochs or defaults["epochs"],
                        help="the most epochs: validation stops training earlier (default: %(default)s)")
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=128, help="per replica")
    parser.add_argument("--shuffle-buffer", type=int, default=100_000, metavar="USERS",
                        help="a streamed epoch (the TFX Trainer's) is shuffled in blocks of this many users")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                        help="lazy_adam: update only the item rows a batch touched (large catalogues)")
    parser.add_argument("--loss", choices=losses, help="default: the model's own")
    parser.add_argument("--negative-sampler", choices=SHARED_SAMPLERS, default="uniform",
                        help="in_batch and mixed: for --loss sampled_softmax")
    parser.add_argument("--num-negatives", type=int, default=None,
                        help="negatives of a sampled loss (default: the loss's own, see TrainConfig)")
    parser.add_argument("--hp", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="model hyperparameter, e.g. --hp embed_dim=64 (repeatable)")
    parser.add_argument("--trainer", choices=TRAINERS, default="standard",
                        help="'tp': transferrable parameters for long-tailed users (meta-learning + adversary)")
    parser.add_argument("--trainer-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help=f"a 'tp' trainer setting, repeatable: {', '.join(TP_OPTION_NAMES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", default="auto", choices=STRATEGIES)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=defaults["jit_compile"],
                        help="compile the train step with XLA (default: %(default)s)")
    parser.add_argument("--steps-per-execution", type=int, default=defaults["steps_per_execution"], metavar="N",
                        help="training steps per call into the graph (default: %(default)s)")
    parser.add_argument("--pack-sequences", action=argparse.BooleanOptionalAction,
                        default=defaults["pack_sequences"],
                        help="pack short training windows into fewer rows where the model allows (default: %(default)s)")
    parser.add_argument("--validate-every", type=int, default=defaults["validate_every"], metavar="N",
                        help="check the validation split (full-ranking NDCG@10) every N epochs; 0: never, train "
                             "exactly --epochs (default: %(default)s)")
    parser.add_argument("--patience", type=int, default=defaults["patience"], metavar="CHECKS",
                        help="stop after this many checks without a better validation NDCG@10, keeping the best "
                             "weights; 0: never stop early (default: as many checks as cover 800 training steps, "
                             "at least 5 and at most 50)")
    parser.add_argument("--validation-smoothing", type=int, default=defaults["validation_smoothing"], metavar="CHECKS",
                        help="watch the mean validation NDCG@10 of the last CHECKS checks, for noisy curves on small "
                             "validation splits (default: %(default)s, each check's own)")
    parser.add_argument("--validation-users", type=int, default=defaults["validation_users"], metavar="N",
                        help="validate a seeded sample of N users (default: %(default)s)")
    parser.add_argument("--eval-users", type=int, default=None, metavar="N",
                        help="evaluate a seeded sample of N test users (default: all; each user's figures are exact)")


def train_config_fields(args: argparse.Namespace) -> Dict[str, Any]:
    """The `TrainConfig` keyword arguments of flags added by `add_train_flags`."""
    return {
        "model": args.model, "data": args.data, "data_format": args.data_format, "columns": args.columns,
        "k_core": args.k_core, "max_items": args.max_items, "split": args.split, "split_seed": args.split_seed,
        "collapse_repeats": args.collapse_repeats, "exclude_seen": False if args.include_seen else None,
        "max_len": args.max_len, "epochs": args.epochs, "batch_size": args.batch_size,
        "shuffle_buffer": args.shuffle_buffer, "learning_rate": args.learning_rate, "optimizer": args.optimizer,
        "loss": args.loss, "negative_sampler": args.negative_sampler,
        "num_negatives": args.num_negatives, "hyperparameters": dict(args.hp),
        "seed": args.seed, "strategy": args.strategy, "mixed_precision": args.mixed_precision,
        "jit_compile": args.jit_compile, "steps_per_execution": args.steps_per_execution,
        "pack_sequences": args.pack_sequences,
        "validate_every": args.validate_every, "patience": args.patience,
        "validation_smoothing": args.validation_smoothing,
        "validation_users": args.validation_users, "eval_users": args.eval_users, "trainer": args.trainer,
        "trainer_options": dict(args.trainer_option)}
