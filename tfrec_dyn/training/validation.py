"""Validation-driven training: check the validation split every few epochs,
stop when it stops improving, keep the best weights.

    callback = ValidationCallback(data.eval_arrays("validation", max_len), patience=10)
    model.fit(batches, epochs=200, callbacks=[callback])   # 200 is now a maximum
    callback.curve      # {"epoch": [...], "HR@10": [...], "NDCG@10": [...]}

The figure watched is full-ranking NDCG@10 on the validation split, computed
by the library's one evaluation (`tfrec_dyn.metrics.protocols.evaluate`, with
the run's candidate rule), on a seeded sample of `users` users when there
are more (`tfrec_dyn.data.splits.sample_users`; each sampled user's figure is
exact), or with `smoothing` the mean of the last few checks' figures.  This is
Keras' `EarlyStopping(restore_best_weights=True)` with the
monitored value computed here instead of by `fit`'s validation data, which
would rank against the batch, not the catalogue.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import tf_keras as keras

from tfrec_dyn.data.splits import sample_users
from tfrec_dyn.metrics.evaluation import EvalArrays, model_features
from tfrec_dyn.metrics.protocols import evaluate
from tfrec_dyn.metrics.scoring import Scorer

MONITOR = "NDCG@10"
STATE = "validation_state.json"
BEST_WEIGHTS = "validation_best.npz"
# The default patience covers this many training steps without a better check, within
# [MIN_PATIENCE, MAX_PATIENCE] checks. Chosen on validation curves recorded 50 checks past their
# best (docs/results.md, "Validation-driven training"): on ML-100K (8 steps an epoch) models
# plateau for up to 40 epochs before improving again, and 50 checks leave at most 2.2 % of the
# best validation NDCG@10 behind; on the JD samples (32 steps an epoch) 400 steps (13 checks) left
# up to 6.6 % behind, 800 steps (25 checks) at most 2.3 %.
PATIENCE_STEPS = 800
MIN_PATIENCE = 5
MAX_PATIENCE = 50


def default_patience(steps_per_epoch: int, every: int = 1) -> int:
    """Checks without improvement before training stops when `patience` is unset:
    as many as cover `PATIENCE_STEPS` training steps, at least `MIN_PATIENCE` and
    at most `MAX_PATIENCE`. Small data has short, noisy epochs and needs more of
    them; an epoch of a large log is thousands of steps, and a few checks
    without gain suffice.

    >>> default_patience(8), default_patience(32), default_patience(8, every=5), default_patience(10_000)
    (50, 25, 20, 5)
    """
    return min(MAX_PATIENCE, max(MIN_PATIENCE, -(-PATIENCE_STEPS // max(1, steps_per_epoch * every))))


def smoothed(figures: Sequence[float], smoothing: int = 1) -> np.ndarray:
    """The figure early stopping watches at each check: the mean of the last
    `smoothing` checks' figures (of fewer at the start)."""
    return np.convolve(figures, np.ones(smoothing), "full")[:len(figures)] / np.minimum(
        np.arange(1, len(figures) + 1), smoothing)


def early_stopping(figures: Sequence[float], patience: int, smoothing: int = 1) -> Tuple[int, Optional[int]]:
    """The rule of validation-based stopping on a curve of checks: (index of the
    best check, index of the check after which training stops, or None while it
    goes on).  The figure watched at each check is `smoothed`; the best is the
    first check with the highest (a check that is NaN is never the best);
    training stops `patience` checks after it (0 or None: never).

    >>> early_stopping([0.1, 0.3, 0.12, 0.2, 0.22, 0.24, 0.25, 0.23, 0.22, 0.21], patience=3)
    (1, 4)
    >>> early_stopping([0.1, 0.3, 0.12, 0.2, 0.22, 0.24, 0.25, 0.23, 0.22, 0.21], patience=3, smoothing=3)
    (7, None)
    """
    if not len(figures):
        raise ValueError("early stopping needs at least one check")
    watched = np.nan_to_num(smoothed(figures, smoothing), nan=-np.inf)
    best = 0
    for check in range(1, len(figures)):
        if watched[check] > watched[best]:
            best = check
        elif patience and check - best >= patience:
            return best, check
    return best, None


