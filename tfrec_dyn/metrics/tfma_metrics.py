"""HR@K, NDCG@K and MRR@K as TensorFlow Model Analysis metrics (for the TFX Evaluator).

The model's evaluation signature returns each user's top-K recommended item
ids (strings, best first; output `item_ids`) and the label is the held-out
next item id.  As in the `full` protocol of `tfrec_dyn.metrics`, a target
absent from the list counts as a miss; MRR is cut at the list length K.

EvalConfig usage (each metric takes its own threshold)::

    tfma.MetricConfig(class_name="TopKHitRate", module="tfrec_dyn.metrics.tfma_metrics",
                      config='{"k": 10}', threshold=tfma.MetricThreshold(...))   # "HR@10"
    tfma.MetricConfig(class_name="TopKNDCG", module=..., config='{"k": 10}')          # "NDCG@10"
    tfma.MetricConfig(class_name="TopKMRR", module=...)                               # "MRR"
"""

from __future__ import annotations

import math
from typing import Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types

PREDICTION_KEY = "item_ids"


def _rank(element, model_name: str) -> Optional[int]:
    """0-based rank of the label in the predicted list, None when absent."""
    predictions = element.prediction
    if isinstance(predictions, dict) and model_name in predictions:
        predictions = predictions[model_name]
    if isinstance(predictions, dict):  # the signature's outputs: use the ranked ids
        predictions = predictions[PREDICTION_KEY]
    strings = [v.decode() if isinstance(v, bytes) else str(v)
               for v in np.asarray(predictions, dtype=object).ravel().tolist()]
    label = np.asarray(element.label, dtype=object).ravel().tolist()[0]
    label = label.decode() if isinstance(label, bytes) else str(label)
    return strings.index(label) if label in strings else None


def _gain(kind: str, k: Optional[int], rank: Optional[int]) -> float:
    if rank is None or (k is not None and rank >= k):
        return 0.0
    return {"hit_rate": 1.0, "ndcg": 1.0 / math.log2(rank + 2), "mrr": 1.0 / (rank + 1)}[kind]


class _MeanGainCombiner(beam.CombineFn):
    """Mean over users of a per-user gain of the label's rank."""

    def __init__(self, key, kind, k):
        self._key, self._kind, self._k = key, kind, k

    def create_accumulator(self):
        return [0.0, 0]

    def add_input(self, accumulator, element):
        accumulator[0] += _gain(self._kind, self._k, _rank(element, self._key.model_name))
        accumulator[1] += 1
        return accumulator

    def merge_accumulators(self, accumulators):
        total, count = 0.0, 0
        for value, n in accumulators:
            total, count = total + value, count + n
        return [total, count]

    def extract_output(self, accumulator):
        return {self._key: accumulator[0] / max(accumulator[1], 1)}


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
    """Share of users whose next item is in their top k ("HR@k")."""

    def __init__(self, k: int = 10, name: Optional[str] = None):
        super().__init__(_computations, kind="hit_rate", k=k, name=name or f"HR@{k}")


class TopKNDCG(metric_types.Metric):
    """Mean 1/log2(rank + 2) of the next item within the top k ("NDCG@k")."""

    def __init__(self, k: int = 10, name: Optional[str] = None):
        super().__init__(_computations, kind="ndcg", k=k, name=name or f"NDCG@{k}")


class TopKMRR(metric_types.Metric):
    """Mean reciprocal rank of the next item within the returned list ("MRR")."""

    def __init__(self, name: str = "MRR"):
        super().__init__(_computations, kind="mrr", k=None, name=name)


for _metric in (TopKHitRate, TopKNDCG, TopKMRR):
    metric_types.register_metric(_metric)
