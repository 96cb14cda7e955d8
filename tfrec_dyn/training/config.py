"""All settings of a training run, in one plain dataclass (saved with the run)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Optional, Tuple

from tfrec_dyn.data.splits import check_eval_users

SPLITS = ("leave_one_out", "session")
TRAINERS = ("standard", "tp")
OPTIMIZERS = ("adam", "lazy_adam")  # tfrec_dyn.training.optimizers
# The "tp" trainer's settings, by the function that takes them; unset ones keep that function's default.
TP_OPTIONS = {"TransferrableTrainer": ("inner_steps", "inner_learning_rate", "adversarial_weight",
                                        "discriminator_units"),
              "user_task_dataset": ("inner_steps", "users_per_step", "windows_per_user"),
              "head_mask": ("head_fraction",)}
TP_OPTION_NAMES = tuple(sorted({name for names in TP_OPTIONS.values() for name in names}))


@dataclasses.dataclass
class TrainConfig:
    """What to train on what, and how.

    Attributes:
      model: registered model name ("sasrec", "gru4rec", "caser", "poprec").
      data: built-in data set name ("ml-100k") or a path.
      data_format / columns: passed to `tfrec_dyn.data.load_dataset`.
      k_core: drop users and items with fewer interactions (0 = keep all).
      max_items: refuse a catalogue of more items than this, with an error
        naming the file, before any table is sized by it (None: no limit).
      split: "leave_one_out" (each user's last items held out) or "session"
        (whole sessions held out, every move to another item in them
        predicted; see `tfrec_dyn.data.splits.session_split`).
      collapse_repeats: leave-one-out counts consecutive events on one item
        as one (the held-out targets are moves to another item) or not (the
        next event, the SASRec protocol); None: `collapse_repeats_default`
        (micro-behaviour logs collapse, `user item` and MovieLens logs do not).
        A run's `metrics.json` records the choice made ("protocol").
      split_seed: seeds the session split (not the model seed, so runs with
        different seeds are evaluated on the same sessions).
      max_len: input window (most recent items) the model sees.
      epochs: the most passes over the training users; with validation
        (`validate_every`, on by default) training stops earlier once the
        validation split stops improving (`patience`).
      batch_size: examples per replica; the global batch is
        `batch_size * strategy.num_replicas_in_sync`.
      shuffle_buffer: a streamed epoch permutes its users within blocks of
        this many (the TFX Trainer reads its users from TFRecords as
        training goes; a uniform shuffle when there are no more users than
        this). In-memory training shuffles every user.
      learning_rate: Adam learning rate.
      optimizer: "adam" (Keras' Adam) or "lazy_adam", which updates only the
        item-table rows a batch touched, so a step's cost does not grow
        with the catalogue (`tfrec_dyn.training.optimizers`; the choice for
        catalogues of 10^5 items and more).
      loss: "bce", "bpr", "sampled_ce", "gbce", "sampled_softmax" or "ce"
        (`tfrec_dyn.models.base`); None keeps the model's own default.
      num_negatives: sampled negatives for the losses that use them (per
        position, per user or per batch, as the loss draws them); None keeps
        the model's own (1 for "bce"/"bpr", 256 for "gbce"/"sampled_softmax",
        RDRSR's o).
      negative_sampler: "uniform" or "popularity"; for "sampled_softmax" also
        "in_batch" or "mixed" (half in-batch, half uniform).
      hyperparameters: extra model constructor arguments (embed_dim, ...).
      seed: seeds weights, shuffling and negatives.
      strategy: "auto" (all visible GPUs, else CPU), "one_device",
        "mirrored" or "multi_worker" (see `tfrec_dyn.training.strategy`).
      mixed_precision: train in mixed_float16 (useful on GPUs).
      jit_compile: compile the train step with XLA (`model.compile(jit_compile=...)`;
        the "standard" trainer, models whose `supports_jit_compile`). Off by
        default: on CPU it made no model's step faster (docs/performance.md).
      steps_per_execution: training steps run by one call into the graph
        (fewer host round trips; batch-level callbacks see every N-th step).
        1 by default: on CPU 8 gained about 10 % on ML-100K's 8-step epochs and
        nothing measurable on longer ones (docs/performance.md).
      pack_sequences: pack each training batch's windows into fewer rows
        (`tfrec_dyn.data.input_pipeline.pack_rows`) where the model computes
        the same on them (`supports_packing`: SASRec), its loss's negatives
        are not per user ("gbce"), one replica trains and XLA is off: the same
        users, positions and loss, on less padding (docs/performance.md).
      eval_protocols: protocols for the final test evaluation.
      num_eval_negatives / eval_sampler: the sampled protocol's candidates.
      eval_users: evaluate a seeded sample of this many test users (None:
        all); each one's figures are exact (the full protocol still ranks
        the whole catalogue), only the average is over fewer users.
      exclude_seen: remove already-seen items from the candidates, a target
        that repeats one of them counting as a miss (novel-item prediction;
        `tfrec_dyn.metrics.protocols`, "Repeat targets"); None (default) =
        True for "leave_one_out", False for "session": in session logs users
        return to items they saw minutes before, and the next event is the
        task.
      validate_every: compute full-ranking HR/NDCG@10 on the validation split
        every N epochs (`tfrec_dyn.training.validation`); 0 = never (train
        exactly `epochs`).
      patience: stop after this many validations without a better NDCG@10
        (0: never stop early); None (default): as many as cover 800 training
        steps, at least 5 and at most 50
        (`tfrec_dyn.training.validation.default_patience`: 50 epochs on
        ML-100K's 8-step epochs, 25 on the JD samples' 32, 5 on a large log's).
      restore_best: end with the weights of the best validation NDCG@10.
      validation_smoothing: watch the mean validation NDCG@10 of the last N
        checks instead of each check's own (1, the default): for noisy
        curves on small validation splits (`ValidationCallback`'s `smoothing`).
      validation_users: validate a seeded sample of this many users (None:
        all); the validation users are the same in every run of a data set.
      trainer: "standard" (Keras `fit` of the model's own `train_step`) or "tp"
        (transferrable parameters: `tfrec_dyn.training.transfer`; the outer
        optimizer is Adam at `learning_rate`, β).
      trainer_options: the "tp" trainer's settings (`TP_OPTIONS`), passed to
        `TransferrableTrainer` (`inner_steps` k, `inner_learning_rate` α,
        `adversarial_weight` λ, `discriminator_units`), `user_task_dataset`
        (`users_per_step`, `windows_per_user`) and `head_mask`
        (`head_fraction`: the head users, by training interactions); unset
        ones keep those functions' defaults. An epoch is as many outer
        iterations as it takes to draw every training user once on average.
    """

    model: str = "sasrec"
    data: str = "ml-100k"
    data_format: Optional[str] = None
    columns: Optional[Dict[str, str]] = None
    k_core: int = 0
    max_items: Optional[int] = None
    split: str = "leave_one_out"
    split_seed: int = 0
    collapse_repeats: Optional[bool] = None
    max_len: int = 50
    epochs: int = 200
    batch_size: int = 128
    shuffle_buffer: int = 100_000
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    loss: Optional[str] = None
    num_negatives: Optional[int] = None
    negative_sampler: str = "uniform"
    hyperparameters: Dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    strategy: str = "auto"
    mixed_precision: bool = False
    jit_compile: bool = False
    steps_per_execution: int = 1
    pack_sequences: bool = True
    eval_protocols: Tuple[str, ...] = ("full", "sampled")
    num_eval_negatives: int = 100
    eval_sampler: str = "uniform"
    eval_users: Optional[int] = None
    exclude_seen: Optional[bool] = None
    validate_every: int = 1
    patience: Optional[int] = None
    restore_best: bool = True
    validation_smoothing: int = 1
    validation_users: Optional[int] = 10_000
    trainer: str = "standard"
    trainer_options: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for name in ("max_len", "epochs", "batch_size", "steps_per_execution", "validation_smoothing"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be positive, got {name}={getattr(self, name)}")
        for name in ("validate_every", "patience"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"`{name}` must be 0 or more, got {name}={getattr(self, name)}")
        check_eval_users(self.validation_users, "validation_users")
        if self.shuffle_buffer < 0:
            raise ValueError(f"`shuffle_buffer` must be 0 or more, got shuffle_buffer={self.shuffle_buffer}")
        if self.learning_rate <= 0:
            raise ValueError(f"`learning_rate` must be positive, got {self.learning_rate}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, got optimizer={self.optimizer!r}")
        if self.split not in SPLITS:
            raise ValueError(f"`split` must be one of {SPLITS}, got split={self.split!r}")
        if self.trainer not in TRAINERS:
            raise ValueError(f"`trainer` must be one of {TRAINERS}, got trainer={self.trainer!r}")
        if self.jit_compile and self.trainer != "standard":
            raise ValueError("jit_compile is for the 'standard' trainer; the 'tp' trainer's step is not checked "
                             "under XLA")
        unknown = sorted(set(self.trainer_options) - set(TP_OPTION_NAMES))
        if unknown or (self.trainer_options and self.trainer != "tp"):
            raise ValueError(f"`trainer_options` are the 'tp' trainer's: {list(TP_OPTION_NAMES)}; got "
                             f"{sorted(self.trainer_options)} with trainer={self.trainer!r}")
        self.eval_protocols = tuple(self.eval_protocols)
        check_eval_users(self.eval_users)
        if self.exclude_seen is None:
            self.exclude_seen = self.split == "leave_one_out"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        values = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {unknown}")
        return cls(**values)

    def evaluation_settings(self) -> Dict[str, Any]:
        """The keyword arguments of `tfrec_dyn.metrics.evaluation.evaluate_model` this run fixes."""
        return {"exclude_seen": self.exclude_seen, "num_negatives": self.num_eval_negatives,
                "sampler": self.eval_sampler, "eval_users": self.eval_users}

    def model_kwargs(self) -> Dict[str, Any]:
        kwargs = dict(self.hyperparameters)
        if self.loss is not None:
            kwargs["loss"] = self.loss
        if self.num_negatives is not None:
            kwargs["num_negatives"] = self.num_negatives
        return kwargs
