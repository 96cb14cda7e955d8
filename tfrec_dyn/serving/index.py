"""An optional approximate index for served top-k over large catalogues (clustered, IVF-style).

Exact top-k reads every item's row per request: over a million items of 64
floats that is 256 MB, about 35 ms a request on a 2-core CPU, and it grows
with the catalogue.  The index groups the items into clusters once, at export
(k-means over the vectors the model scores items with,
`model.output_embeddings()`); a request then scores each cluster's
representative (its member nearest the centroid) with the model's own
`score_items`, and every member of the `probes` best clusters, and returns the
top-k of those: about `num_clusters + probes × V / num_clusters` rows instead
of V.  The lists are approximate; `index_recall` measures them against exact
top-k (`benchmarks/scale.py` and `tfrec-dyn export --index-probes` report it).

Scoring representatives with `score_items` (not centroids with a dot product)
keeps the index model-agnostic: a model's bias, cosine or max over interests
applies to the coarse step too.  Only stock TensorFlow ops (gather, ragged
ranges, top-k) are used: the SavedModel still runs on TF Serving.  The
evaluation signature's `target_rank` never uses the index: it stays the full
protocol's exact rank.

>>> vectors = np.array([[0, 0], [0, 0], [1, 0], [1.2, 0], [0, 3], [0, 3.1]], np.float32)  # ids 0, 1 reserved
>>> index = build_cluster_index(vectors, ClusterIndexConfig(num_clusters=2, probes=1))
>>> sorted(sorted(index.members(c).tolist()) for c in range(index.num_clusters))
[[2, 3], [4, 5]]
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from tfrec_dyn.data.vocabulary import NUM_RESERVED, PAD_ID
from tfrec_dyn.metrics.scoring import distinct_history

# The key under which a Trainer's `custom_config` carries `ClusterIndexConfig` fields (the TFX pipeline).
CONFIG_KEY = "serving_index"
ASSIGN_ROWS = 16384  # items assigned to clusters at a time: [16384, clusters] distances


@dataclasses.dataclass(frozen=True)
class ClusterIndexConfig:
    """How to build the index.

    Args:
      num_clusters: clusters of items (0: the square root of the number of
        items, the usual IVF choice: the coarse and the fine step then cost
        about the same).
      probes: clusters whose every member is scored per request; more probes,
        higher recall, slower requests.
      iterations: k-means (Lloyd) iterations, from k-means++ seeds (drawn from
        20 items per cluster of the sample).
      sample: k-means is fitted on at most this many items (a seeded sample),
        then every item is assigned to its nearest centroid.
      seed: seeds the sample and the initial centroids.
    """

    num_clusters: int = 0
    probes: int = 16
    iterations: int = 10
    sample: int = 200_000
    seed: int = 0

    def __post_init__(self):
        if self.num_clusters < 0 or self.probes < 1 or self.iterations < 0 or self.sample < 1:
            raise ValueError(f"need num_clusters >= 0, probes >= 1, iterations >= 0 and sample >= 1; got {self}")


@dataclasses.dataclass
class ClusterIndex:
    """Items grouped into clusters: cluster c's members are
    `order[offsets[c]:offsets[c + 1]]`, its representative `representatives[c]`
    (item ids, int32); every real item is in exactly one cluster."""

    representatives: np.ndarray
    order: np.ndarray
    offsets: np.ndarray
    probes: int

    @property
    def num_clusters(self) -> int:
        return len(self.representatives)

    def members(self, cluster: int) -> np.ndarray:
        return self.order[self.offsets[cluster]:self.offsets[cluster + 1]]

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


def _nearest(points: np.ndarray, centroids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(nearest centroid [n], squared distance to it [n]), a block of points at a time."""
    half_norms = 0.5 * np.einsum("cd,cd->c", centroids, centroids)
    nearest = np.empty(len(points), np.int64)
    distance = np.empty(len(points), np.float32)
    for first in range(0, len(points), ASSIGN_ROWS):
        block = points[first:first + ASSIGN_ROWS]
        # ||p - c||² = ||p||² - 2 (p·c - ||c||²/2): the nearest maximises p·c - ||c||²/2.
        closeness = block @ centroids.T - half_norms
        best = np.argmax(closeness, axis=1)
        nearest[first:first + len(block)] = best
        distance[first:first + len(block)] = np.einsum("nd,nd->n", block, block) \
            - 2 * closeness[np.arange(len(block)), best]
    return nearest, distance


