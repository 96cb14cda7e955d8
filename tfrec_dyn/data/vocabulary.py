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

import os
from typing import Iterable, List, Sequence

import numpy as np

PAD_ID = 0
OOV_ID = 1
NUM_RESERVED = 2
PAD_TOKEN = ""
OOV_TOKEN = "[OOV]"


def as_strings(values: Sequence) -> np.ndarray:
    """`values` as a 1-D object array of `str`: as they are when they already
    are strings (checked by pandas in C), else each one's `str()` (ids read from
    JSON may be numbers; a vocabulary holds their text)."""
    import pandas as pd

    if isinstance(values, np.ndarray) and values.dtype != object:
        return values.astype(str).astype(object)
    array = values
    if not isinstance(values, np.ndarray):
        array = np.empty(len(values), dtype=object)
        array[:] = values
    if pd.api.types.infer_dtype(array, skipna=False) in ("string", "empty"):
        return array
    return np.asarray([str(value) for value in array], dtype=object)


def _flatten(sequences: Iterable[Sequence]) -> np.ndarray:
    """All the sequences' tokens, in order, as one object array."""
    return np.concatenate([np.asarray(s, dtype=object) for s in sequences] + [np.zeros(0, object)])


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
        import pandas as pd

        tokens = [str(t) for t in tokens]
        # Token -> position, a hash table in C: `encode` looks up whole logs at once.
        self._lookup = pd.Index(tokens, dtype=object)
        if not self._lookup.is_unique:
            raise ValueError("vocabulary tokens must be unique")
        if len(tokens) + NUM_RESERVED > np.iinfo(np.int32).max:
            raise ValueError(f"{len(tokens):,} distinct ids: more than int32 ids can number")
        if PAD_TOKEN in tokens or OOV_TOKEN in tokens:
            raise ValueError(f"{PAD_TOKEN!r} and {OOV_TOKEN!r} are reserved tokens")
        self.tokens: List[str] = tokens

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_count: int = 1) -> "Vocabulary":
        """Vocabulary of every token in `sequences`, most frequent first, ties by
        first appearance.  Vectorised: one pass of `pandas.factorize` over all
        the tokens, no Python work per token."""
        import pandas as pd

        codes, uniques = pd.factorize(as_strings(_flatten(sequences)))  # uniques in order of first appearance
        counts = np.bincount(codes, minlength=len(uniques))
        order = np.argsort(-counts, kind="stable")
        return cls(uniques[order[counts[order] >= min_count]].tolist())

    @property
    def size(self) -> int:
        """Number of ids including padding and OOV (the embedding table size)."""
        return len(self.tokens) + NUM_RESERVED

    def __len__(self) -> int:
        return self.size

    def __contains__(self, token) -> bool:
        return str(token) in self._lookup

    def encode(self, tokens: Iterable) -> np.ndarray:
        """Raw ids -> int32 ids; unknown ids map to `OOV_ID`.  Vectorised (a
        hash lookup in C per token), so encoding a whole log is one call."""
        tokens = tokens if isinstance(tokens, np.ndarray) else np.asarray(list(tokens), dtype=object)
        positions = self._lookup.get_indexer(as_strings(tokens.ravel()))
        return np.where(positions >= 0, positions + NUM_RESERVED, OOV_ID).astype(np.int32).reshape(tokens.shape)

    def encode_sequences(self, sequences: Sequence[Sequence]) -> List[np.ndarray]:
        """`encode` of each sequence, in one vectorised call over all of them
        (per-sequence calls would pay the lookup's fixed cost per user)."""
        lengths = [len(s) for s in sequences]
        return np.split(self.encode(_flatten(sequences)), np.cumsum(lengths)[:-1]) if lengths else []

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
