"""A model's figures on one evaluation split: the protocols applied to a recommender.

This is the one implementation of the evaluation protocol. `tfrec-dyn
evaluate` and the final evaluation of `tfrec-dyn train` / `train(...)` call
`evaluate_model` (the validation callback calls its `evaluate` for HR/NDCG@10
only); the exported SavedModel's
evaluation signature (`serving_tf_example`, read by the TFX Evaluator through
`tfrec_dyn.metrics.tfma_metrics`) ranks each target with the same
`tfrec_dyn.metrics.scoring.full_protocol_ranks`, and the TFMA metrics turn those ranks into figures with
the same `tfrec_dyn.metrics.ranking` functions.

    arrays = data.eval_arrays("test", max_len)            # an `EvalArrays`
    results = evaluate_model(model, arrays, data.vocab, data.item_counts, protocols=("full", "sampled"))
    results["full"].metrics["NDCG@10"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrec_dyn.data.input_pipeline import feature_name
from tfrec_dyn.data.splits import sample_users
from tfrec_dyn.data.vocabulary import NUM_RESERVED, Vocabulary
from tfrec_dyn.metrics.beyond import gini_index, head_tail_items, item_coverage, tail_share
from tfrec_dyn.metrics.protocols import DEFAULT_NUM_NEGATIVES, EvaluationResult, SampledNegatives, batch_rows, evaluate
from tfrec_dyn.metrics.ranking import metrics_from_ranks, rank_of_target
from tfrec_dyn.metrics.scoring import Scorer

# Sampled-protocol negatives are drawn from this seed, not the model seed, so
# models trained with different seeds are scored against the same candidates.
EVAL_NEGATIVES_SEED = 20240101
EVAL_KS = (5, 10, 20, 50)
BEYOND_K = 10  # the length of the lists Coverage, Gini and TailShare are measured on


@dataclasses.dataclass
class EvalArrays:
    """One evaluation split as model inputs."""

    user_ids: List[str]
    histories: np.ndarray  # [U, max_len] left-padded encoded inputs
    targets: np.ndarray  # [U] encoded target ids
    known_items: List[np.ndarray]  # every encoded item of the user (sampled negatives; [] where not needed)
    # Side-field windows aligned with `histories`, by model input name (`behavior_ids`, `dwell_time`, ...).
    features: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    # Encoded side fields of each target, by field name (e.g. "category": [U] ids).
    target_side: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def rows(self, rows) -> "EvalArrays":
        """The same split restricted to the given row indices."""
        known = [self.known_items[r] for r in rows] if self.known_items else []
        return EvalArrays([self.user_ids[r] for r in rows], self.histories[rows], self.targets[rows], known,
                          {n: v[rows] for n, v in self.features.items()},
                          {n: v[rows] for n, v in self.target_side.items()})


def model_features(model, features):
    """The side-field inputs among `features` that `model` reads (its `side_fields`)."""
    wanted = {feature_name(field) for field in getattr(model, "side_fields", ())}
    return {name: values for name, values in features.items() if name in wanted}


def negatives_cache_dir() -> str:
    """Where drawn sampled-protocol negatives are cached: `$TFREC_DYN_CACHE`, else ~/.cache/tfrec_dyn."""
    return os.environ.get("TFREC_DYN_CACHE", os.path.expanduser("~/.cache/tfrec_dyn"))


def split_negatives(arrays: EvalArrays, vocab: Vocabulary, item_counts, num_negatives: int = DEFAULT_NUM_NEGATIVES,
                    sampler: str = "uniform", cache_dir: Optional[str] = None) -> SampledNegatives:
    """The split's fixed sampled-protocol negatives, drawn once and cached on disk.

    The cache key hashes the vocabulary, every user's known items and the
    sampling settings; the draw itself is deterministic from its seed, so a
    missing cache only costs the draw.
    """
    key = hashlib.sha1()
    key.update("\n".join(vocab.tokens).encode())
    for items in arrays.known_items:
        key.update(np.asarray(items, np.int32).tobytes() + b"|")
    key.update(f"{num_negatives}/{sampler}/{EVAL_NEGATIVES_SEED}".encode())
    path = os.path.join(cache_dir or negatives_cache_dir(), "negatives", key.hexdigest() + ".npz")
    if os.path.exists(path):
        return SampledNegatives.load(path)
    negatives = SampledNegatives.draw(arrays.known_items, vocab.size, num_negatives, sampler=sampler,
                                      item_counts=item_counts, seed=EVAL_NEGATIVES_SEED)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Written aside, then renamed: another process (a second run, a test worker) drawing the same
    # split at the same time reads either no file or a whole one.
    handle, partial = tempfile.mkstemp(suffix=".npz", dir=os.path.dirname(path))
    os.close(handle)
    try:
        os.replace(negatives.save(partial), path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return negatives


def evaluate_model(model, arrays: EvalArrays, vocab: Vocabulary, item_counts, protocols: Sequence[str] = ("full",),
                   ks=EVAL_KS, exclude_seen: bool = True, num_negatives: int = DEFAULT_NUM_NEGATIVES,
                   sampler: str = "uniform", cache_dir: Optional[str] = None,
                   eval_users: Optional[int] = None) -> Dict[str, EvaluationResult]:
    """{protocol: `EvaluationResult`} of `model` on `arrays`; the full protocol
    adds the beyond-accuracy figures, and models that rank categories too (HUP)
    add a "category" entry (next-item category, all categories ranked).

    `item_counts`: training-split counts (popularity sampler, tail items);
    `num_negatives`, `sampler`, `cache_dir`: the sampled protocol's (see
    `split_negatives`); `eval_users`: evaluate a seeded sample of that many
    users (`sample_users`; None: all).  Each sampled user's figures are
    exactly those of a run over all users: the full protocol still ranks the
    whole catalogue, and the sampled protocol's negatives are the rows of
    the whole split's draw."""
    rows = sample_users(arrays.user_ids, eval_users)
    full_split = arrays
    if len(rows) < len(arrays.targets):
        arrays = arrays.rows(rows)
    features = model_features(model, arrays.features)
    scorer = Scorer(model)  # compiled once for every protocol
    results = {}
    for protocol in protocols:
        negatives = None
        if protocol == "sampled":
            drawn = split_negatives(full_split, vocab, item_counts, num_negatives, sampler, cache_dir)
            negatives = drawn if arrays is full_split else dataclasses.replace(drawn, negatives=drawn.negatives[rows])
        # The full protocol's beyond-accuracy lists come from its own pass over the catalogue.
        results[protocol] = evaluate(scorer, arrays.histories, arrays.targets, protocol=protocol, ks=ks,
                                     negatives=negatives, exclude_seen=exclude_seen, features=features,
                                     top_k=BEYOND_K if protocol == "full" else 0)
        results[protocol].negatives = negatives
        if protocol == "full":
            results[protocol].metrics.update(beyond_accuracy(results[protocol].top_k_items, vocab.size, item_counts))
    if hasattr(model, "category_scores") and "category" in arrays.target_side:
        results["category"] = evaluate_categories(model, arrays, features, ks)
    share = next(iter(results.values())).metrics.get("RepeatShare", 0.0) if results else 0.0
    if share >= REPEAT_WARNING_SHARE:
        warnings.warn(
            f"{share:.0%} of the evaluated targets repeat an item of the user's window: " + (
                "with seen items excluded they count as misses, so the figures measure novel-item prediction "
                "(exclude_seen=False / --include-seen measures the next event, repeats included)" if exclude_seen
                else "the sampled protocol's negatives are never seen items, so its figures on those targets are "
                     "optimistic") + "; see the figures on novel and repeat targets apart", stacklevel=2)
    return results