def _kmeans_plus_plus(points: np.ndarray, clusters: int, rng) -> np.ndarray:
    """k-means++ seeding (each next centroid drawn with probability ∝ its squared
    distance to the nearest one so far): Lloyd's iterations from random seeds
    can leave two centroids in one group and none in another."""
    chosen = [int(rng.integers(len(points)))]
    distance = np.sum((points - points[chosen[0]]) ** 2, axis=1)
    for _ in range(1, clusters):
        total = distance.sum()
        chosen.append(int(rng.choice(len(points), p=distance / total)) if total > 0 else int(rng.integers(len(points))))
        distance = np.minimum(distance, np.sum((points - points[chosen[-1]]) ** 2, axis=1))
    return points[chosen].copy()


def build_cluster_index(vectors, config: ClusterIndexConfig = ClusterIndexConfig()) -> ClusterIndex:
    """Clusters the real items (rows `NUM_RESERVED`.. of `vectors` [V, d], the
    model's item table) by k-means; see `ClusterIndexConfig`."""
    points = np.asarray(vectors, np.float32)[NUM_RESERVED:]
    if len(points) == 0:
        raise ValueError("there are no items to index")
    rng = np.random.default_rng(config.seed)
    sample = points[rng.choice(len(points), min(config.sample, len(points)), replace=False)]
    clusters = min(config.num_clusters or max(1, round(np.sqrt(len(points)))), len(sample))
    centroids = _kmeans_plus_plus(sample[:20 * clusters], clusters, rng)
    for _ in range(config.iterations):
        nearest, _ = _nearest(sample, centroids)
        counts = np.bincount(nearest, minlength=clusters)
        sums = np.zeros_like(centroids)
        np.add.at(sums, nearest, sample)
        empty = counts == 0  # re-seeded at random sample points
        centroids[~empty] = sums[~empty] / counts[~empty, None]
        centroids[empty] = sample[rng.choice(len(sample), int(empty.sum()))]
    nearest, distance = _nearest(points, centroids)
    order = np.lexsort((distance, nearest))  # by cluster, the member nearest its centroid first
    sizes = np.bincount(nearest, minlength=clusters)
    sizes = sizes[sizes > 0]  # a centroid no item is nearest to is no cluster
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    order = (order + NUM_RESERVED).astype(np.int32)
    return ClusterIndex(representatives=order[offsets[:-1]], order=order, offsets=offsets,
                        probes=min(config.probes, len(sizes)))


def build_model_index(model, config: ClusterIndexConfig) -> ClusterIndex:
    """`build_cluster_index` over `model`'s item table (`output_embeddings()`);
    a clear error for a model that scores no item vectors (PopRec)."""
    try:
        table = model.output_embeddings()
    except NotImplementedError:
        raise ValueError(f"{type(model).__name__} scores no item vectors: there is nothing to index") from None
    return build_cluster_index(np.asarray(table), config)


