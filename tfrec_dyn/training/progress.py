"""Training progress as plain events, for a person to watch.

    bar = tfrec_dyn.console.ProgressBar(sys.stderr)
    fit(config, ..., callbacks=[TrainingProgress(bar.update)], verbose=0)
    bar.close()
"""

from __future__ import annotations

import time
from typing import Callable, Dict

import tf_keras as keras


class TrainingProgress(keras.callbacks.Callback):
    """Reports training progress as events to `report`.

    Each event is a dict: `epoch` (1-based, the one running or just done),
    `epochs` (the maximum), `step` / `steps` within the epoch, `loss`, and once
    validation has run (`ValidationCallback`, which runs before this callback)
    `val` (the monitored validation figure) and `val_epoch` (the epoch it was
    checked after), `best` and `best_epoch` (the validator's, so a resumed
    training's too); `seconds` since training started.  `resumed_after` is set
    when the training continues an interrupted one; the last event has
    `done: True`.  Batch events come at most every `min_interval` seconds,
    epoch events always.

    Example:
        fit(config, sequences, vocab_size, counts, callbacks=[TrainingProgress(print)], verbose=0)
    """

    def __init__(self, report: Callable[[Dict], None], monitor: str = "NDCG@10", min_interval: float = 0.5):
        super().__init__()
        self.report, self.monitor, self.min_interval = report, monitor, min_interval
        self.state: Dict = {}
        self._start = self._last = 0.0
        # The logs stay tensors between the updates sent (no host sync on every step).
        self._supports_tf_logs = True

    def on_train_begin(self, logs=None):
        self._start = time.monotonic()
        self.state = {"epochs": self.params.get("epochs"), "steps": self.params.get("steps"), "epoch": 0, "step": 0}

    def on_epoch_begin(self, epoch, logs=None):
        if not self.state["epoch"] and epoch:  # the first epoch of this fit is not the first: resumed
            self.state["resumed_after"] = epoch
        self.state.update(epoch=epoch + 1, step=0)

    def on_train_batch_end(self, batch, logs=None):
        self.state["step"] = batch + 1
        if time.monotonic() - self._last >= self.min_interval:
            self._send(logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if f"val_{self.monitor}" in logs:
            self.state.update(val=float(logs[f"val_{self.monitor}"]), val_epoch=epoch + 1)
        if logs.get("val_best_epoch"):
            self.state.update(best=float(logs[f"val_best_{self.monitor}"]), best_epoch=int(logs["val_best_epoch"]))
        self._send(logs)

    def on_train_end(self, logs=None):
        self.state["done"] = True
        self._send(None)

    def _send(self, logs):
        if logs and "loss" in logs:
            self.state["loss"] = float(logs["loss"])
        self._last = time.monotonic()
        self.report({**self.state, "seconds": round(self._last - self._start, 1)})