REPEAT_WARNING_SHARE = 0.2  # `evaluate_model` warns from this share of repeat targets on


def metrics_by_protocol(results: Dict[str, EvaluationResult]) -> Dict[str, Dict[str, float]]:
    """{protocol: metrics} of `evaluate_model`'s results, plus "<protocol>:novel" and
    "<protocol>:repeat" (the same figures on novel and on repeat targets) where
    the split has both (what runs record and the CLI prints)."""
    out = {}
    for protocol, result in results.items():
        out[protocol] = result.metrics
        groups = result.by_target()
        if len(groups) == 2:
            out.update({f"{protocol}:{group}": figures for group, figures in groups.items()})
    return out


def evaluate_categories(model, arrays: EvalArrays, features, ks=(5, 10, 20), batch_size: int = 256):
    """Ranks each target's category among all categories with `model.category_scores`."""
    targets = arrays.target_side["category"]
    if targets.size and targets.min() < NUM_RESERVED:
        raise ValueError("a target's category is not in the category vocabulary")
    # Traced once, like the Scorer's steps: the model needs no autograph, and
    # the short last batch is filled so its shape does not trace it again.
    score_fn = tf.function(lambda batch: model.category_scores(batch), autograph=False)
    ranks = []
    for start, count, rows in batch_rows(len(targets), batch_size, fill=len(targets) > batch_size):
        batch = {"item_ids": arrays.histories[rows], **{name: values[rows] for name, values in features.items()}}
        scores = score_fn(batch).numpy()[:count]
        candidates = np.ones_like(scores, bool)
        candidates[:, :NUM_RESERVED] = False
        ranks.append(rank_of_target(scores, targets[start:start + count], candidates))
    ranks = np.concatenate(ranks)
    return EvaluationResult(metrics_from_ranks(ranks, ks), ranks, np.full(len(ranks), scores.shape[1] - NUM_RESERVED),
                            "category", tuple(ks))


def beyond_accuracy(top_k, vocab_size: int, item_counts):
    """Item coverage, Gini index and tail-item share of everyone's top-k list
    `top_k` [U, k] (`evaluate(..., top_k=k).top_k_items`; tail items: all but
    the 20 % most interacted-with training items)."""
    k = top_k.shape[1]
    _, tail = head_tail_items(item_counts)
    return {f"Coverage@{k}": item_coverage(top_k, vocab_size),
            f"Gini@{k}": gini_index(top_k, vocab_size),
            f"TailShare@{k}": tail_share(top_k, tail)}
