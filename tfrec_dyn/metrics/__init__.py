"""Evaluation: ranking metrics, full / sampled protocols and beyond-accuracy figures.

* `ranking`: pessimistic ranks (`rank_of_target`, `rank_of_target_tf`) and
  HR / NDCG / MRR / Recall from them.
* `scoring`: the catalogue ranked a chunk of items at a time
  (`full_protocol_ranks`, `top_k_recommendations`) and `Scorer`, a model
  compiled once for them.
* `protocols`: `evaluate(model, histories, targets, protocol="full" |
  "sampled")`, `SampledNegatives` (drawn once per split, saved with it) and
  `top_k_items` for the recommended lists.
* `beyond`: item coverage, Gini index, tail share and head/tail item groups.
* `evaluation`: `evaluate_model`, the protocols applied to a model on one
  split (the CLI, training and, through the exported `target_rank`, the TFX
  Evaluator's `tfma_metrics` measure with it).

Example:
>>> import numpy as np
>>> score_fn = lambda batch: np.tile(np.arange(6.0), (len(batch["item_ids"]), 1))
>>> evaluate(score_fn, np.array([[0, 2]]), np.array([5]), ks=(1,)).metrics["HR@1"]
1.0
"""

from tfrec_dyn.metrics.beyond import (
    count_items,
    gini_index,
    head_tail_items,
    item_coverage,
    recommendation_counts,
    tail_share,
)
from tfrec_dyn.metrics.protocols import (
    DEFAULT_NUM_NEGATIVES,
    PROTOCOLS,
    SAMPLERS,
    EvaluationResult,
    SampledNegatives,
    evaluate,
    top_k_items,
)
from tfrec_dyn.metrics.ranking import (
    DEFAULT_KS,
    hit_rate,
    metrics_from_ranks,
    mrr,
    ndcg,
    rank_of_target,
    rank_of_target_tf,
    recall_at_k,
)
from tfrec_dyn.metrics.scoring import Scorer

__all__ = [
    "DEFAULT_KS", "DEFAULT_NUM_NEGATIVES", "EvaluationResult", "PROTOCOLS", "SAMPLERS",
    "SampledNegatives", "Scorer", "count_items", "evaluate", "gini_index", "head_tail_items", "hit_rate",
    "item_coverage", "metrics_from_ranks", "mrr", "ndcg", "rank_of_target", "rank_of_target_tf",
    "recall_at_k", "recommendation_counts", "tail_share", "top_k_items",
]
