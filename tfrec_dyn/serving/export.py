"""Export a trained recommender as a SavedModel that TF Serving loads.

The exported model maps raw string ids itself (the vocabulary travels inside
the SavedModel), so clients send raw item ids and get raw item ids back.

Signatures:

* `serving_default(item_ids, k=10, exclude_seen=True)` — `item_ids`: string
  [B, L], each row a user's recent history, oldest first, padded with "" on
  either side; returns `item_ids` (string [B, k]) and `scores` (float [B, k]).
  `k` and `exclude_seen` are inputs with defaults (recorded in the
  SignatureDef's `defaults`, so TF Serving lets a request leave them out).
* `serving_tf_example(examples)` — serialized `tf.train.Example`s with an
  `item_ids` bytes-list feature (the TFX convention the Evaluator uses; and
  the side-field lists for models that read them);
  one input only, as TFMA feeds it, and the top `example_k` (default 50)
  unseen items, same outputs, plus `target_rank` (int32 [B]): the rank of
  the example's `target_item_id` under the full protocol of `tfrec-dyn
  evaluate` (pessimistic ties; candidates: every item but the history's,
  the target always one), from which `tfrec_dyn.metrics.tfma_metrics` computes
  the Evaluator's HR / NDCG / MRR, so both report the same figures.

Models that read side fields (`side_fields`) take more optional inputs in
`serving_default`, aligned with `item_ids`: HUP `behavior` and `category`
(raw strings, as in the logs), `time_interval` and `dwell_time` (seconds);
HSTU `timestamp` (seconds since the epoch). Left out (or "" / a negative number at a position) a value is
unknown, which the model handles; a missing category is filled in from the
item (the category each training item was last seen with). A side input of
another shape than `item_ids` is refused with a clear message (a [1, 1]
value is broadcast).

Both signatures rank the catalogue a chunk of items at a time
(`tfrec_dyn.metrics.scoring`: a `tf.while_loop` of standard ops, no custom
op), so no [B, V] tensor is built and a catalogue of millions of items is
served by stock TF Serving.  With an `index` the top-k lists come from an
approximate clustered index instead (`tfrec_dyn.serving.index`: a fraction
of the catalogue scored per request, recall measured against the exact
lists); `target_rank` stays exact.

Robustness rules (none of these crash):

* unknown ids map to the OOV id and are then dropped from the history: the
  OOV embedding is never trained, so feeding it would only add noise;
* an empty history (or one of only unknown ids) gets the most popular
  training items;
* an over-long history is truncated to the most recent `max_len` items;
* `k` is clipped to [1, number of items]; when fewer than `k` items are left
  to recommend, the remaining slots hold "" with score -inf.

`assets.extra/tf_serving_warmup_requests` holds a few PredictRequests so a real
TF Serving warms the model up before taking traffic.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrec_dyn.data.input_pipeline import feature_name
from tfrec_dyn.data.vocabulary import NUM_RESERVED, PAD_ID, PAD_TOKEN, Vocabulary
from tfrec_dyn.metrics.scoring import chunk_for_rows, chunk_size_of, full_protocol_ranks, top_k_recommendations
from tfrec_dyn.serving.index import ClusterIndex, ServingIndex
from tfrec_dyn.serving.versions import parse_version

DEFAULT_K = 10
EXAMPLE_K = 50
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
TARGET_FEATURE = "target_item_id"  # the held-out next item in evaluation examples
TARGET_RANK = "target_rank"  # the evaluation signature's output the TFMA metrics read


# Side inputs of `serving_default` for models with side fields, and their "unknown" value.
SIDE_INPUTS = {"behavior": (tf.string, ""), "category": (tf.string, ""),
               "time_interval": (tf.float32, -1.0), "dwell_time": (tf.float32, -1.0), "timestamp": (tf.float32, -1.0)}
# How the pipeline's examples store a side field, where not as it is served (`beam_sequences`).
EXAMPLE_DTYPES = {"timestamp": tf.int64}


def left_align(item_ids: tf.Tensor, max_len: int, aligned=None):
    """Drops padding/OOV ids, keeps the last `max_len` real ids of each row and
    left-pads them to [B, max_len] (the layout the models are trained on).
    With `aligned` ({name: [B, L] tensor}) returns (ids, {name: aligned
    values moved the same way, padded with 0})."""
    keep = item_ids >= NUM_RESERVED

    def align(values):
        ragged = tf.ragged.boolean_mask(values, keep)
        reversed_rows = tf.reverse(ragged, axis=[1])  # newest first, so truncation keeps the newest
        dense = reversed_rows.to_tensor(default_value=tf.zeros([], values.dtype), shape=[None, max_len])
        return tf.reverse(dense, axis=[1])

    if aligned is None:
        return align(item_ids)
    return align(item_ids), {name: align(values) for name, values in aligned.items()}


class RecommenderModule(tf.Module):
    """A `SequentialRecommender` with its vocabulary and popularity fallback,
    exposing string-in / string-out recommendation functions."""

    def __init__(self, model, vocab: Vocabulary, item_counts: Sequence[int], max_len: int,
                 default_k: int = DEFAULT_K, example_k: int = EXAMPLE_K, side_vocabs=None, item_categories=None,
                 exclude_seen: bool = True, index: Optional[ClusterIndex] = None):
        super().__init__(name="recommender")
        # Top-k lists from an approximate index's probed clusters (`tfrec_dyn.serving.index`), or exact.
        self.index = None if index is None else ServingIndex(index)
        self.model = model
        self.exclude_seen = bool(exclude_seen)
        self.max_len = int(max_len)
        self.vocab_size = vocab.size
        self.num_items = vocab.size - NUM_RESERVED
        self.chunk_size = chunk_size_of(model)  # as `tfrec-dyn evaluate` ranks, so target_rank agrees with it
        self.lookup = vocab.lookup_layer(name="item_lookup")
        self.inverse_lookup = vocab.inverse_lookup_layer(name="item_inverse_lookup")
        self.side_fields = [f for f in getattr(model, "side_fields", ()) if f in SIDE_INPUTS]
        self.side_lookups = {name: side_vocab.lookup_layer(name=f"{name}_lookup")
                             for name, side_vocab in (side_vocabs or {}).items() if name in self.side_fields}
        # Each item's category id (0 = unknown), to fill in categories a request leaves out.
        self.item_categories = None if item_categories is None else tf.constant(item_categories, tf.int32)
        # Popularity scores for the empty-history fallback; reserved ids never win.
        popularity = np.asarray(item_counts, np.float32).copy()
        popularity[:NUM_RESERVED] = -np.inf
        self.popularity = tf.constant(popularity)

        # Tensor defaults are recorded in the SignatureDef (`defaults`), which
        # is what lets TF Serving requests leave `k` and `exclude_seen` out.
        def serve(item_ids, k=tf.constant(int(default_k)), exclude_seen=tf.constant(True)):
            return self._serve(item_ids, k, exclude_seen)

        def serve_with_side(item_ids, k=tf.constant(int(default_k)), exclude_seen=tf.constant(True),
                            behavior=tf.constant([[""]]), category=tf.constant([[""]]),
                            time_interval=tf.constant([[-1.0]]), dwell_time=tf.constant([[-1.0]])):
            side = {"behavior": behavior, "category": category, "time_interval": time_interval,
                    "dwell_time": dwell_time}
            return self._serve(item_ids, k, exclude_seen, {f: side[f] for f in self.side_fields})

        def serve_with_timestamp(item_ids, k=tf.constant(int(default_k)), exclude_seen=tf.constant(True),
                                 timestamp=tf.constant([[-1.0]])):
            return self._serve(item_ids, k, exclude_seen, {"timestamp": timestamp})

        def serve_examples(examples):
            # Side fields (lists aligned with item_ids in the examples) are read when the model has them.
            spec = {name: tf.io.VarLenFeature(EXAMPLE_DTYPES.get(name, SIDE_INPUTS[name][0]))
                    for name in self.side_fields}
            features = tf.io.parse_example(examples, {"item_ids": tf.io.VarLenFeature(tf.string),
                                                      TARGET_FEATURE: tf.io.VarLenFeature(tf.string), **spec})
            item_ids = tf.sparse.to_dense(features["item_ids"], default_value=PAD_TOKEN)
            shape = tf.cast(tf.shape(item_ids), tf.int64)  # a field an example lacks: all unknown
            side = {name: tf.sparse.to_dense(tf.SparseTensor(features[name].indices,
                                                             tf.cast(features[name].values, SIDE_INPUTS[name][0]),
                                                             shape),
                                             default_value=SIDE_INPUTS[name][1]) for name in self.side_fields}
            targets = tf.sparse.to_dense(tf.sparse.reset_shape(features[TARGET_FEATURE], [shape[0], 1]),
                                         default_value=PAD_TOKEN)[:, 0]
            return self._serve(item_ids, tf.constant(int(example_k)), tf.constant(self.exclude_seen), side, targets)

        signature = [tf.TensorSpec([None, None], tf.string, name="item_ids"),
                     tf.TensorSpec([], tf.int32, name="k"), tf.TensorSpec([], tf.bool, name="exclude_seen")]
        if self.side_fields:  # each signature takes the side inputs of its function, in its order
            serve = serve_with_timestamp if "timestamp" in self.side_fields else serve_with_side
            names = [name for name in inspect.signature(serve).parameters if name in SIDE_INPUTS]
            signature += [tf.TensorSpec([None, None], SIDE_INPUTS[name][0], name=name) for name in names]
        self.serve = tf.function(serve, input_signature=signature)
        self.serve_examples = tf.function(
            serve_examples, input_signature=[tf.TensorSpec([None], tf.string, name="examples")])

    def user_state(self, ids: tf.Tensor, features=None):
        """(the model's window [B, max_len], the state `score_items` reads) for
        integer histories of any width (and side features aligned with them,
        by model input name); an empty history is scored by popularity."""
        ids, features = left_align(tf.cast(ids, tf.int32), self.max_len, features or {})
        empty = tf.reduce_all(tf.equal(ids, PAD_ID), axis=1, keepdims=True)
        return ids, (self.model.user_state({"item_ids": ids, **features}), empty)

    def score_items(self, state, item_ids):
        """The model's scores of candidate items ([n] shared or [B, n] per row), popularity for empty histories."""
        model_state, empty = state
        scores = tf.cast(self.model.score_items(model_state, item_ids), tf.float32)
        return tf.where(empty, tf.gather(self.popularity, tf.cast(item_ids, tf.int32)), scores)

    def _side_features(self, ids, side):
        """Side inputs [B, L] (raw) -> model inputs aligned with the item ids."""
        features = {}
        for name, values in side.items():
            same = tf.reduce_all(tf.equal(tf.shape(values), tf.shape(ids)))
            single = tf.reduce_all(tf.equal(tf.shape(values), 1))
            check = tf.debugging.Assert(same | single, [f"input '{name}' must have the shape of item_ids [B, L] "
                                                        f"(or be left out); got shape", tf.shape(values)])
            with tf.control_dependencies([check]):  # checked before anything uses the values
                values = tf.broadcast_to(values, tf.shape(ids))
            if name in self.side_lookups:
                features[feature_name(name)] = tf.cast(self.side_lookups[name](values), tf.int32)
            elif values.dtype == tf.string:  # a vocabulary the model was trained without: unknown
                features[feature_name(name)] = tf.zeros(tf.shape(ids), tf.int32)
            else:
                features[name] = values
        if "category_ids" in features and self.item_categories is not None:
            known = features["category_ids"] >= NUM_RESERVED
            features["category_ids"] = tf.where(known, features["category_ids"],
                                                tf.gather(self.item_categories, ids))
        return features

    def _serve(self, item_ids, k, exclude_seen, side=None, targets=None):
        ids = self.lookup(item_ids)
        window, state = self.user_state(ids, self._side_features(ids, side) if side else None)
        # The list does not depend on the chunking, so small batches take bigger chunks (`chunk_for_rows`);
        # the evaluation signature's rank keeps `tfrec-dyn evaluate`'s chunks, to agree with it exactly.
        if self.index is not None:
            top_ids, top_scores = self.index.top_k(self, state, window, k, exclude_seen)
        else:
            top_ids, top_scores = top_k_recommendations(self, state, window, self.vocab_size, k, exclude_seen,
                                                        chunk_for_rows(tf.shape(window)[0], self.chunk_size))
        outputs = {"item_ids": self.inverse_lookup(top_ids), "scores": top_scores}
        if targets is not None:
            outputs[TARGET_RANK] = self._target_ranks(window, state, self.lookup(targets))
        return outputs

    def _target_ranks(self, window, state, targets):
        """int32 [B]: each target's rank under the full protocol
        (`tfrec_dyn.metrics.scoring.full_protocol_ranks`, the rule `tfrec-dyn
        evaluate` uses, with the same chunks); an unknown or missing target
        gets `num_items`, a miss at every cut-off."""
        known = targets >= NUM_RESERVED
        ranks, _ = full_protocol_ranks(self, state, window, tf.where(known, targets, NUM_RESERVED),
                                       self.vocab_size, self.exclude_seen, self.chunk_size)
        return tf.where(known, ranks, self.num_items)


def export_saved_model(model, vocab: Vocabulary, item_counts, max_len: int, path: str,
                       default_k: int = DEFAULT_K, example_k: int = EXAMPLE_K, warmup_histories=None,
                       side_vocabs=None, item_categories=None, exclude_seen: bool = True,
                       index: Optional[ClusterIndex] = None) -> str:
    """Writes the SavedModel (with both signatures and warm-up requests) to `path`.

    `side_vocabs` ({field: Vocabulary}) and `item_categories` ([V] category
    id of each item id) serve the models with side fields (see the module
    docstring); `exclude_seen`: the evaluation signature's candidate rule (the
    run's `TrainConfig.exclude_seen`); `index`: top-k lists from this
    approximate index (`tfrec_dyn.serving.index.build_cluster_index` over the
    model's item table; None: exact)."""
    module = RecommenderModule(model, vocab, item_counts, max_len, default_k, example_k, side_vocabs,
                               item_categories, exclude_seen, index)
    signatures = {
        # The functions themselves, not concrete functions: only then are the
        # default values written into the SignatureDefs.
        "serving_default": module.serve,
        "serving_tf_example": module.serve_examples,
    }
    with _without_optimizer(model):
        tf.saved_model.save(module, path, signatures=signatures)
    write_warmup_requests(path, warmup_histories or [vocab.tokens[:3], []])
    return path


@contextlib.contextmanager
def _without_optimizer(model):
    """The SavedModel must not hold the training optimizer: its slots (Adam's
    two per weight) would triple the export of a large item table and the
    server's memory.  As Keras' own `save(include_optimizer=False)` does,
    the tracked optimizer is detached for the save and put back after."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        yield
        return
    model.optimizer = None
    model._delete_tracking("optimizer")  # noqa: SLF001 (Keras' own include_optimizer=False does this)
    try:
        yield
    finally:
        model.optimizer = optimizer


def category_table(sequences, categories, vocab_size: int, table: Optional[np.ndarray] = None) -> np.ndarray:
    """[V] the category id each item was last seen with (0: never), from aligned
    encoded item and category sequences: what serving fills in for a missing category.
    With `table` (that of the sequences before these), it is updated in place."""
    table = np.zeros(vocab_size, np.int32) if table is None else table
    if len(sequences):
        # Each item's last occurrence is its first in the reversed stream (NumPy does not promise
        # which of repeated indices a fancy assignment keeps, so that is not left to it).
        items, item_categories = np.concatenate(sequences)[::-1], np.concatenate(categories)[::-1]
        unique_items, first = np.unique(items, return_index=True)
        table[unique_items] = item_categories[first]
    return table


def next_version(model_base_path: str) -> int:
    """1 + the highest numeric version folder under `model_base_path` (1 when there is none);
    versions compare as numbers, as TF Serving's do (10 is newer than 9)."""
    names = os.listdir(model_base_path) if os.path.isdir(model_base_path) else []
    return max((v for v in map(parse_version, names) if v is not None), default=0) + 1


def export_version(model, vocab: Vocabulary, item_counts, max_len: int, model_base_path: str, **kwargs) -> str:
    """`export_saved_model` into the next numbered version under `model_base_path`.

    The SavedModel is written beside it under a name no server loads (not a
    number) and renamed into place when complete, so a server that polls the
    folder never sees a half-written version."""
    os.makedirs(model_base_path, exist_ok=True)
    version = next_version(model_base_path)
    staging = os.path.join(model_base_path, f".staging-{version}-{os.getpid()}")
    export_saved_model(model, vocab, item_counts, max_len, staging, **kwargs)
    path = os.path.join(model_base_path, str(version))
    os.rename(staging, path)
    return path


def write_warmup_requests(path: str, histories) -> None:
    """`assets.extra/tf_serving_warmup_requests`: PredictionLogs TF Serving replays at load."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    width = max(1, max(len(h) for h in histories))
    padded = [list(h) + [PAD_TOKEN] * (width - len(h)) for h in histories]
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(signature_name="serving_default"))
    request.inputs["item_ids"].CopyFrom(tf.make_tensor_proto(padded, dtype=tf.string))
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(path, WARMUP_FILE)) as writer:
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        writer.write(log.SerializeToString())
