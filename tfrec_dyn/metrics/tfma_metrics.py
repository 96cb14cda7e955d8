"""HR@K, NDCG@K and MRR as TensorFlow Model Analysis metrics (for the TFX Evaluator).

The exported model's evaluation signature (`serving_tf_example`) returns, for
each example, `target_rank`: the rank of its `target_item_id` under the full
protocol, computed by the same `scoring.full_protocol_ranks` as `tfrec-dyn evaluate`
(pessimistic ties; every item but the history's is a candidate, the target
always). These metrics average the same `tfrec_dyn.metrics.ranking` functions
over those ranks, so the Evaluator's figures are `tfrec-dyn evaluate`'s full
protocol figures, under the same names (`HR@10`, `NDCG@10`, `MRR` uncut,
`MRR@10` cut).

EvalConfig usage (each metric takes its own threshold)::

    tfma.MetricConfig(class_name="TopKHitRate", module="tfrec_dyn.metrics.tfma_metrics",
                      config='{"k": 10}', threshold=tfma.MetricThreshold(...))   # "HR@10"
    tfma.MetricConfig(class_name="TopKNDCG", module=..., config='{"k": 10}')          # "NDCG@10"
    tfma.MetricConfig(class_name="TopKMRR", module=...)                               # "MRR"
"""

from __future__ import annotations

from typing import Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types

from tfrec_dyn.metrics.ranking import hit_rate, mrr, ndcg

RANK_KEY = "target_rank"  # tfrec_dyn.serving.export.TARGET_RANK (not imported: serving sits above metrics)
_GAINS = {"hit_rate": hit_rate, "ndcg": ndcg, "mrr": mrr}


def _ranks(element, model_name: str) -> np.ndarray:
    """The element's target ranks (one per example it holds)."""
    predictions = element.prediction
    if isinstance(predictions, dict) and model_name in predictions:
        predictions = predictions[model_name]
    if not isinstance(predictions, dict) or RANK_KEY not in predictions:
        raise ValueError(f"the model's evaluation signature has no `{RANK_KEY}` output: export it with "
                         "tfrec_dyn.serving.export (a model exported before this version must be re-exported)")
    return np.asarray(predictions[RANK_KEY], np.int64).ravel()


class _MeanGainCombiner(beam.CombineFn):
    """Mean over examples of a ranking gain of the target's rank."""

    def __init__(self, key, kind, k):
        self._key, self._kind, self._k = key, kind, k

    def create_accumulator(self):
        return [0.0, 0]

    def add_input(self, accumulator, element):
        ranks = _ranks(element, self._key.model_name)
        if len(ranks):  # the mean of the same function `tfrec-dyn evaluate` averages, weighted back to a sum
            accumulator[0] += _GAINS[self._kind](ranks, self._k) * len(ranks)
            accumulator[1] += len(ranks)
        return accumulator

    def merge_accumulators(self, accumulators):
        total, count = 0.0, 0
        for value, n in accumulators:
            total, count = total + value, count + n
        return [total, count]

    def extract_output(self, accumulator):
        return {self._key: accumulator[0] / accumulator[1] if accumulator[1] else float("nan")}


def _computations(kind, k, name, eval_config=None, model_names=None, output_names=None,
                  example_weighted=False, **_):
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                         example_weighted=example_weighted)
            computations.append(metric_types.MetricComputation(
                keys=[key], preprocessors=None, combiner=_MeanGainCombiner(key, kind, k)))
    return computations


class TopKHitRate(metric_types.Metric):
    """Share of users whose next item ranks in the top k ("HR@k")."""

    def __init__(self, k: int = 10, name: Optional[str] = None):
        super().__init__(_computations, kind="hit_rate", k=k, name=name or f"HR@{k}")


class TopKNDCG(metric_types.Metric):
    """Mean 1/log2(rank + 2) of the next item within the top k ("NDCG@k")."""

    def __init__(self, k: int = 10, name: Optional[str] = None):
        super().__init__(_computations, kind="ndcg", k=k, name=name or f"NDCG@{k}")


class TopKMRR(metric_types.Metric):
    """Mean reciprocal rank of the next item: uncut ("MRR") or cut at k ("MRR@k")."""

    def __init__(self, k: Optional[int] = None, name: Optional[str] = None):
        super().__init__(_computations, kind="mrr", k=k, name=name or ("MRR" if k is None else f"MRR@{k}"))


for _metric in (TopKHitRate, TopKNDCG, TopKMRR):
    metric_types.register_metric(_metric)