class ValidationCallback(keras.callbacks.Callback):
    """Full-ranking HR@10 / NDCG@10 on a validation split every `every` epochs;
    stops training after `patience` checks without a better NDCG@10 (or mean
    of the last `smoothing` checks') and, with `restore_best`, ends with the
    weights of the best check (`early_stopping` is the rule).

    Args:
      arrays: the validation split (`PreparedData.eval_arrays("validation", ...)`
        or the TFX Trainer's validation examples).
      every: validate after every `every`-th epoch (and after the last one).
      patience: checks without improvement before training stops; 0 never
        stops early (the curve is still recorded); None: `default_patience`
        of `fit`'s steps per epoch.
      restore_best: set the best check's weights when training ends (with
        smoothing: the last check of the best window's).
      smoothing: watch the mean NDCG@10 of the last `smoothing` checks (of
        fewer before that many are made) instead of each check's own; 1: each
        check's.  On a small validation split the figure moves by more from
        one epoch to the next than it rises, and the best single check is
        often a lucky one that the next `patience` checks never beat (Caser
        on ML-100K's 754 validation users: ±0.005 around a slow rise).  The
        weights kept are those of the last check of the best window: the
        newest weights the best mean speaks for, and the only ones held
        (a choice; keeping the best single check of the window would hold
        `smoothing` copies of the weights).
      users: validate a seeded sample of this many users (None: all).
      exclude_seen: the candidate rule (`evaluate`'s; `TrainConfig.exclude_seen`),
        so validation ranks as the test evaluation does.
      state_dir: where the best-so-far and the best weights are kept between
        checks (the run's backup dir), so that a resumed training continues
        the same early stopping instead of starting it afresh; None: in
        memory only.  Only `write_state` processes write there (the chief).
      write_state: whether this process writes `state_dir`.

    The model validated is `fit`'s model, or the model a trainer wraps (its
    `user_state` / `score_items`: the "tp" trainer forwards them).
    """

    def __init__(self, arrays: EvalArrays, every: int = 1, patience: Optional[int] = None, restore_best: bool = True,
                 users: Optional[int] = None, exclude_seen: bool = True, smoothing: int = 1,
                 state_dir: Optional[str] = None, write_state: bool = True):
        super().__init__()
        if every <= 0:
            raise ValueError(f"`every` must be positive, got {every}")
        if patience is not None and patience < 0:
            raise ValueError(f"`patience` must be 0 or more, got {patience}")
        if smoothing <= 0:
            raise ValueError(f"`smoothing` must be positive, got {smoothing}")
        rows = sample_users(arrays.user_ids, users)
        self.arrays = arrays.rows(rows) if len(rows) < len(arrays.targets) else arrays
        self.every, self.restore_best = int(every), bool(restore_best)
        self.patience = None if patience is None else int(patience)
        self.exclude_seen, self.smoothing = bool(exclude_seen), int(smoothing)
        self.state_dir, self.write_state = state_dir, write_state
        self.curve: Dict[str, list] = {"epoch": [], "HR@10": [], MONITOR: []}
        self.best, self.best_epoch, self.best_weights, self.wait = -np.inf, None, None, 0
        self.weights_epoch = None  # the check `best_weights` are from
        self.stopped_epoch = None
        self._scorer = self._features = None

    def on_train_begin(self, logs=None):
        if self.patience is None:
            self.patience = default_patience(self.params.get("steps") or 1, self.every)
        self._scorer = Scorer(self.model)  # traced once per fit, not once per check
        self._features = model_features(self.model, self.arrays.features)
        self._load_state()

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every and not last:
            return
        while self.curve["epoch"] and self.curve["epoch"][-1] > epoch:
            # Resumed from a backup one epoch older than the saved state: this epoch is checked again.
            for values in self.curve.values():
                values.pop()
        figures = evaluate(self._scorer, self.arrays.histories, self.arrays.targets, ks=(10,),
                           features=self._features, exclude_seen=self.exclude_seen).metrics
        for name, value in (("epoch", epoch + 1), ("HR@10", figures["HR@10"]), (MONITOR, figures[MONITOR])):
            self.curve[name].append(value)
        if logs is not None:
            logs["val_HR@10"], logs[f"val_{MONITOR}"] = figures["HR@10"], figures[MONITOR]
        # The whole curve, a resumed run's included; its settings are the same (`resume_epoch` checks),
        # so no earlier check already stopped it and `stop` can only be this one.
        best, stop = early_stopping(self.curve[MONITOR], self.patience, self.smoothing)
        checks = len(self.curve["epoch"])
        if best == checks - 1:
            self.best_weights, self.weights_epoch = self.model.get_weights(), epoch + 1
        self.best = float(smoothed(self.curve[MONITOR], self.smoothing)[best])
        self.best_epoch, self.wait = self.curve["epoch"][best], checks - 1 - best
        if logs is not None:  # the best so far, a resumed training's included (progress, TensorBoard)
            logs[f"val_best_{MONITOR}"], logs["val_best_epoch"] = self.best, self.best_epoch
        if stop is not None:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True
        self._save_state()

    def on_train_end(self, logs=None):
        if not self.restore_best or self.best_weights is None:
            return
        if self.weights_epoch == self.best_epoch:
            self.model.set_weights(self.best_weights)
        else:  # the best check was one a resumed run trained again, and scored lower the second time
            warnings.warn(f"the weights of the best validation check (epoch {self.best_epoch}) were not kept "
                          f"(those held are epoch {self.weights_epoch}'s, checked again after a resume): "
                          "training ends with its last weights", stacklevel=2)

    def summary(self) -> Dict[str, Any]:
        """What the run records: the curve, the best check and where training stopped."""
        return {**self.curve, "monitor": MONITOR, "best_epoch": self.best_epoch,
                f"best_{MONITOR}": None if self.best_epoch is None else float(self.best),
                "stopped_epoch": self.stopped_epoch, "patience": self.patience, "smoothing": self.smoothing,
                "users": len(self.arrays.targets),
                "restored_best": (self.restore_best and self.best_epoch is not None
                                  and self.weights_epoch == self.best_epoch)}

    # A resumed training continues the interrupted one's early stopping.
    def _save_state(self):
        if not (self.state_dir and self.write_state):
            return
        os.makedirs(self.state_dir, exist_ok=True)
        if self.weights_epoch == self.curve["epoch"][-1]:
            np.savez(os.path.join(self.state_dir, BEST_WEIGHTS + ".tmp.npz"), *self.best_weights)
            os.replace(os.path.join(self.state_dir, BEST_WEIGHTS + ".tmp.npz"),
                       os.path.join(self.state_dir, BEST_WEIGHTS))
        state = {"curve": self.curve, "best": float(self.best), "best_epoch": self.best_epoch, "wait": self.wait,
                 "weights_epoch": self.weights_epoch}
        with open(os.path.join(self.state_dir, STATE + ".tmp"), "w") as f:
            json.dump(state, f)
        os.replace(os.path.join(self.state_dir, STATE + ".tmp"), os.path.join(self.state_dir, STATE))

    def _load_state(self):
        path = os.path.join(self.state_dir or "", STATE)
        if not self.state_dir or not os.path.exists(path):
            return
        with open(path) as f:
            state = json.load(f)
        self.curve, self.best, self.best_epoch, self.wait = (state["curve"], state["best"], state["best_epoch"],
                                                             state["wait"])
        self.weights_epoch = state.get("weights_epoch", self.best_epoch)
        if self.best_epoch is not None:
            with np.load(os.path.join(self.state_dir, BEST_WEIGHTS)) as saved:
                self.best_weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]


def describe(summary: Optional[Dict[str, Any]]) -> str:
    """One sentence for a `ValidationCallback.summary()` (what the CLI prints and the report shows)."""
    if not summary or not summary.get("best_epoch"):
        return "no validation check"
    monitor = summary["monitor"]
    smoothing = summary.get("smoothing", 1)
    return (f"best validation {monitor} {summary['best_' + monitor]:.4f}"
            + (f" (mean of up to {smoothing} checks)" if smoothing > 1 else "") + f" at epoch {summary['best_epoch']}"
            + (f", stopped at epoch {summary['stopped_epoch']}" if summary.get("stopped_epoch") else "")
            + (" (its weights kept)" if summary.get("restored_best") else "")
            + f"; {summary.get('users', 0):,} validation users")
