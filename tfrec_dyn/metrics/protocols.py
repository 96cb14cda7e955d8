"""Evaluation protocols for next-item recommendation, chosen by name.

* ``"full"``: each user's target is ranked against **every** real item
  (ids 2..V-1), batches of users against chunks of items at a time
  (`tfrec_dyn.metrics.scoring`: memory O(users × chunk), whatever the
  catalogue).
  With ``exclude_seen=True`` (the default) the items of the user's input
  history are not candidates: the usual full-ranking practice (a deployed
  recommender would not re-recommend them, and a model should not be
  rewarded or punished for scoring them).
* ``"sampled"``: each target is ranked against N negatives (100 by default)
  that are not in the user's known sequence.  The negatives are drawn **once
  per data split** with `SampledNegatives.draw` from a seed, saved next to the
  split (`save` / `load`, npz) and passed in, so every model and every re-run
  is scored against the same candidates.  Only those candidates are scored.

**Repeat targets.**  On logs with repeat consumption (edits, listens,
re-purchases) the next item is often one the user already had.  Every
evaluation reports the share of such targets (``RepeatShare``: the target is
an item of the model's input window) and `EvaluationResult.by_target()` the
metrics on repeat and on novel targets apart.  With ``exclude_seen=True`` a
repeat target is not a candidate either and counts as a miss (ranked last):
the protocol measures novel-item prediction.  Keeping it, as the one seen
item among unseen candidates, would give the answer away (a model that just
scores seen items first would "find" every repeat).  To measure the next
event, repeats included, keep seen items as candidates
(``exclude_seen=False``, `tfrec-dyn ... --include-seen`); the sampled
protocol's negatives are never seen items, so its repeat-target figures
stay optimistic there (read them from ``by_target()["novel"]``).  A high
share prints a warning (`evaluation.evaluate_model`).

Ranks are pessimistic (ties count against the target; see
`tfrec_dyn.metrics.ranking`).  Example, with a score function that always
prefers larger item ids:

>>> V = 6                                        # real items 2, 3, 4, 5
>>> def score_fn(batch):                          # any callable {"item_ids": [B, L]} -> [B, V]
...     return np.tile(np.arange(V, dtype=np.float32), (len(batch["item_ids"]), 1))
>>> histories = np.array([[0, 5], [3, 4]], np.int32)
>>> result = evaluate(score_fn, histories, targets=np.array([4, 5]), ks=(1, 2))
>>> result.ranks.tolist()   # user 0: 5 is seen -> 4 is first; user 1: nothing above 5
[0, 0]
>>> result.metrics["HR@1"], result.metrics["MRR"]
(1.0, 1.0)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

from tfrec_dyn.data.vocabulary import NUM_RESERVED
from tfrec_dyn.metrics.ranking import DEFAULT_KS, _check_ks, metrics_from_ranks
from tfrec_dyn.metrics.scoring import EVAL_BATCH_SIZE, Scorer, repeat_targets

PROTOCOLS = ("full", "sampled")
SAMPLERS = ("uniform", "popularity")
DEFAULT_NUM_NEGATIVES = 100

# Negatives are drawn for this many users at a time (bounds memory; being a
# constant, it keeps the draws a pure function of the seed).
_DRAW_CHUNK_USERS = 4096
_MAX_DRAW_ROUNDS = 1000

# ================================================================ negatives
def _history_keys(histories, vocab_size: int) -> Tuple[np.ndarray, int]:
    """Sorted unique keys user * V + item of every (user, real item) in `histories`.

    `histories` is an int array [U, L] (0 = padding) or a sequence of 1-D id
    arrays (ragged).  Returns (keys, number of users).
    """
    if isinstance(histories, np.ndarray) and histories.ndim == 2:
        num_users = histories.shape[0]
        rows = np.repeat(np.arange(num_users, dtype=np.int64), histories.shape[1])
        items = histories.ravel().astype(np.int64)
    else:
        sequences = [np.asarray(s, dtype=np.int64).ravel() for s in histories]
        num_users = len(sequences)
        rows = np.repeat(np.arange(num_users, dtype=np.int64), [len(s) for s in sequences])
        items = np.concatenate(sequences) if sequences else np.zeros(0, np.int64)
    if items.size and (items.min() < 0 or items.max() >= vocab_size):
        raise ValueError(f"history item ids must lie in [0, {vocab_size})")
    real = items >= NUM_RESERVED
    keys = np.sort(rows[real] * vocab_size + items[real])
    # Sort + adjacent difference: much faster than np.unique's hashing on ~10M keys.
    distinct = np.ones(keys.size, bool)
    distinct[1:] = keys[1:] != keys[:-1]
    return keys[distinct], num_users


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Elementwise `keys in sorted_keys` by binary search."""
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, bool)
    position = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[position] == keys