class ServingIndex(tf.Module):
    """A `ClusterIndex` in a SavedModel (its arrays as non-trainable variables,
    so the graph stays small whatever the catalogue) and its top-k."""

    def __init__(self, index: ClusterIndex, name: str = "cluster_index"):
        super().__init__(name=name)
        self.representatives = tf.Variable(index.representatives, trainable=False, name="representatives")
        self.order = tf.Variable(index.order, trainable=False, name="order")
        self.offsets = tf.Variable(index.offsets, trainable=False, name="offsets")
        self.probes = int(index.probes)
        self.num_items = len(index.order)

    def candidates(self, scoring, state) -> tf.Tensor:
        """int32 [B, n]: the members of each row's `probes` best clusters, `PAD_ID` after the last."""
        coarse = tf.cast(scoring.score_items(state, self.representatives), tf.float32)
        best = tf.math.top_k(coarse, k=self.probes).indices                           # [B, P]
        starts, limits = tf.gather(self.offsets, best), tf.gather(self.offsets, best + 1)
        positions = tf.ragged.range(tf.reshape(starts, [-1]), tf.reshape(limits, [-1]))  # [B·P, members]
        positions = tf.RaggedTensor.from_uniform_row_length(positions, self.probes).merge_dims(1, 2)
        # Gathered by flat positions: the order is read a member at a time, never whole.
        return positions.with_flat_values(tf.gather(self.order, positions.flat_values)).to_tensor(
            default_value=PAD_ID)

    def top_k(self, scoring, state, item_ids, k, exclude_seen=True) -> Tuple[tf.Tensor, tf.Tensor]:
        """(item ids int32 [B, k], scores float32 [B, k]) as
        `tfrec_dyn.metrics.scoring.top_k_recommendations` returns them, from the
        probed clusters' members only: the history's items left out with
        `exclude_seen`, NaN / -inf listed with the lowest float, `PAD_ID` and -inf
        past the last candidate.  One row at a time (`tf.map_fn`): memory is
        that of one row's candidates whatever the batch."""
        k = tf.clip_by_value(tf.cast(k, tf.int32), 1, self.num_items)  # as the exact list clips it

        def one_row(row):
            row_state, row_ids = tf.nest.map_structure(lambda t: t[tf.newaxis], row)
            ids, scores = self._top_k_of_batch(scoring, row_state, row_ids, k, exclude_seen)
            return ids[0], scores[0]

        return tf.map_fn(one_row, (state, item_ids), fn_output_signature=(
            tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32)))

    def _top_k_of_batch(self, scoring, state, item_ids, k, exclude_seen):
        lowest = tf.constant(np.finfo(np.float32).min, tf.float32)
        candidates = self.candidates(scoring, state)
        scores = tf.cast(scoring.score_items(state, candidates), tf.float32)
        scores = tf.where(scores >= lowest, scores, lowest)
        # Each candidate looked up in the row's sorted distinct history (-1 for what is not left out).
        seen, keep = distinct_history(item_ids)
        seen = tf.sort(tf.where(keep, seen, -1), axis=1)
        where = tf.minimum(tf.searchsorted(seen, candidates), tf.shape(seen)[1] - 1)
        is_seen = tf.equal(tf.gather(seen, where, batch_dims=1), candidates) & tf.cast(exclude_seen, tf.bool)
        scores = tf.where(is_seen | tf.equal(candidates, PAD_ID), -np.inf, scores)
        # At least k columns, so top_k never asks for more than there are.
        scores = tf.concat([scores, tf.fill(tf.stack([tf.shape(scores)[0], k]), -np.inf)], 1)
        candidates = tf.pad(candidates, [[0, 0], [0, k]], constant_values=PAD_ID)
        top = tf.math.top_k(scores, k=k)
        ids = tf.gather(candidates, top.indices, batch_dims=1)
        return tf.where(top.values > -np.inf, ids, PAD_ID), top.values


def add_index_flags(parser) -> None:
    """`--index-probes` / `--index-clusters`: one definition for `tfrec-dyn export` and the pipeline."""
    parser.add_argument("--index-probes", type=int, default=0, metavar="P",
                        help="serve top-k from an approximate clustered index, scoring the members of the P best "
                             "clusters per request (0: exact top-k)")
    parser.add_argument("--index-clusters", type=int, default=0, metavar="C",
                        help="clusters of the index (0: the square root of the number of items)")


def index_config(args) -> Optional[ClusterIndexConfig]:
    """The `ClusterIndexConfig` the flags of `add_index_flags` ask for (None: exact top-k)."""
    if not args.index_probes:
        return None
    return ClusterIndexConfig(num_clusters=args.index_clusters, probes=args.index_probes)


def index_recall(scoring, state, item_ids, vocab_size: int, index: ServingIndex, k: int = 10,
                 exclude_seen: bool = True) -> float:
    """Mean over rows of |index top-k ∩ exact top-k| / |exact top-k|: how much of
    the exact list (`tfrec_dyn.metrics.scoring.top_k_recommendations`) the
    index finds (1.0: all of it).  `scoring`: a model or anything with
    `score_items`; `state`: its user state of the rows of `item_ids` [B, L]."""
    from tfrec_dyn.metrics.scoring import top_k_recommendations

    both = tf.function(lambda state, ids: (top_k_recommendations(scoring, state, ids, vocab_size, k, exclude_seen)[0],
                                           index.top_k(scoring, state, ids, k, exclude_seen)[0]))
    exact, approximate = (t.numpy() for t in both(state, tf.constant(item_ids)))
    found = [len(set(e[e != PAD_ID]) & set(a[a != PAD_ID])) / max(1, np.sum(e != PAD_ID))
             for e, a in zip(exact, approximate)]
    return float(np.mean(found))
