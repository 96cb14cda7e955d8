"""Beyond-accuracy figures of recommended top-K lists, for long-tail studies.

All functions take the recommended lists as an int array [U, K] of item ids
(one row per user, e.g. from `tfrec_dyn.metrics.top_k_items`).  Real items are
2..V-1; id 0 marks an empty slot (a user with fewer than K rankable items) and
is ignored; the OOV id 1 is never a valid recommendation and raises an error.

>>> top_k = np.array([[2, 3], [2, 4]])          # V = 6: real items 2, 3, 4, 5
>>> item_coverage(top_k, vocab_size=6)           # items 2, 3, 4 of 4 real items
0.75
>>> tail_share(top_k, tail_items=[4, 5])         # 1 of 4 slots is a tail item
0.25
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from tfrec_dyn.data.vocabulary import NUM_RESERVED, OOV_ID, PAD_ID


def _check_vocab_size(vocab_size) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) \
            or vocab_size <= NUM_RESERVED:
        raise ValueError(f"`vocab_size` must be an integer > {NUM_RESERVED} (padding and OOV), "
                         f"got {vocab_size!r}")
    return int(vocab_size)


def _recommended_items(top_k, vocab_size=None) -> np.ndarray:
    """The filled slots of `top_k` [U, K] as a flat int64 array, validated."""
    top_k = np.asarray(top_k)
    if top_k.ndim != 2:
        raise ValueError(f"`top_k` must be [users, K], got shape {top_k.shape}")
    if top_k.size and not np.issubdtype(top_k.dtype, np.integer):
        raise ValueError("`top_k` must hold integer item ids")
    items = top_k[top_k != PAD_ID].astype(np.int64)
    if np.any(items == OOV_ID) or np.any(items < 0):
        raise ValueError(f"`top_k` holds the OOV id {OOV_ID} or a negative id: not a real item")
    if vocab_size is not None and np.any(items >= vocab_size):
        raise ValueError(f"`top_k` holds ids >= vocab_size={vocab_size}")
    return items


def count_items(sequences, vocab_size: int) -> np.ndarray:
    """Interaction counts per item id: int64 [V], with the padding and OOV entries 0.

    `sequences` is a padded int array [U, L] (0 = padding) or any sequence of
    1-D id arrays.  The result is the `item_counts` that `head_tail_items` and
    the popularity sampler take.

    >>> count_items([[0, 2, 3], [2, 2, 1]], vocab_size=5).tolist()
    [0, 0, 3, 1, 0]
    """
    vocab_size = _check_vocab_size(vocab_size)
    if isinstance(sequences, np.ndarray) and sequences.ndim == 2:
        flat = sequences.ravel()
    else:
        parts = [np.asarray(s, dtype=np.int64).ravel() for s in sequences]
        flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    flat = np.asarray(flat, dtype=np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
        raise ValueError(f"item ids must lie in [0, {vocab_size})")
    counts = np.bincount(flat, minlength=vocab_size)
    counts[:NUM_RESERVED] = 0
    return counts


def recommendation_counts(top_k, vocab_size: int) -> np.ndarray:
    """How often each real item (2..V-1) was recommended: int64 [V - 2], index i = item i + 2."""
    vocab_size = _check_vocab_size(vocab_size)
    items = _recommended_items(top_k, vocab_size)
    return np.bincount(items - NUM_RESERVED, minlength=vocab_size - NUM_RESERVED)


def item_coverage(top_k, vocab_size: int) -> float:
    """Share of the real items (2..V-1) that appear in at least one user's top-K list.

    Args:
      top_k: int [U, K] recommended item ids (0 = empty slot).
      vocab_size: V, the vocabulary size *including* padding and OOV, so there
        are V - 2 real items (the library-wide convention for `vocab_size`).

    >>> item_coverage([[2, 3], [3, 2]], vocab_size=12)   # 2 of 10 real items
    0.2
    """
    counts = recommendation_counts(top_k, vocab_size)
    return float(np.count_nonzero(counts) / counts.size)


def gini_index(top_k, vocab_size: int) -> float:
    """Gini index of how often each real item is recommended (0 = equal, -> 1 = concentrated).

    With c_(1) <= ... <= c_(n) the recommendation counts of all n = V - 2 real
    items sorted ascending (items never recommended count 0):

        G = sum_{i=1..n} (2i - n - 1) * c_(i) / (n * sum_i c_(i))

    G = 0 when every item is recommended equally often; G = (n - 1) / n (-> 1
    as n grows) when all recommendations go to a single item.

    >>> gini_index([[2], [3]], vocab_size=4)   # n = 2, counts (1, 1): equal
    0.0
    >>> gini_index([[2], [2]], vocab_size=4)   # counts (0, 2): (-1*0 + 1*2) / (2*2)
    0.5
    """
    counts = np.sort(recommendation_counts(top_k, vocab_size)).astype(np.float64)
    total = counts.sum()
    if total == 0:
        raise ValueError("`top_k` recommends no item: the Gini index is undefined")
    n = counts.size
    weights = 2.0 * np.arange(1, n + 1) - n - 1
    return float(np.dot(weights, counts) / (n * total))


def tail_share(top_k, tail_items) -> float:
    """Share of the filled recommendation slots (all users, all K) that hold a tail item.

    >>> tail_share([[2, 5], [5, 6]], tail_items=[5, 6])   # 3 of 4 slots
    0.75
    """
    items = _recommended_items(top_k)
    if items.size == 0:
        raise ValueError("`top_k` recommends no item: the tail share is undefined")
    tail = np.asarray(list(tail_items), dtype=np.int64)
    return float(np.isin(items, tail).mean())


def head_tail_items(item_counts, head_fraction: float = 0.2) -> Tuple[np.ndarray, np.ndarray]:
    """(head, tail) real item ids: the top `head_fraction` of items by interaction count are head.

    Args:
      item_counts: [V] interaction count per item id (e.g. `count_items` of the
        training sequences); entries 0 (padding) and 1 (OOV) are ignored.
      head_fraction: share of the V - 2 real items that are head items,
        round(head_fraction * (V - 2)) of them; ties in count are broken by the
        smaller id (as `tfrec_dyn.data.head_tail_users` does for users).

    Returns:
      Two sorted int64 arrays of item ids that partition 2..V-1.

    >>> head, tail = head_tail_items([0, 0, 5, 1, 9, 0, 2], head_fraction=0.4)
    >>> head.tolist(), tail.tolist()            # 5 real items -> 2 head items
    ([2, 4], [3, 5, 6])
    """
    if not 0.0 < head_fraction < 1.0:
        raise ValueError(f"`head_fraction` must be in (0, 1), got {head_fraction}")
    counts = np.asarray(item_counts)
    if counts.ndim != 1 or counts.size <= NUM_RESERVED:
        raise ValueError(f"`item_counts` must be a 1-D [V] array with V > {NUM_RESERVED}")
    real = counts[NUM_RESERVED:]
    order = np.argsort(-real, kind="stable") + NUM_RESERVED
    num_head = int(round(head_fraction * real.size))
    return np.sort(order[:num_head]), np.sort(order[num_head:])


__all__ = [
    "count_items", "gini_index", "head_tail_items", "item_coverage", "recommendation_counts",
    "tail_share",
]