class _ItemDrawer:
    """Draws real item ids (2..V-1) uniformly or proportionally to `item_counts`."""

    def __init__(self, vocab_size: int, sampler: str, item_counts=None):
        self.vocab_size = vocab_size
        self.sampler = sampler
        num_real = vocab_size - NUM_RESERVED
        if sampler == "uniform":
            self.drawable = np.ones(num_real, bool)
            self._cdf = None
            return
        if item_counts is None:
            raise ValueError("the popularity sampler needs `item_counts` ([V] counts per item id)")
        counts = np.asarray(item_counts, dtype=np.float64)
        if counts.shape != (vocab_size,):
            raise ValueError(f"`item_counts` must have shape ({vocab_size},), got {counts.shape}")
        counts = counts[NUM_RESERVED:]
        if not np.all(np.isfinite(counts)) or np.any(counts < 0) or counts.sum() <= 0:
            raise ValueError("`item_counts` must be finite, non-negative and not all 0 on real items")
        self.drawable = counts > 0
        self._cdf = np.cumsum(counts)

    def __call__(self, rng: np.random.Generator, shape) -> np.ndarray:
        if self._cdf is None:
            return rng.integers(NUM_RESERVED, self.vocab_size, size=shape, dtype=np.int64)
        # Inverse-CDF sampling; zero-count items have an empty CDF step and are never drawn.
        u = rng.random(shape) * self._cdf[-1]
        index = np.minimum(np.searchsorted(self._cdf, u, side="right"), self._cdf.size - 1)
        return index.astype(np.int64) + NUM_RESERVED


def _draw_rows(rng, drawer: _ItemDrawer, history_keys, first_user: int, num_rows: int,
               num_negatives: int) -> np.ndarray:
    """Vectorised rejection sampling of distinct non-history items for users
    first_user..first_user+num_rows-1: every round draws a block of candidates
    for the rows still short, drops history items and repeats (keeping the
    first occurrence), and keeps the first `num_negatives` survivors."""
    vocab_size = drawer.vocab_size
    accepted = np.full((num_rows, num_negatives), -1, np.int64)   # -1 = slot not filled yet
    filled = np.zeros(num_rows, np.int64)
    for round_ in range(_MAX_DRAW_ROUNDS):
        pending = np.flatnonzero(filled < num_negatives)
        if pending.size == 0:
            return accepted
        need = int((num_negatives - filled[pending]).max())
        width = (2 * need + 16) * min(2 ** round_, 64)   # oversample more while rows stay short
        candidates = drawer(rng, (pending.size, width))
        users = (first_user + pending)[:, np.newaxis]
        candidates[_contains(history_keys, users * vocab_size + candidates)] = -1
        combined = np.concatenate([accepted[pending], candidates], axis=1)
        # Keep the first occurrence of each item per row: already accepted ones come first.
        valid_positions = np.flatnonzero(combined.ravel() >= 0)
        row_keys = (np.arange(pending.size)[:, np.newaxis] * vocab_size + combined).ravel()
        _, first = np.unique(row_keys[valid_positions], return_index=True)
        keep = np.zeros(combined.size, bool)
        keep[valid_positions[first]] = True
        keep = keep.reshape(combined.shape)
        slot = np.cumsum(keep, axis=1) - 1
        keep &= slot < num_negatives
        rows, columns = np.nonzero(keep)
        refilled = np.full((pending.size, num_negatives), -1, np.int64)
        refilled[rows, slot[rows, columns]] = combined[rows, columns]
        accepted[pending] = refilled
        filled[pending] = keep.sum(axis=1)
    raise RuntimeError(f"could not draw {num_negatives} distinct negatives in {_MAX_DRAW_ROUNDS} rounds; "
                       "is the popularity distribution extremely concentrated?")


