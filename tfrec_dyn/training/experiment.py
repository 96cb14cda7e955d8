"""From a config to model-ready arrays: read, filter, split, encode.

Deterministic for a given config, so `tfrec-dyn evaluate RUN` can rebuild the
exact split a run was trained on from its saved config.
"""

from __future__ import annotations

import dataclasses
from typing import List

import numpy as np

from tfrec_dyn.data import input_pipeline
from tfrec_dyn.data.datasets import load_dataset
from tfrec_dyn.data.interactions import Interactions
from tfrec_dyn.data.splits import LeaveOneOut, k_core, leave_one_out
from tfrec_dyn.data.vocabulary import Vocabulary
from tfrec_dyn.training.config import TrainConfig


@dataclasses.dataclass
class EvalArrays:
    """One evaluation split as model inputs."""

    user_ids: List[str]
    histories: np.ndarray  # [U, max_len] left-padded encoded inputs
    targets: np.ndarray  # [U] encoded target ids
    known_items: List[np.ndarray]  # every encoded item of the user (for sampled negatives)


@dataclasses.dataclass
class PreparedData:
    """A data set read, filtered, split leave-one-out and encoded.

    The item vocabulary covers the whole catalogue (every item in the data,
    including items seen only as validation/test targets), so a held-out target
    is rankable; popularity counts come from the training split only.
    """

    interactions: Interactions
    split: LeaveOneOut
    vocab: Vocabulary
    train_sequences: List[np.ndarray]
    item_counts: np.ndarray  # [V] training-split counts

    @classmethod
    def from_config(cls, config: TrainConfig, vocab: Vocabulary = None) -> "PreparedData":
        data = load_dataset(config.data, format=config.data_format, columns=config.columns)
        if config.k_core:
            data = k_core(data, config.k_core)
        return cls.from_interactions(data, vocab)

    @classmethod
    def from_interactions(cls, data: Interactions, vocab: Vocabulary = None) -> "PreparedData":
        if data.num_users == 0:
            raise ValueError("the data set has no users left (after filtering)")
        split = leave_one_out(data)
        vocab = vocab or Vocabulary.build(data.items)
        train = [vocab.encode(s) for s in split.train.items]
        counts = np.bincount(np.concatenate(train + [np.zeros(0, np.int32)]), minlength=vocab.size)
        return cls(data, split, vocab, train, counts.astype(np.int64))

    def eval_arrays(self, which: str, max_len: int) -> EvalArrays:
        """"validation" or "test" inputs, targets and known items."""
        if which not in ("validation", "test"):
            raise ValueError(f"`which` must be 'validation' or 'test', got {which!r}")
        part = getattr(self.split, which)
        encoded_inputs = [self.vocab.encode(s) for s in part.inputs.items]
        full = {u: s for u, s in zip(self.interactions.user_ids, self.interactions.items)}
        return EvalArrays(
            user_ids=list(part.inputs.user_ids),
            histories=input_pipeline.pad_left(encoded_inputs, max_len),
            targets=self.vocab.encode(part.target_items()),
            known_items=[self.vocab.encode(full[u]) for u in part.inputs.user_ids],
        )
