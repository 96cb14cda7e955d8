"""Vocabularies: raw string ids <-> contiguous integer ids.

Id 0 is padding and id 1 is the reserved out-of-vocabulary (OOV) id; real
tokens are 2..size-1 in the order given (by default most frequent first, ties by
first appearance).  This is exactly the layout of
`tf.keras.layers.StringLookup(mask_token="", num_oov_indices=1)`, so a model can
carry the vocabulary as a lookup layer and take raw ids in and give raw ids out
(`Vocabulary.lookup_layer()` / `inverse_lookup_layer()`).

The vocabulary rule, the same in `tfrec-dyn train` (`PreparedData`) and in the
TFX pipeline (Transform analyses every split): the item vocabulary is the
**catalogue**, every item of the data, held-out validation/test targets
included. A vocabulary of the training split only would map an item first
seen as a target to OOV, so that target could never be hit, and the two paths
would evaluate different things. Nothing else leaks: the model never trains
on held-out events (an item seen only as a target keeps its initial
embedding), and popularity counts come from the training split.
"""

from __future__ import annotations

import collections
import os
from typing import Dict, Iterable, List, Sequence

import numpy as np

PAD_ID = 0
OOV_ID = 1
NUM_RESERVED = 2
PAD_TOKEN = ""
OOV_TOKEN = "[OOV]"


class Vocabulary:
    """Maps raw ids (strings) to integers with 0 = padding and 1 = OOV.

    Example:
    >>> vocab = Vocabulary(["b", "a"])
    >>> vocab.encode(["a", "zzz", "b"]).tolist()
    [3, 1, 2]
    >>> vocab.decode([3, 2])
    ['a', 'b']
    """

    def __init__(self, tokens: Sequence[str]):
        tokens = [str(t) for t in tokens]
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary tokens must be unique")
        if PAD_TOKEN in tokens or OOV_TOKEN in tokens:
            raise ValueError(f"{PAD_TOKEN!r} and {OOV_TOKEN!r} are reserved tokens")
        self.tokens: List[str] = tokens
        self._index: Dict[str, int] = {t: i + NUM_RESERVED for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_count: int = 1) -> "Vocabulary":
        """Vocabulary of every token in `sequences`, most frequent first."""
        counts: collections.Counter = collections.Counter()
        for seq in sequences:
            counts.update(str(t) for t in seq)
        # Counter keeps first-insertion order for equal counts (stable sort).
        ordered = sorted(counts.items(), key=lambda kv: -kv[1])
        return cls([t for t, c in ordered if c >= min_count])

    @property
    def size(self) -> int:
        """Number of ids including padding and OOV (the embedding table size)."""
        return len(self.tokens) + NUM_RESERVED

    def __len__(self) -> int:
        return self.size

    def __contains__(self, token) -> bool:
        return str(token) in self._index

    def encode(self, tokens: Iterable) -> np.ndarray:
        """Raw ids -> int32 ids; unknown ids map to `OOV_ID`."""
        return np.fromiter(
            (self._index.get(str(t), OOV_ID) for t in tokens), dtype=np.int32
        )

    def decode(self, ids: Iterable[int]) -> List[str]:
        """Int ids -> raw ids (padding -> "", OOV -> "[OOV]")."""
        table = [PAD_TOKEN, OOV_TOKEN] + self.tokens
        return [table[int(i)] for i in ids]

    # -------------------------------------------------------------- keras
    def lookup_layer(self, **kwargs):
        import tf_keras as keras

        return keras.layers.StringLookup(
            vocabulary=self.tokens, mask_token=PAD_TOKEN, num_oov_indices=1,
            oov_token=OOV_TOKEN, **kwargs
        )

    def inverse_lookup_layer(self, **kwargs):
        import tf_keras as keras

        return keras.layers.StringLookup(
            vocabulary=self.tokens, mask_token=PAD_TOKEN, num_oov_indices=1,
            oov_token=OOV_TOKEN, invert=True, **kwargs
        )

    # ---------------------------------------------------------------- I/O
    def save(self, path: str) -> None:
        """One token per line (the format tf.Transform vocabularies use)."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for token in self.tokens:
                if "\n" in token:
                    raise ValueError(f"token {token!r} contains a newline")
                f.write(token + "\n")

    @classmethod
    def load(cls, path: str) -> "Vocabulary":
        with open(path, encoding="utf-8") as f:
            return cls([line.rstrip("\n") for line in f])

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocabulary(size={self.size})"
