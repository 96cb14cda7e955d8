"""Ranking metric math: the rank of a target among candidates, and HR / NDCG / MRR / Recall.

Ranks are 0-based and PESSIMISTIC: the rank of a target is the number of *other*
candidates whose score is greater than **or equal to** the target's score, so a
tie never counts in the model's favour (a model that scores every item the same
gets the worst rank, not the best).  A NaN score is treated as -inf, so a NaN
target ties with (and ranks below) every other candidate.

`rank_of_target` works on numpy arrays; `rank_of_target_tf` is its TensorFlow
twin with the same arguments and semantics, used by the evaluation protocols to
rank whole batches of users at once.  The per-user metrics then only need the
ranks:

>>> ranks = rank_of_target(np.array([[0.1, 0.9, 0.5], [0.7, 0.7, 0.2]]), np.array([2, 0]))
>>> ranks.tolist()          # user 0: 0.9 is above 0.5; user 1: tied with 0.7 -> worse rank
[1, 1]
>>> hit_rate(ranks, k=1), round(ndcg(ranks, k=2), 4), mrr(ranks)
(0.0, 0.6309, 0.5)
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrec_dyn.data.vocabulary import PAD_ID

DEFAULT_KS = (5, 10, 20)


# ----------------------------------------------------------------- ranks
def rank_of_target(scores, target_index, candidate_mask=None) -> np.ndarray:
    """0-based pessimistic rank of each target among its row's candidates (numpy).

    Args:
      scores: float [..., N] scores of N candidates per row.
      target_index: int [...] column of each row's target (a scalar for 1-D
        `scores`).
      candidate_mask: optional bool [..., N]; False columns are not candidates
        and never count against the target.  The target itself is always a
        candidate, whatever its mask entry says.

    Returns:
      int64 [...]: number of other candidates scored >= the target.

    Example:
    >>> rank_of_target(np.array([0.3, 0.8, 0.3, 0.1]), 0)   # 0.8 above, 0.3 tied
    array(2)
    >>> rank_of_target(np.array([0.3, 0.8, 0.3, 0.1]), 0,
    ...                candidate_mask=np.array([True, False, True, True]))
    array(1)
    """
    scores = np.asarray(scores, dtype=np.float64)
    target_index = np.asarray(target_index)
    if scores.ndim < 1:
        raise ValueError("`scores` must have at least one (candidate) dimension")
    if target_index.shape != scores.shape[:-1]:
        raise ValueError(f"`target_index` shape {target_index.shape} does not match scores "
                         f"{scores.shape} without their last (candidate) dimension")
    if not np.issubdtype(target_index.dtype, np.integer):
        raise ValueError("`target_index` must hold integer column indices")
    num_candidates = scores.shape[-1]
    if np.any((target_index < 0) | (target_index >= num_candidates)):
        raise ValueError(f"`target_index` must lie in [0, {num_candidates})")
    scores = np.where(np.isnan(scores), -np.inf, scores)
    target_scores = np.take_along_axis(scores, target_index[..., np.newaxis], axis=-1)
    columns = np.arange(num_candidates)
    others = columns != target_index[..., np.newaxis]
    if candidate_mask is not None:
        candidate_mask = np.asarray(candidate_mask, dtype=bool)
        if candidate_mask.shape != scores.shape:
            raise ValueError(f"`candidate_mask` shape {candidate_mask.shape} must equal scores {scores.shape}")
        others = others & candidate_mask
    return np.asarray(np.sum(others & (scores >= target_scores), axis=-1), dtype=np.int64)


def rank_of_target_tf(scores, target_index, candidate_mask=None) -> tf.Tensor:
    """TensorFlow twin of `rank_of_target` for batches: scores [B, N], target_index [B] -> int32 [B].

    Same semantics (pessimistic ties, NaN = -inf, masked columns are not
    candidates, the target always is).  Runs as a handful of matrix ops, so a
    batch of users is ranked against the whole vocabulary at once.

    Example:
    >>> rank_of_target_tf(tf.constant([[0.3, 0.8, 0.3, 0.1]]), tf.constant([0])).numpy()
    array([2], dtype=int32)
    """
    scores = tf.cast(scores, tf.float32)
    target_index = tf.cast(target_index, tf.int32)
    scores = tf.where(tf.math.is_nan(scores), tf.constant(-np.inf, tf.float32), scores)
    target_scores = tf.gather(scores, target_index[:, tf.newaxis], batch_dims=1)
    others = tf.not_equal(tf.range(tf.shape(scores)[-1])[tf.newaxis, :], target_index[:, tf.newaxis])
    if candidate_mask is not None:
        others = tf.logical_and(others, tf.cast(candidate_mask, tf.bool))
    beats_or_ties = tf.logical_and(others, scores >= target_scores)
    return tf.reduce_sum(tf.cast(beats_or_ties, tf.int32), axis=-1)


# ------------------------------------------------------- metrics from ranks
def _check_ranks(ranks) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim != 1:
        raise ValueError(f"`ranks` must be 1-D (one rank per user), got shape {ranks.shape}")
    if ranks.size and (not np.issubdtype(ranks.dtype, np.integer) or ranks.min() < 0):
        raise ValueError("`ranks` must be non-negative integers (0 = ranked first)")
    return ranks.astype(np.int64)


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"`k` must be a positive integer, got {k!r}")
    return int(k)


def _mean(values: np.ndarray) -> float:
    # An empty group (e.g. no tail users in a breakdown) has no mean: NaN, no warning.
    return float(values.mean()) if values.size else float("nan")


def hit_rate(ranks, k: int) -> float:
    """HR@k: share of users whose target ranks in the top k (rank < k).

    >>> hit_rate([0, 3, 12], k=10)   # 2 of 3 targets in the top 10
    0.6666666666666666
    """
    ranks, k = _check_ranks(ranks), _check_k(k)
    return _mean((ranks < k).astype(np.float64))


def ndcg(ranks, k: int) -> float:
    """NDCG@k for one relevant item per user: mean of 1/log2(rank + 2) if rank < k, else 0.

    With a single relevant item the ideal DCG is 1, so NDCG equals DCG.

    >>> ndcg([0, 1, 12], k=10)   # (1 + 1/log2(3) + 0) / 3
    0.5436432511904858
    """
    ranks, k = _check_ranks(ranks), _check_k(k)
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return _mean(gains)


def mrr(ranks, k: Optional[int] = None) -> float:
    """MRR: mean of 1/(rank + 1); with `k`, targets ranked k or worse count 0 (MRR@k).

    >>> mrr([0, 1, 3])           # (1 + 1/2 + 1/4) / 3
    0.5833333333333334
    >>> mrr([0, 1, 3], k=2)      # (1 + 1/2 + 0) / 3
    0.5
    """
    ranks = _check_ranks(ranks)
    reciprocal = 1.0 / (ranks + 1.0)
    if k is not None:
        reciprocal = np.where(ranks < _check_k(k), reciprocal, 0.0)
    return _mean(reciprocal)


def recall_at_k(top_k_items, target_sets, k: Optional[int] = None) -> float:
    """Recall@k for several targets per user: mean over users of |top-k ∩ targets| / |targets|.

    With exactly one target per user this is the same number as HR@k (the
    target is either in the top k or not), which is why the evaluation
    protocols report `Recall@k` = `HR@k` for next-item prediction.

    Args:
      top_k_items: int [U, K] recommended item ids per user, best first
        (0 = empty slot, ignored).
      target_sets: per user, a collection of relevant item ids (a list, set
        or array; a single id is one target), or an int [U, T] array padded
        with 0.  Every user needs at least one target.
      k: optional cut-off <= K (default: all K columns).

    Example:
    >>> recall_at_k([[5, 7, 9], [2, 3, 4]], [[7, 8], [4]])   # (1/2 + 1/1) / 2
    0.75
    >>> recall_at_k([[5, 7, 9], [2, 3, 4]], [[7, 8], [4]], k=2)   # (1/2 + 0) / 2
    0.25
    """
    top_k_items = np.asarray(top_k_items)
    if top_k_items.ndim != 2:
        raise ValueError(f"`top_k_items` must be [users, K], got shape {top_k_items.shape}")
    if k is not None:
        k = _check_k(k)
        if k > top_k_items.shape[1]:
            raise ValueError(f"k={k} exceeds the {top_k_items.shape[1]} recommended items per user")
        top_k_items = top_k_items[:, :k]
    target_sets = list(target_sets)
    if len(target_sets) != top_k_items.shape[0]:
        raise ValueError(f"{len(target_sets)} target sets for {top_k_items.shape[0]} users")
    recalls = np.empty(len(target_sets))
    for user, (recommended, targets) in enumerate(zip(top_k_items, target_sets)):
        if isinstance(targets, (set, frozenset)):
            targets = sorted(targets)
        relevant = {int(t) for t in np.ravel(targets) if int(t) != PAD_ID}
        if not relevant:
            raise ValueError(f"user {user} has no target items: drop users without targets first")
        hits = relevant.intersection(int(i) for i in recommended if int(i) != PAD_ID)
        recalls[user] = len(hits) / len(relevant)
    return _mean(recalls)


def metrics_from_ranks(ranks, ks: Iterable[int] = DEFAULT_KS) -> Dict[str, float]:
    """All standard figures of one-target-per-user ranks, keyed like "HR@10".

    Keys: `HR@k`, `NDCG@k`, `MRR@k`, `Recall@k` (= `HR@k`, single target) for
    every k, and the uncut `MRR`.

    >>> metrics_from_ranks([0, 4], ks=(1,))["HR@1"], metrics_from_ranks([0, 4], ks=(1,))["MRR"]
    (0.5, 0.6)
    """
    ks = _check_ks(ks)
    ranks = _check_ranks(ranks)
    out: Dict[str, float] = {}
    for k in ks:
        out[f"HR@{k}"] = hit_rate(ranks, k)
        out[f"NDCG@{k}"] = ndcg(ranks, k)
        out[f"MRR@{k}"] = mrr(ranks, k)
        out[f"Recall@{k}"] = out[f"HR@{k}"]
    out["MRR"] = mrr(ranks)
    return out


def _check_ks(ks: Iterable[int]) -> Sequence[int]:
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    ks = tuple(_check_k(k) for k in ks)
    if not ks:
        raise ValueError("`ks` must name at least one cut-off")
    return tuple(sorted(set(ks)))
