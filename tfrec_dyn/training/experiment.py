"""From a config to model-ready arrays: read, filter, split, encode.

Deterministic for a given config, so `tfrec-dyn evaluate RUN` can rebuild the
exact split a run was trained on from its saved config.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfrec_dyn.data import input_pipeline
from tfrec_dyn.data.datasets import load_dataset
from tfrec_dyn.data.interactions import CATEGORICAL_SIDE_FIELDS, Interactions
from tfrec_dyn.data.splits import Split, collapse_repeats_default, k_core, leave_one_out, session_split
from tfrec_dyn.data.vocabulary import Vocabulary
from tfrec_dyn.metrics.evaluation import EvalArrays
from tfrec_dyn.training.config import SPLITS, TrainConfig


@dataclasses.dataclass
class PreparedData:
    """A data set read, filtered, split (leave-one-out or by session) and encoded.

    The item vocabulary is the catalogue (the rule of `tfrec_dyn.data.vocabulary`);
    popularity counts come from the training split only. Side
    fields come along: categorical ones (`behavior`, `category`) through
    vocabularies of their own (built the same way), numeric ones as float32.
    """

    interactions: Interactions
    split: Split
    vocab: Vocabulary
    train_sequences: List[np.ndarray]
    item_counts: np.ndarray  # [V] training-split counts
    side_vocabs: Dict[str, Vocabulary] = dataclasses.field(default_factory=dict)  # categorical side fields
    train_side: Dict[str, List[np.ndarray]] = dataclasses.field(default_factory=dict)  # aligned with train_sequences
    collapse_repeats: bool = True  # leave-one-out's rule as applied (`tfrec_dyn.data.splits.Split`)

    @classmethod
    def from_config(cls, config: TrainConfig, vocab: Vocabulary = None,
                    side_vocabs: Dict[str, Vocabulary] = None) -> "PreparedData":
        data = load_dataset(config.data, format=config.data_format, columns=config.columns)
        if config.k_core:
            data = k_core(data, config.k_core)
        return cls.from_interactions(data, vocab, split=config.split, split_seed=config.split_seed,
                                     side_vocabs=side_vocabs, max_items=config.max_items,
                                     collapse_repeats=config.collapse_repeats)

    @classmethod
    def from_interactions(cls, data: Interactions, vocab: Vocabulary = None, split: str = "leave_one_out",
                          split_seed: int = 0, side_vocabs: Dict[str, Vocabulary] = None,
                          max_items: Optional[int] = None, collapse_repeats: Optional[bool] = None) -> "PreparedData":
        """`vocab` / `side_vocabs`: the vocabularies of an earlier run (default: built from `data`);
        a catalogue of more than `max_items` items is refused before anything is sized by it;
        `collapse_repeats`: leave-one-out's (None: `collapse_repeats_default`, kept in `.collapse_repeats`)."""
        if data.num_users == 0:
            report = f"; {data.report.summary()}" if data.report is not None else ""
            raise ValueError(f"no usable interactions: the data set has no users left (after filtering{report})")
        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {SPLITS}, got split={split!r}")
        vocab = vocab or Vocabulary.build(data.items)
        if max_items is not None and len(vocab.tokens) > max_items:
            source = data.report.source if data.report is not None else "the data"
            raise ValueError(f"{source}: {len(vocab.tokens):,} distinct items, more than max_items={max_items:,}; "
                             "drop rare items (k_core / --k-core) or raise the limit (--max-items)")
        if collapse_repeats is None:
            collapse_repeats = collapse_repeats_default(data.side)
        parts = (leave_one_out(data, collapse_repeats) if split == "leave_one_out"
                 else session_split(data, seed=split_seed))
        train = vocab.encode_sequences(parts.train.items)
        counts = np.bincount(np.concatenate(train + [np.zeros(0, np.int32)]), minlength=vocab.size)
        side_vocabs = {name: (side_vocabs or {}).get(name) or Vocabulary.build(seqs)
                       for name, seqs in data.side.items() if name in CATEGORICAL_SIDE_FIELDS}
        prepared = cls(data, parts, vocab, train, counts.astype(np.int64), side_vocabs,
                       # The session split always predicts moves to another item.
                       collapse_repeats=bool(collapse_repeats) or split == "session")
        prepared.train_side = {name: prepared.encode_side(name, seqs) for name, seqs in parts.train.side.items()}
        return prepared

    def encode_side(self, name: str, sequences: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Categorical side values to vocabulary ids (unknown: OOV), numeric ones to float32."""
        if name in self.side_vocabs:
            return self.side_vocabs[name].encode_sequences(sequences)
        return [np.asarray(s, np.float32) for s in sequences]

    def side_vocab_sizes(self) -> Dict[str, int]:
        return {name: vocab.size for name, vocab in self.side_vocabs.items()}

    def eval_arrays(self, which: str, max_len: int) -> EvalArrays:
        """"validation" or "test" inputs (with their side fields), targets and known items."""
        if which not in ("validation", "test"):
            raise ValueError(f"`which` must be 'validation' or 'test', got {which!r}")
        part = getattr(self.split, which)
        encoded_inputs = self.vocab.encode_sequences(part.inputs.items)
        full = {u: s for u, s in zip(self.interactions.user_ids, self.interactions.items)}
        features = {}
        for name, seqs in part.inputs.side.items():
            encoded = self.encode_side(name, seqs)
            features[input_pipeline.feature_name(name)] = input_pipeline.pad_left(
                encoded, max_len, dtype=np.int32 if name in self.side_vocabs else np.float32)
        return EvalArrays(
            user_ids=list(part.inputs.user_ids),
            histories=input_pipeline.pad_left(encoded_inputs, max_len),
            targets=self.vocab.encode(part.target_items()),
            known_items=self.vocab.encode_sequences([full[u] for u in part.inputs.user_ids]),
            features=features,
            target_side={name: np.concatenate(self.encode_side(name, seqs) + [np.zeros(0)]).astype(
                np.int32 if name in self.side_vocabs else np.float32) for name, seqs in part.targets.side.items()},
        )
