"""Ranking a catalogue in chunks: the full protocol's rank and the top-k lists.

A model scores users in two steps (`SequentialRecommender.user_state` and
`score_items`): the user state once per batch of users, then the scores of
any candidate items.  The functions here ask for the catalogue a chunk of
items at a time (`tfrec_dyn.layers.chunks`), so ranking B users against V
items costs O(B × chunk) memory, never O(B × V):

* `full_protocol_ranks`: THE rule of the full protocol, used by
  `tfrec_dyn.metrics.protocols.evaluate` and by the exported model's
  evaluation signature (so the TFX Evaluator measures the same thing):
  pessimistic rank of the target among every real item, the history's items
  removed when `exclude_seen`, the target never removed;
* `top_k_recommendations`: the k best unseen items (beyond-accuracy figures,
  `serving_default`);
* `ranks_and_top_k`: both from one pass (the full protocol with its
  beyond-accuracy lists);
* `sampled_protocol_ranks`: the sampled protocol's rank, among the target
  and its negatives only;
* `rank_repeats_last`: the rule both protocols apply to a target the user
  has already seen.

`Scorer` puts a model (or a plain function returning a [B, V] score matrix)
behind these, compiled once.

>>> scorer = Scorer(lambda batch: tf.constant([[0., 0., .9, .5, .7]]), chunk_size=2)   # ids 0, 1 reserved
>>> state = scorer.state({"item_ids": np.array([[4]])})
>>> ranks, counts = scorer.ranks(state, np.array([[4]]), np.array([3]), True)
>>> ranks.numpy().tolist(), counts.numpy().tolist()           # item 4 is seen: only 2 is above 3
([1], [2])
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from tfrec_dyn.data.vocabulary import NUM_RESERVED, PAD_ID
from tfrec_dyn.layers.chunks import empty_top_k, fold_chunks, merge_top_k
from tfrec_dyn.metrics.ranking import rank_of_target_tf

# Users evaluated at a time, and items scored at a time: a [256, 8192] float32 chunk is 8 MB.
EVAL_BATCH_SIZE = 256
DEFAULT_CHUNK_SIZE = 8192


def distinct_history(item_ids, exclude=None):
    """(ids int32 [B, L], keep bool [B, L]): each row's history sorted, with
    `keep` True once per distinct real item (not padding/OOV, not `exclude`
    [B] such as the row's target)."""
    ids = tf.sort(tf.cast(item_ids, tf.int32), axis=1)
    first = tf.concat([tf.ones_like(ids[:, :1], tf.bool), tf.not_equal(ids[:, 1:], ids[:, :-1])], 1)
    keep = first & (ids >= NUM_RESERVED)
    if exclude is not None:
        keep &= tf.not_equal(ids, exclude[:, tf.newaxis])
    return ids, keep


def _in_chunk(ids, first, size):
    """(local column [B, ...] clipped into the chunk, whether the id lies in it) for ids in first..first+size-1."""
    local = ids - first
    inside = (local >= 0) & (local < size)
    return tf.clip_by_value(local, 0, size - 1), inside


def repeat_targets(item_ids, targets) -> tf.Tensor:
    """bool [B]: whether each row's target [B] is one of its input items [B, L] (a repeat target)."""
    return tf.reduce_any(tf.equal(tf.cast(item_ids, tf.int32), tf.cast(targets, tf.int32)[:, tf.newaxis]), 1)


def rank_repeats_last(ranks, num_candidates, item_ids, targets, exclude_seen) -> tf.Tensor:
    """The repeat-target rule of both protocols: with seen items excluded, a
    target the row has already seen is not a candidate either and is ranked
    last (a miss).  Keeping it as the one seen item among unseen ones would
    tell the ranking which item it is (`tfrec_dyn.metrics.protocols`,
    "repeat targets")."""
    missed = repeat_targets(item_ids, targets) & tf.cast(exclude_seen, tf.bool)
    return tf.where(missed, tf.cast(num_candidates, ranks.dtype) - 1, ranks)


def sampled_protocol_ranks(scoring, state, item_ids, targets, negatives,
                           exclude_seen=True) -> Tuple[tf.Tensor, tf.Tensor]:
    """(ranks int32 [B], num_candidates int32 [B]) of each row's target among
    itself and its `negatives` [B, n] (pessimistic ties), only those n + 1
    items scored; a repeat target ranks last (`rank_repeats_last`)."""
    targets = tf.cast(targets, tf.int32)
    candidate_ids = tf.concat([targets[:, tf.newaxis], tf.cast(negatives, tf.int32)], 1)  # the target first
    ranks = tf.cast(rank_of_target_tf(scoring.score_items(state, candidate_ids), tf.zeros_like(targets)), tf.int32)
    counts = tf.fill(tf.shape(targets), tf.shape(candidate_ids)[1])
    return rank_repeats_last(ranks, counts, item_ids, targets, exclude_seen), counts


def full_protocol_ranks(scoring, state, item_ids, targets, vocab_size, exclude_seen=True,
                        chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tuple[tf.Tensor, tf.Tensor]:
    """(ranks int32 [B], num_candidates int32 [B]) of each row's target under the full protocol.

    Candidates: the real items 2..V-1, minus the items of the row's history
    [B, L] if `exclude_seen` (a bool or a bool tensor), plus the target; a
    target that is itself in the history is then ranked last (a miss: see
    `tfrec_dyn.metrics.protocols` on repeat targets).
    The rank counts the other candidates scored >= the target (pessimistic
    ties, NaN = -inf; see `tfrec_dyn.metrics.ranking`).

    Each chunk costs its scores, one comparison and a sum: every item of the
    chunk scored >= the target is counted, then the history's items and the
    target itself are taken back out, read from the same chunk scores (O(B·L)).

    `scoring`: a model, or anything with `score_items(state, item_ids)`.  The
    target's score comes from `score_items(state, targets [B, 1])`, the
    others' from chunks `score_items(state, ids [c])`: a model whose two
    paths round differently in the last bit could see a near-tie counted
    either way; both `tfrec-dyn evaluate` and the serving signature use this
    same function with the same chunk size, so they agree exactly.
    """
    (ranks,) = _fold_catalogue(scoring, state, [_RankCount(scoring, state, item_ids, targets, exclude_seen)],
                               vocab_size, chunk_size)
    return ranks


def top_k_recommendations(scoring, state, item_ids, vocab_size, k, exclude_seen=True,
                          chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tuple[tf.Tensor, tf.Tensor]:
    """(item ids int32 [B, k], scores float32 [B, k]): each row's k best real items, best first.

    With `exclude_seen` the row's history items are left out.  A candidate
    always comes before a left-out item, even if it scores NaN or -inf (it
    is listed with the lowest float); ties go to the smaller id; `k` is
    clipped to [1, V - 2]; slots past the last candidate hold `PAD_ID` with
    score -inf.
    """
    (top,) = _fold_catalogue(scoring, state, [_TopK(item_ids, vocab_size, k, exclude_seen)], vocab_size, chunk_size)
    return top


def ranks_and_top_k(scoring, state, item_ids, targets, vocab_size, k, exclude_seen=True,
                    chunk_size: int = DEFAULT_CHUNK_SIZE):
    """((ranks, num_candidates), (top ids, top scores)): `full_protocol_ranks`
    and `top_k_recommendations` from one pass over the catalogue, each chunk
    scored once (the full protocol with its beyond-accuracy lists)."""
    return tuple(_fold_catalogue(scoring, state, [_RankCount(scoring, state, item_ids, targets, exclude_seen),
                                                  _TopK(item_ids, vocab_size, k, exclude_seen)],
                                 vocab_size, chunk_size))


def _fold_catalogue(scoring, state, folds, vocab_size, chunk_size):
    """[fold.result(...)] of every fold, each fed every chunk's scores: one
    `score_items` call per chunk, whatever the number of folds."""

    def step(ids, carries):
        scores = tf.cast(scoring.score_items(state, ids), tf.float32)
        return tuple(fold.step(ids, scores, carry) for fold, carry in zip(folds, carries))

    carries = fold_chunks(step, tuple(fold.initial for fold in folds), NUM_RESERVED, vocab_size, chunk_size)
    return [fold.result(carry) for fold, carry in zip(folds, carries)]


class _RankCount:
    """`full_protocol_ranks` as a fold over chunk scores: (ranks, others) counted so far."""

    def __init__(self, scoring, state, item_ids, targets, exclude_seen):
        self.targets = tf.cast(targets, tf.int32)
        self.target_scores = tf.cast(scoring.score_items(state, self.targets[:, tf.newaxis])[:, 0], tf.float32)
        # A NaN target ranks like -inf: below every candidate, tied with the -inf ones, so all count.
        self.everything = tf.math.is_nan(self.target_scores) | tf.equal(self.target_scores, -np.inf)
        self.item_ids, self.exclude_seen = item_ids, exclude_seen
        self.seen, keep = distinct_history(item_ids, exclude=self.targets)
        self.keep = keep & tf.cast(exclude_seen, tf.bool)
        zeros = tf.zeros_like(self.targets)
        self.initial = (zeros, zeros)

    def step(self, ids, scores, counts):
        ranks, others = counts
        first, size = ids[0], tf.size(ids)
        threshold = self.target_scores[:, tf.newaxis]
        above = tf.reduce_sum(tf.cast(scores >= threshold, tf.int32), 1)      # NaN scores are never >=
        seen_local, seen_inside = _in_chunk(self.seen, first, size)
        seen_inside &= self.keep
        seen_above = seen_inside & (tf.gather(scores, seen_local, batch_dims=1) >= threshold)
        target_local, target_inside = _in_chunk(self.targets, first, size)
        target_above = target_inside & (tf.gather(scores, target_local[:, tf.newaxis], batch_dims=1)[:, 0]
                                        >= self.target_scores)
        in_chunk = size - tf.reduce_sum(tf.cast(seen_inside, tf.int32), 1) - tf.cast(target_inside, tf.int32)
        counted = above - tf.reduce_sum(tf.cast(seen_above, tf.int32), 1) - tf.cast(target_above, tf.int32)
        return ranks + tf.where(self.everything, in_chunk, counted), others + in_chunk

    def result(self, counts):
        ranks, others = counts
        return rank_repeats_last(ranks, others + 1, self.item_ids, self.targets, self.exclude_seen), others + 1


_LOWEST = float(np.finfo(np.float32).min)


class _TopK:
    """`top_k_recommendations` as a fold over chunk scores: the running top-k."""

    def __init__(self, item_ids, vocab_size, k, exclude_seen):
        self.seen, keep = distinct_history(item_ids)
        self.keep = keep & tf.cast(exclude_seen, tf.bool)
        self.k = tf.clip_by_value(tf.cast(k, tf.int32), 1, tf.cast(vocab_size, tf.int32) - NUM_RESERVED)
        self.initial = empty_top_k(tf.shape(item_ids)[0], self.k)

    def step(self, ids, scores, best):
        scores = tf.where(scores >= _LOWEST, scores, _LOWEST)  # NaN and -inf: the lowest candidate score
        local, inside = _in_chunk(self.seen, ids[0], tf.size(ids))
        positions = tf.where(inside & self.keep)
        indices = tf.stack([tf.cast(positions[:, 0], tf.int32), tf.gather_nd(local, positions)], 1)
        scores = tf.tensor_scatter_nd_update(scores, indices, tf.fill(tf.shape(indices)[:1], -np.inf))
        return merge_top_k(best, ids, scores, self.k)

    @staticmethod
    def result(best):
        values, ids = best
        return tf.where(ids >= 0, ids, PAD_ID), values


# The largest chunk `chunk_for_rows` gives a small batch: of 8,192, 32,768 and 131,072 items, the
# middle one answered batch-1 requests over 1M items fastest in a one-off profile (fewer loop steps
# than 8,192; 131,072 was slower again). The REST figures in docs/scale.md come from scale.py.
MAX_CHUNK_SIZE = 32768


def chunk_for_rows(rows, chunk_size: int) -> tf.Tensor:
    """The chunk (int32 scalar) for a batch of `rows` users: as many items as
    keep the scores of one chunk at those of `EVAL_BATCH_SIZE` rows ×
    `chunk_size` (what evaluation holds), between `chunk_size` and `MAX_CHUNK_SIZE`.  Serving
    ranks one user at a time; fewer, larger chunks cost less loop overhead."""
    rows = tf.maximum(tf.cast(rows, tf.int32), 1)
    return tf.clip_by_value(EVAL_BATCH_SIZE * chunk_size // rows, chunk_size, max(chunk_size, MAX_CHUNK_SIZE))


def chunk_size_of(model) -> int:
    """The model's `score_chunk_size`, else `DEFAULT_CHUNK_SIZE`."""
    return getattr(model, "score_chunk_size", None) or DEFAULT_CHUNK_SIZE


class _ScoreMatrix:
    """A callable batch -> scores [B, V] seen as a scorer: the matrix is the user state."""

    def __init__(self, score_fn):
        self.score_fn = score_fn
        self.vocab_size = None

    def user_state(self, batch):
        scores = tf.cast(tf.convert_to_tensor(self.score_fn(batch)), tf.float32)
        rows = np.shape(batch["item_ids"])[0]
        if scores.shape.rank != 2 or scores.shape[0] != rows:
            raise ValueError(f"score_fn must return scores [batch, V] = [{rows}, V], got shape {scores.shape}")
        vocab_size = int(scores.shape[1])
        if vocab_size <= NUM_RESERVED:
            raise ValueError(f"score_fn returned {vocab_size} columns: no real items")
        if self.vocab_size not in (None, vocab_size):
            raise ValueError(f"score_fn returned {vocab_size} columns after {self.vocab_size} before")
        self.vocab_size = vocab_size
        return scores

    @staticmethod
    def score_items(scores, item_ids):
        item_ids = tf.cast(item_ids, tf.int32)
        if item_ids.shape.rank == 1:
            return tf.gather(scores, item_ids, axis=1)
        return tf.gather(scores, item_ids, batch_dims=1)


class Scorer:
    """Scores batches of users for the evaluation protocols, a chunk of items at a time.

    `Scorer(model)`: anything with `user_state(batch)`, `score_items(state,
    item_ids)` and `vocab_size` (every `SequentialRecommender`); each step is
    compiled once with `tf.function`, so make one Scorer per model and reuse
    it.  `Scorer(fn)` for a plain callable batch -> scores [B, V] (numpy or
    tf; e.g. an external model): its matrix is the state, run eagerly
    (`.compiled` says which).

    Methods take a batch {"item_ids": int32 [B, L], side features...}:
    `state(batch)`, then `ranks(state, item_ids, targets, exclude_seen)`,
    `sampled_ranks(state, item_ids, targets, negatives, exclude_seen)`, `top_k(state,
    item_ids, k, exclude_seen)` or both in one pass, `ranks_and_top_k(state,
    item_ids, targets, k, exclude_seen)` -> ((ranks, counts), top ids).
    """

    def __init__(self, scoring, chunk_size: Optional[int] = None):
        if isinstance(scoring, Scorer):
            scoring = scoring.source
        if isinstance(scoring, _ScoreMatrix) or (hasattr(scoring, "user_state") and hasattr(scoring, "score_items")):
            self.source = scoring  # a model, or another Scorer's function (with another chunk size)
        elif callable(scoring):
            self.source = _ScoreMatrix(scoring)
        else:
            raise TypeError(f"cannot score with {type(scoring).__name__}: pass a model (user_state / score_items) "
                            "or a callable returning scores [B, V]")
        self.chunk_size = int(chunk_size or chunk_size_of(self.source))
        # No autograph: the scoring loops are `tf.while_loop`s already, and converting the model's
        # and the folds' code again on every trace was most of a cold evaluation's time.
        compile_ = (lambda f: tf.function(f, reduce_retracing=True, autograph=False)) if self.compiled else \
            (lambda f: f)
        self.state = compile_(lambda batch: self.source.user_state(batch))
        self.ranks = compile_(self._ranks)
        self.sampled_ranks = compile_(lambda state, item_ids, targets, negatives, exclude_seen: sampled_protocol_ranks(
            self.source, state, item_ids, targets, negatives, exclude_seen))
        self.top_k = compile_(self._top_k)
        self.ranks_and_top_k = compile_(self._ranks_and_top_k)

    @property
    def compiled(self) -> bool:
        """Whether the steps are `tf.function`s (a model's) or run eagerly (a score function's)."""
        return not isinstance(self.source, _ScoreMatrix)

    @classmethod
    def of(cls, scoring, chunk_size: Optional[int] = None) -> "Scorer":
        """`scoring` itself if it is a Scorer with that chunk size (compiled already), else a new Scorer."""
        if isinstance(scoring, Scorer) and chunk_size in (None, scoring.chunk_size):
            return scoring
        return cls(scoring, chunk_size)

    @property
    def vocab_size(self) -> Optional[int]:
        """V (None for a score-matrix function until its first batch)."""
        return self.source.vocab_size

    def _ranks(self, state, item_ids, targets, exclude_seen):
        return full_protocol_ranks(self.source, state, item_ids, targets, self.vocab_size,
                                   exclude_seen, self.chunk_size)

    def _top_k(self, state, item_ids, k, exclude_seen):
        return top_k_recommendations(self.source, state, item_ids, self.vocab_size, k,
                                     exclude_seen, self.chunk_size)[0]

    def _ranks_and_top_k(self, state, item_ids, targets, k, exclude_seen):
        ranks, top = ranks_and_top_k(self.source, state, item_ids, targets, self.vocab_size, k,
                                     exclude_seen, self.chunk_size)
        return ranks, top[0]
