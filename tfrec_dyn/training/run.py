"""A run directory: everything needed to evaluate or serve a trained model again.

Layout::

    RUN/config.json          the TrainConfig
    RUN/items.txt            item vocabulary (one raw id per line; ids 2.. in order)
    RUN/<field>.txt          categorical side-field vocabularies (behavior, category), when the data has them
    RUN/model/               Keras SavedModel of the trained model
    RUN/history.json         per-epoch losses (and validation figures)
    RUN/metrics.json         test figures per protocol, training time
    RUN/negatives_test.npz   the sampled protocol's fixed test negatives
    RUN/tensorboard/         TensorBoard summaries of training (loss, validation figures)
    RUN/logs/                the framework's output of `tfrec-dyn train` (without --verbose)
    RUN/report.html          `tfrec-dyn report RUN`
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional

import tf_keras as keras

from tfrec_dyn.data.interactions import CATEGORICAL_SIDE_FIELDS
from tfrec_dyn.data.vocabulary import Vocabulary
from tfrec_dyn.training.config import TrainConfig

CONFIG = "config.json"
VOCAB = "items.txt"
MODEL = "model"
HISTORY = "history.json"
METRICS = "metrics.json"
TENSORBOARD = "tensorboard"
LOGS = "logs"
REPORT = "report.html"


@dataclasses.dataclass
class Run:
    """A trained model with the config and vocabulary it was trained with."""

    path: str
    config: TrainConfig
    vocab: Vocabulary
    model: Any  # a SequentialRecommender
    side_vocabs: Dict[str, Vocabulary] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> "Run":
        if not os.path.exists(os.path.join(path, CONFIG)):
            raise FileNotFoundError(f"{path}: not a run directory (no {CONFIG}); "
                                    "create one with `tfrec-dyn train --out {path}`")
        try:
            with open(os.path.join(path, CONFIG)) as f:
                config = TrainConfig.from_json(f.read())
        except (ValueError, TypeError) as error:  # not JSON, or not a TrainConfig
            raise ValueError(f"{path}: {CONFIG} is corrupt ({error})") from None
        import tfrec_dyn.models  # noqa: F401  (registers the model classes for loading)

        if not os.path.isdir(os.path.join(path, MODEL)):
            raise FileNotFoundError(f"{path}: the run has no {MODEL}/ (training did not finish?)")
        try:
            model = keras.models.load_model(os.path.join(path, MODEL), compile=False)
        except Exception as error:  # TF raises many types for a damaged SavedModel
            raise ValueError(f"{path}: the saved model cannot be loaded ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''})") from None
        side_vocabs = {field: Vocabulary.load(os.path.join(path, f"{field}.txt")) for field in CATEGORICAL_SIDE_FIELDS
                       if os.path.exists(os.path.join(path, f"{field}.txt"))}
        return cls(path, config, Vocabulary.load(os.path.join(path, VOCAB)), model, side_vocabs)

    def metrics(self) -> Dict[str, Any]:
        """`RUN/metrics.json` ({} if the run has none)."""
        return self._json(METRICS)

    def history(self) -> Dict[str, Any]:
        """`RUN/history.json`: the per-epoch losses and the validation curve ({} if none)."""
        return self._json(HISTORY)

    def _json(self, name: str) -> Dict[str, Any]:
        path = os.path.join(self.path, name)
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)


def save_run(path: str, config: TrainConfig, vocab: Vocabulary, model, history: Dict, metrics: Dict,
             side_vocabs: Optional[Dict[str, Vocabulary]] = None) -> None:
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, CONFIG), "w") as f:
        f.write(config.to_json())
    vocab.save(os.path.join(path, VOCAB))
    for field, side_vocab in (side_vocabs or {}).items():
        side_vocab.save(os.path.join(path, f"{field}.txt"))
    model.save(os.path.join(path, MODEL), include_optimizer=False)
    write_json(os.path.join(path, HISTORY), history)
    write_json(os.path.join(path, METRICS), metrics)


def write_json(path: str, value) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