@dataclasses.dataclass(eq=False)
class SampledNegatives:
    """Fixed negatives of the sampled protocol: one row of distinct item ids per user.

    Draw them once per data split (`draw`), keep them with the split
    (`save` / `load`) and pass them to `evaluate(..., protocol="sampled")`.

    Attributes:
      negatives: int32 [U, N], row u = user u's negatives (real items, no
        duplicates within a row, never an item of the user's sequence).
      vocab_size: V the ids were drawn for.
      sampler: "uniform" or "popularity".
      seed: seed of the draw (same seed + same inputs -> same negatives).

    Example:
    >>> sequences = np.array([[0, 2, 3], [4, 5, 6]], np.int32)   # inputs AND targets
    >>> negs = SampledNegatives.draw(sequences, vocab_size=10, num_negatives=3, seed=7)
    >>> negs.negatives.shape
    (2, 3)
    >>> bool(np.isin(negs.negatives[0], [2, 3]).any() or np.isin(negs.negatives[1], [4, 5, 6]).any())
    False
    """

    negatives: np.ndarray
    vocab_size: int
    sampler: str
    seed: int

    def __post_init__(self):
        self.negatives = np.asarray(self.negatives, dtype=np.int32)
        if self.negatives.ndim != 2 or self.negatives.shape[1] == 0:
            raise ValueError(f"`negatives` must be [users, N] with N >= 1, got shape {self.negatives.shape}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {SAMPLERS}, got {self.sampler!r}")
        self.vocab_size = int(self.vocab_size)
        self.seed = int(self.seed)
        if self.negatives.size and (self.negatives.min() < NUM_RESERVED
                                    or self.negatives.max() >= self.vocab_size):
            raise ValueError(f"negatives must be real item ids in [{NUM_RESERVED}, {self.vocab_size})")

    @property
    def num_users(self) -> int:
        return self.negatives.shape[0]

    @property
    def num_negatives(self) -> int:
        return self.negatives.shape[1]

    @classmethod
    def draw(cls, histories, vocab_size: int, num_negatives: int = DEFAULT_NUM_NEGATIVES,
             sampler: str = "uniform", item_counts=None, seed: int = 0) -> "SampledNegatives":
        """Draws `num_negatives` distinct negatives per user, none in the user's sequence.

        Args:
          histories: each user's WHOLE known sequence, targets included (e.g.
            ``np.concatenate([inputs, targets[:, None]], 1)``), as an int array
            [U, L] padded with 0 or a sequence of 1-D id arrays.
          vocab_size: V (ids 2..V-1 are the real items that may be drawn).
          num_negatives: N per user.
          sampler: "uniform" over real items, or "popularity": proportional to
            `item_counts` ([V] counts per id, e.g. `count_items` of the
            training data; items with count 0 are never drawn).
          seed: integer seed; the result is a pure function of the arguments.

        Raises:
          ValueError: bad arguments, or a user with fewer than N drawable items
            outside their sequence.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) \
                or vocab_size <= NUM_RESERVED:
            raise ValueError(f"`vocab_size` must be an integer > {NUM_RESERVED}, got {vocab_size!r}")
        if isinstance(num_negatives, bool) or not isinstance(num_negatives, (int, np.integer)) \
                or num_negatives <= 0:
            raise ValueError(f"`num_negatives` must be a positive integer, got {num_negatives!r}")
        vocab_size, num_negatives = int(vocab_size), int(num_negatives)
        drawer = _ItemDrawer(vocab_size, sampler, item_counts)
        history_keys, num_users = _history_keys(histories, vocab_size)

        # Feasibility: every user needs N drawable items outside their sequence.
        history_users = history_keys // vocab_size
        drawable_seen = np.bincount(history_users[drawer.drawable[history_keys % vocab_size - NUM_RESERVED]],
                                    minlength=num_users)
        available = int(drawer.drawable.sum()) - drawable_seen
        short = np.flatnonzero(available < num_negatives)
        if short.size:
            raise ValueError(f"{short.size} user(s) (first: row {short[0]}) have fewer than {num_negatives} "
                             f"drawable items outside their sequence (row {short[0]}: {available[short[0]]})")

        rng = np.random.default_rng(seed)
        negatives = np.empty((num_users, num_negatives), np.int32)
        for start in range(0, num_users, _DRAW_CHUNK_USERS):
            rows = min(_DRAW_CHUNK_USERS, num_users - start)
            negatives[start:start + rows] = _draw_rows(rng, drawer, history_keys, start, rows, num_negatives)
        return cls(negatives=negatives, vocab_size=vocab_size, sampler=sampler, seed=seed)

    def save(self, path: str) -> str:
        """Writes an npz file (numpy appends ".npz" if missing); returns the path written."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        np.savez(path, negatives=self.negatives, vocab_size=np.int64(self.vocab_size),
                 sampler=np.array(self.sampler), seed=np.int64(self.seed))
        return path

    @classmethod
    def load(cls, path: str) -> "SampledNegatives":
        """Reads a file written by `save`."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            return cls(negatives=data["negatives"], vocab_size=int(data["vocab_size"]),
                       sampler=str(data["sampler"]), seed=int(data["seed"]))


# =============================================================== evaluation
@dataclasses.dataclass(eq=False)
class EvaluationResult:
    """What `evaluate` returns.

    Attributes:
      metrics: {"HR@k", "NDCG@k", "MRR@k", "Recall@k" for every k, "MRR"}
        averaged over all users (`Recall@k` = `HR@k`: one target per user).
      ranks: int64 [U] pessimistic 0-based rank of each user's target.
      repeats: bool [U] whether the target is an item of the user's input
        window (a repeat target; see the module docstring).
      num_candidates: int64 [U] number of candidates each target was ranked
        among, itself included.
      protocol: "full" or "sampled".
      ks: the cut-offs.
      negatives: "sampled", from `evaluation.evaluate_model`: the split's
        negatives the targets were ranked against (to store with a run).
      top_k_items: "full" with `evaluate(..., top_k=k)`: int32 [U, k] each
        user's k best candidates, as `top_k_items` gives them.
    """

    metrics: Dict[str, float]
    ranks: np.ndarray
    num_candidates: np.ndarray
    protocol: str
    ks: Tuple[int, ...]
    negatives: Optional["SampledNegatives"] = None
    top_k_items: Optional[np.ndarray] = None
    repeats: Optional[np.ndarray] = None

    def by_target(self) -> Dict[str, Dict[str, float]]:
        """{"repeat": metrics on the users whose target repeats a window item,
        "novel": on the others}; a group without users is left out."""
        repeats = np.zeros(len(self.ranks), bool) if self.repeats is None else self.repeats
        return {name: self.metrics_for(mask) for name, mask in (("repeat", repeats), ("novel", ~repeats))
                if mask.any()}

    def metrics_for(self, users) -> Dict[str, float]:
        """The same metrics over a subset of users (bool mask [U] or row indices),
        e.g. head vs tail users; an empty subset gives NaN values.

        >>> result = EvaluationResult({}, np.array([0, 5]), np.array([9, 9]), "full", (1,))
        >>> result.metrics_for(np.array([True, False]))["HR@1"]
        1.0
        """
        users = np.asarray(users)
        if users.dtype == bool and users.shape != self.ranks.shape:
            raise ValueError(f"user mask shape {users.shape} does not match {self.ranks.shape[0]} users")
        return metrics_from_ranks(self.ranks[users], self.ks)


def _as_histories(histories, name: str = "histories") -> np.ndarray:
    histories = np.asarray(histories)
    if histories.ndim != 2:
        raise ValueError(f"`{name}` must be an int array [users, L] (left padded with 0), "
                         f"got shape {histories.shape}")
    if histories.size and not np.issubdtype(histories.dtype, np.integer):
        raise ValueError(f"`{name}` must hold integer item ids, got dtype {histories.dtype}")
    if histories.size and histories.min() < 0:
        raise ValueError(f"`{name}` holds negative item ids")
    return histories.astype(np.int32)


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _check_features(features, histories: np.ndarray) -> Dict[str, np.ndarray]:
    features = {name: np.asarray(values) for name, values in (features or {}).items()}
    for name, values in features.items():
        if values.shape[:2] != histories.shape:
            raise ValueError(f"feature {name!r} must be aligned with the histories {histories.shape}, "
                             f"got shape {values.shape}")
    return features


def batch_rows(num_users: int, batch_size: int, fill: bool):
    """Yields (start, count, rows): the row indices of each batch of users, of
    which the first `count` are real (users start..start+count-1).  With `fill`,
    a short last batch is filled up to `batch_size` with copies of the last
    user, so a traced step sees one batch shape and traces once; callers keep
    the first `count` rows of what they compute."""
    for start in range(0, num_users, batch_size):
        count = min(batch_size, num_users - start)
        yield start, count, (np.minimum(np.arange(start, start + batch_size), num_users - 1) if fill
                             else np.arange(start, start + count))


def _scored_batches(scorer: Scorer, histories: np.ndarray, batch_size: int, features=None):
    """Yields (start, count, rows, item_ids [B, L], user state) batch by batch
    (`batch_rows`; `rows` index the batch's users, for the caller's targets and
    negatives).  A compiled scorer over several batches has its short last
    batch filled (a short last batch traced the model and the folds a second
    time, about as long as ranking a few batches; the fill costs at most one
    batch of extra rows a call).  Checks the history ids against the scorer's V
    once it is known (after the first batch for a score-matrix function)."""
    features = _check_features(features, histories)
    num_users = histories.shape[0]
    largest = histories.max(initial=0)
    fill = scorer.compiled and num_users > batch_size

    def check():
        if largest >= scorer.vocab_size:
            raise ValueError(f"history item ids must be < V = {scorer.vocab_size} (score columns)")

    if scorer.vocab_size is not None:
        check()
    for start, count, rows in batch_rows(num_users, batch_size, fill):
        item_ids = histories[rows]
        state = scorer.state({"item_ids": item_ids, **{name: values[rows] for name, values in features.items()}})
        if start == 0:
            check()
        yield start, count, rows, item_ids, state


def _negatives_array(negatives, num_users: int) -> Tuple[np.ndarray, Optional[int]]:
    if negatives is None:
        raise ValueError('protocol="sampled" needs `negatives`: draw them once per split with '
                         "SampledNegatives.draw(...) (save/load them with the split) and pass them")
    vocab_size = None
    if isinstance(negatives, SampledNegatives):
        vocab_size = negatives.vocab_size
        negatives = negatives.negatives
    negatives = np.asarray(negatives)
    if negatives.ndim != 2 or negatives.shape[0] != num_users or negatives.shape[1] == 0:
        raise ValueError(f"`negatives` must be [users, N] = [{num_users}, N >= 1], got shape {negatives.shape}")
    if not np.issubdtype(negatives.dtype, np.integer) or negatives.min() < NUM_RESERVED:
        raise ValueError(f"`negatives` must be real item ids (>= {NUM_RESERVED})")
    return negatives.astype(np.int32), vocab_size


def evaluate(scoring, histories, targets, protocol: str = "full",
             ks: Iterable[int] = DEFAULT_KS, negatives=None, exclude_seen: bool = True,
             batch_size: int = EVAL_BATCH_SIZE, features=None, chunk_size: Optional[int] = None,
             top_k: int = 0) -> EvaluationResult:
    """Ranks every user's target with the named protocol and returns the metrics.

    Args:
      scoring: a `SequentialRecommender` (scored a chunk of items at a time:
        memory O(batch_size × chunk), whatever the catalogue), a `Scorer`
        (reuse one to compile the model once), or a callable taking
        {"item_ids": int32 [B, L]} and returning scores [B, V] (tf or numpy).
        Columns 0 and 1 are never candidates.
      histories: int [U, L] model inputs, left padded with 0.
      targets: int [U] the held-out next item of each user (a real item id).
      protocol: "full" (rank among all real items) or "sampled" (rank among
        `negatives`).
      ks: cut-offs for HR / NDCG / MRR / Recall.
      negatives: "sampled" only: a `SampledNegatives` or an int array [U, N]
        drawn once per split, none equal to the target or in the history.
      exclude_seen: drop the history items from the candidates, and count a
        target that repeats one of them as a miss (module docstring,
        "Repeat targets").  The sampled negatives exclude history items
        either way.
      batch_size: users scored per call of `score_fn`.
      features: optional {name: [U, L, ...]} model inputs aligned with the
        histories (side fields: `behavior_ids`, `dwell_time`, ...), passed to
        the model with the item ids.
      chunk_size: items scored at a time by the full protocol (default: the
        model's `score_chunk_size`, else `scoring.DEFAULT_CHUNK_SIZE`).
      top_k: "full" only: when > 0, also each user's `top_k` best candidates
        (`top_k_items`'s lists) from the same pass over the catalogue, in
        `.top_k_items`.

    Returns:
      `EvaluationResult` with `.metrics` (e.g. "HR@10", "NDCG@10", "MRR",
      "Recall@10"), per-user `.ranks` and `.num_candidates`, and
      `.metrics_for(users)` for head/tail breakdowns.

    Raises:
      ValueError: unknown protocol, mismatched shapes, a padding/OOV or
        out-of-vocabulary target, or negatives that hit the target or history.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: expected one of {PROTOCOLS}")
    ks = _check_ks(ks)
    batch_size = _check_batch_size(batch_size)
    histories = _as_histories(histories)
    targets = np.asarray(targets)
    if targets.ndim != 1 or targets.shape[0] != histories.shape[0]:
        raise ValueError(f"`targets` must be [users] = [{histories.shape[0]}] like `histories`, "
                         f"got shape {targets.shape}")
    if histories.shape[0] == 0:
        raise ValueError("no users to evaluate")
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"`targets` must hold integer item ids, got dtype {targets.dtype}")
    if targets.min() < NUM_RESERVED:
        bad = int(np.flatnonzero(targets < NUM_RESERVED)[0])
        raise ValueError(f"targets must be real items (ids >= {NUM_RESERVED}); row {bad} has "
                         f"{int(targets[bad])} (0 = padding, 1 = OOV)")
    targets = targets.astype(np.int32)
    if protocol == "sampled":
        negatives, negatives_vocab = _negatives_array(negatives, histories.shape[0])

    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0 \
            or (top_k and protocol != "full"):
        raise ValueError(f'`top_k` must be an integer >= 0, and 0 unless protocol="full"; got {top_k!r}')
    scorer = Scorer.of(scoring, chunk_size)
    ranks = np.empty(histories.shape[0], np.int64)
    num_candidates = np.empty(histories.shape[0], np.int64)
    top_lists = np.zeros((histories.shape[0], int(top_k)), np.int32) if top_k else None
    for start, count, rows, item_ids, state in _scored_batches(scorer, histories, batch_size, features):
        if start == 0:
            vocab_size = scorer.vocab_size
            if targets.max() >= vocab_size:
                raise ValueError(f"targets must be < V = {vocab_size} (score columns)")
            if protocol == "sampled" and (negatives.max() >= vocab_size
                                          or negatives_vocab not in (None, vocab_size)):
                raise ValueError(f"negatives were drawn for another vocabulary than V = {vocab_size}")
        batch_targets = targets[rows]
        if protocol == "full" and top_k:
            (batch_ranks, batch_counts), items = scorer.ranks_and_top_k(state, item_ids, batch_targets, int(top_k),
                                                                        exclude_seen)
            top_lists[start:start + count, :items.shape[1]] = np.asarray(items)[:count]
        elif protocol == "full":
            batch_ranks, batch_counts = scorer.ranks(state, item_ids, batch_targets, exclude_seen)
        else:
            batch_negatives = negatives[rows]
            in_history = (batch_negatives[:, :, np.newaxis] == item_ids[:, np.newaxis, :]).any(axis=(1, 2))
            if np.any(batch_negatives == batch_targets[:, np.newaxis]) or in_history.any():
                raise ValueError("some negatives equal the user's target or an input history item: were "
                                 "they drawn from this split's whole sequences (inputs and targets)?")
            batch_ranks, batch_counts = scorer.sampled_ranks(state, item_ids, batch_targets, batch_negatives,
                                                             exclude_seen)
        ranks[start:start + count] = np.asarray(batch_ranks)[:count]
        num_candidates[start:start + count] = np.asarray(batch_counts)[:count]
    repeats = repeat_targets(histories, targets).numpy()
    metrics = {**metrics_from_ranks(ranks, ks), "RepeatShare": float(repeats.mean())}
    return EvaluationResult(metrics=metrics, ranks=ranks, num_candidates=num_candidates, protocol=protocol, ks=ks,
                            top_k_items=top_lists, repeats=repeats)


def top_k_items(scoring, histories, k: int = 10, exclude_seen: bool = True,
                batch_size: int = EVAL_BATCH_SIZE, features=None, chunk_size: Optional[int] = None) -> np.ndarray:
    """Top-k recommended real items per user (full ranking), for the beyond-accuracy figures.

    Args:
      scoring, histories, batch_size, features, chunk_size: as in `evaluate`.
      k: list length.
      exclude_seen: leave the user's history items out of the list.

    Returns:
      int32 [U, k] item ids, best first; ties go to the smaller id; a user
      with fewer than k candidate items gets trailing 0 (empty) slots
      (`scoring.top_k_recommendations`).

    >>> score_fn = lambda batch: np.tile(np.arange(6.0), (len(batch["item_ids"]), 1))
    >>> top_k_items(score_fn, np.array([[0, 5], [0, 0]]), k=2).tolist()
    [[4, 3], [5, 4]]
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"`k` must be a positive integer, got {k!r}")
    batch_size = _check_batch_size(batch_size)
    histories = _as_histories(histories)
    scorer = Scorer.of(scoring, chunk_size)
    out = np.zeros((histories.shape[0], int(k)), np.int32)
    for start, count, _, item_ids, state in _scored_batches(scorer, histories, batch_size, features):
        items = np.asarray(scorer.top_k(state, item_ids, int(k), exclude_seen))[:count]
        out[start:start + count, :items.shape[1]] = items
    return out
