"""`SequentialRecommender`: the one base every model in the library shares.

A subclass implements only what is special to its method:

* `call(inputs, training)` -> per-position user representations [B, L, d]
  (position t summarises items up to t; inputs are left padded, so the last
  position is the user's current state);
* `output_embeddings()` -> the [V, d] item table scores are computed against
  (weight-tied models return their input table);
* optionally `user_state(inputs)` and `score_items(state, item_ids)` when a
  user is not one vector scored by a dot product (several interests, cosine
  profiles): evaluation and serving rank the catalogue through these two, a
  chunk of items at a time;
* optionally `sequence_loss(batch, training)` when the method's loss is not one
  of the two standard next-item losses below.

The base owns `train_step` / `test_step` (TFRS style: `loss`,
`regularization_loss`, `total_loss`), next-item scoring and top-K
recommendation.  Training batches are dicts with `item_ids` [B, L] and
`targets` [B, L] (the next item at every position, 0 = no target) and the
negatives the loss needs, in the layout `negative_layout` names (see
`tfrec_dyn.data.input_pipeline`):

* "per_position": `negatives` [B, L, n], drawn for every position, never from
  the user's history ("bce", "bpr", "sampled_ce");
* "per_sequence": `negatives` [B, n], drawn per user, never from its history,
  shared by its positions ("gbce": many negatives without a [B, L, n, d] gather);
* "shared": `shared_negatives` [n] for the whole batch with their log expected
  counts `shared_log_q` [n] and the targets' `target_log_q` [B, L] under the
  same draw ("sampled_softmax": uniform, popularity, in-batch or mixed
  negatives with the logQ correction).

No loss but the full softmax "ce" builds a tensor whose size grows with the
catalogue; "ce" stays for small catalogues.
"""

import math

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.data.vocabulary import NUM_RESERVED, PAD_ID
from tfrec_dyn.layers.reduction import global_mean, num_replicas
from tfrec_dyn.layers.tables import bias_rows, gather_rows

LOSSES = ("bce", "bpr", "sampled_ce", "gbce", "sampled_softmax", "ce")
# Each sampled loss: (negative layout, default number of negatives).
SAMPLED_LOSSES = {"bce": ("per_position", 1), "bpr": ("per_position", 1), "sampled_ce": ("per_position", 1),
                  "gbce": ("per_sequence", 256), "sampled_softmax": ("shared", 256)}


def shared_softmax_loss(representations, targets, item_vectors, negatives, negative_log_q, target_log_q, bias=None):
    """Per-row sampled softmax with the logQ correction over negatives shared by a batch.

    representations [..., d], targets [...] (item ids), `item_vectors` (ids
    [...] -> their vectors [..., d], e.g. `SequentialRecommender.item_vectors`), negatives
    [n], their log expected counts `negative_log_q` [n], the targets'
    `target_log_q` [...], optional item bias [V] or [V, 1]; returns losses
    [...].  A negative equal to the row's target (an accidental hit) is
    masked out.
    """
    representations = tf.cast(representations, tf.float32)
    positive = tf.reduce_sum(representations * tf.cast(item_vectors(targets), tf.float32), -1)
    scores = tf.einsum("...d,nd->...n", representations, tf.cast(item_vectors(negatives), tf.float32))
    if bias is not None:
        positive += bias_rows(bias, targets)
        scores += bias_rows(bias, negatives)
    positive -= tf.cast(target_log_q, tf.float32)
    scores -= tf.cast(negative_log_q, tf.float32)
    scores = tf.where(tf.equal(targets[..., tf.newaxis], negatives), tf.constant(-1e9, tf.float32), scores)
    return -tf.nn.log_softmax(tf.concat([positive[..., tf.newaxis], scores], -1), -1)[..., 0]


def catalogue_rows(table) -> tf.Tensor:
    """The rows of an item table [V, ...] (or bias [V] / [V, 1]) that a full softmax ranks: the
    catalogue's items, ids NUM_RESERVED..V-1 (padding and OOV are never targets)."""
    return table[NUM_RESERVED:]


def catalogue_cross_entropy(logits, targets) -> tf.Tensor:
    """Full-softmax cross-entropy [N] of targets [N] (item ids) from the scores [N, V - NUM_RESERVED] of
    the `catalogue_rows` of the item table.  Leaving the reserved rows out of the product, rather
    than masking their columns, spares a copy of the largest tensor of the step."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(targets, tf.int32) - NUM_RESERVED, logits)


def gbce_beta(num_negatives: int, num_items: int, calibration: float) -> float:
    """gSASRec's β = α (t (1 - 1/α) + 1/α) with α = k / (|I| - 1), the negative
    sampling rate, and t the calibration (Petrov & Macdonald, RecSys 2023, eq. 9)."""
    alpha = num_negatives / max(num_items - 1, 1)
    return alpha * (calibration * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def balanced_logit_offset(num_negatives: int, positive_weight: float = 1.0) -> float:
    """log(w / n): the constant that, added to every logit of a binary loss with
    positive weight w and n negatives, makes the positive's and the negatives'
    gradients cancel when every raw score is 0, so training starts from "a
    positive is as likely as the prior" instead of spending its first steps
    pushing every score down (the prior initialisation of Lin et al., "Focal
    Loss for Dense Object Detection", ICCV 2017).  Zero for one negative and
    w = 1 (SASRec's BCE)."""
    return math.log(positive_weight / num_negatives)


def mask_seen(scores: tf.Tensor, item_ids: tf.Tensor) -> tf.Tensor:
    """Sets scores [B, V] of the items in each row's history [B, L] to -inf."""
    item_ids = tf.cast(item_ids, tf.int32)
    rows = tf.repeat(tf.range(tf.shape(item_ids)[0]), tf.shape(item_ids)[1])
    indices = tf.stack([rows, tf.reshape(item_ids, [-1])], axis=1)
    return tf.tensor_scatter_nd_update(
        scores, indices, tf.fill([tf.shape(indices)[0]], tf.constant(-float("inf"), scores.dtype)))


class SequentialRecommender(keras.Model):
    """Base class for next-item recommenders over left-padded item sequences.

    A subclass with losses of its own lists them in `supported_losses` (and
    implements them in `sequence_loss`).

    Args:
      vocab_size: item vocabulary size including padding (0) and OOV (1).
      max_len: longest input sequence the model takes.
      loss: "bce" (binary cross-entropy of each target against the sampled
        negatives, SASRec's loss), "bpr" (pairwise -log σ(s_target - s_negative),
        averaged over the sampled negatives; RETR's eq. 7), "sampled_ce"
        (softmax cross-entropy over the target and the sampled negatives),
        "gbce" (gSASRec's generalised BCE: -β log σ(s_target) - Σ log(1 - σ(s_neg))
        over `num_negatives` negatives per user, `gbce_beta`), "sampled_softmax"
        (softmax over the target and negatives shared by the batch, every
        logit corrected by -log of the item's expected count in the draw:
        the logQ correction of Yi et al., RecSys 2019; accidental hits of the
        target are masked) or "ce" (full-softmax cross-entropy over all items:
        its cost grows with the catalogue).
      num_negatives: negatives per position ("per_position"), per user
        ("per_sequence") or per batch ("shared"); None: `SAMPLED_LOSSES`'
        default (1 for "bce" / "bpr" / "sampled_ce", 256 for the others).
      gbce_calibration: gSASRec's t in [0, 1] (1: β = α, fully calibrated; 0:
        plain BCE); the paper's ML-1M setting, 0.75, by default.
      logit_offset: a constant added to every logit inside "bce" and "gbce"
        (not to served scores: the ranking is the same).  None:
        `balanced_logit_offset` (0 for "bce" with one negative; about -6.6
        for "gbce" with 256 negatives over 1.7k items).  Why: with many
        negatives and raw scores near 0, the negatives' term dominates the
        first steps, and SASRec on ML-100K settles in a representation
        that is the same for every user (popularity, full NDCG@10 0.031
        after 200 epochs); with the offset it reaches 0.090 in 40 epochs
        (docs/results.md).  gSASRec's code has no such constant; it trains
        for thousands of epochs.
    """

    supported_losses = LOSSES
    # Candidates `score_items` may take at once when ranking the catalogue (None: the protocols' default).
    score_chunk_size = None
    # Whether the train step may be compiled with XLA (`TrainConfig.jit_compile`): checked equal to the
    # plain step (tests/test_training.py). False where a loss keeps a data-dependent selection of its
    # rows (`tf.boolean_mask`), which XLA pads to its upper bound.
    supports_jit_compile = True
    # Whether `call` takes packed training rows (`tfrec_dyn.data.input_pipeline.pack_rows`: `positions`
    # and `segments` in the batch) and computes on them what it computes unpacked (tests/test_models.py).
    supports_packing = False

    def __init__(self, vocab_size, max_len, loss="bce", num_negatives=None, gbce_calibration=0.75,
                 logit_offset=None, **kwargs):
        super().__init__(**kwargs)
        if int(vocab_size) <= NUM_RESERVED:
            raise ValueError(f"`vocab_size` must exceed {NUM_RESERVED} (padding and OOV), got {vocab_size}")
        if int(max_len) <= 0:
            raise ValueError(f"`max_len` must be positive, got max_len={max_len}")
        if loss not in self.supported_losses:
            raise ValueError(f"`loss` must be one of {self.supported_losses}, got loss={loss!r}")
        if num_negatives is not None and int(num_negatives) <= 0:
            raise ValueError(f"`num_negatives` must be positive, got {num_negatives}")
        if not 0.0 <= float(gbce_calibration) <= 1.0:
            raise ValueError(f"`gbce_calibration` must be in [0, 1], got {gbce_calibration}")
        self.vocab_size = int(vocab_size)
        self.max_len = int(max_len)
        self.loss_name = loss
        # Negatives the training batches must carry (the trainer reads this and `negative_layout`).
        default = SAMPLED_LOSSES.get(loss, (None, 0))[1]
        self.num_negatives = default if num_negatives is None or not default else int(num_negatives)
        self.gbce_calibration = float(gbce_calibration)
        self.logit_offset = None if logit_offset is None else float(logit_offset)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.regularization_loss_tracker = keras.metrics.Mean(name="regularization_loss")
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")

    @property
    def negative_layout(self):
        """How the training batches carry negatives (see the module docstring); None: none."""
        if self.loss_name in SAMPLED_LOSSES:
            return SAMPLED_LOSSES[self.loss_name][0]
        return "per_position" if self.num_negatives else None  # e.g. RDRSR's reward under "ce"

    # --------------------------------------------------------- subclass API
    def output_embeddings(self) -> tf.Tensor:
        """[V, d] item table that representations are scored against."""
        raise NotImplementedError(f"{type(self).__name__} must implement output_embeddings()")

    def output_bias(self):
        """Optional per-item bias [V] or [V, 1] added to scores (None: no bias).
        Return the variable itself, not a slice of it: a slice reads it whole."""
        return None

    def item_vectors(self, item_ids) -> tf.Tensor:
        """The vectors [..., d] representations are scored against, of item ids
        [...]: `scoring_vectors` of their `output_embeddings()` rows.  Every
        loss, evaluation and serving path reads the items through it."""
        return self.scoring_vectors(gather_rows(self.output_embeddings(), item_ids))

    def scoring_vectors(self, rows: tf.Tensor) -> tf.Tensor:
        """Item-table rows [..., d] as scores use them: the rows themselves; a
        model that scores against a transform of them (HSTU: L2-normalised)
        overrides this."""
        return rows

    # -------------------------------------------------------------- scoring
    def catalogue_logits(self, representations: tf.Tensor) -> tf.Tensor:
        """Scores [..., V - NUM_RESERVED] of representations [..., d] against the catalogue's
        items (`catalogue_rows`), as `catalogue_cross_entropy` takes them."""
        table = tf.cast(self.scoring_vectors(catalogue_rows(self.output_embeddings())), tf.float32)
        scores = tf.matmul(tf.cast(representations, tf.float32), table, transpose_b=True)
        bias = self.output_bias()
        return scores if bias is None else scores + catalogue_rows(tf.reshape(tf.cast(bias, tf.float32), [-1]))

    def item_logits(self, representations: tf.Tensor, item_ids: tf.Tensor) -> tf.Tensor:
        """Scores of given items only: representations [B, L, d], item_ids [B, L, n] -> [B, L, n]."""
        vectors = self.item_vectors(item_ids)
        # A product and a sum: on CPU an einsum of this shape costs more (docs/performance.md).
        scores = tf.reduce_sum(tf.cast(representations, tf.float32)[..., tf.newaxis, :] * vectors, -1)
        bias = self.output_bias()
        return scores if bias is None else scores + bias_rows(bias, item_ids)

    def user_state(self, inputs, training=False):
        """What scoring needs of each row, computed once per batch of users: by
        default the representation [B, d] at the last position.  A model whose
        user is not one vector (several interests, a cosine profile) returns
        any nest of [B, ...] tensors that its `score_items` understands."""
        return self(inputs, training=training)[:, -1, :]

    def score_items(self, state, item_ids) -> tf.Tensor:
        """Raw scores [B, n] of candidate items for the rows of `state`:
        `item_ids` [n] shared by every row (a chunk of the catalogue) or [B, n]
        one list per row (a target and its sampled negatives).

        Evaluation and serving rank the catalogue through this, chunk by chunk
        (`tfrec_dyn.metrics.scoring`), so nothing [B, V] is ever built.
        """
        item_ids = tf.cast(item_ids, tf.int32)
        vectors = tf.cast(self.item_vectors(item_ids), tf.float32)
        state = tf.cast(state, tf.float32)
        scores = (tf.matmul(state, vectors, transpose_b=True) if item_ids.shape.rank == 1
                  else tf.einsum("bd,bnd->bn", state, vectors))
        bias = self.output_bias()
        return scores if bias is None else scores + bias_rows(bias, item_ids)

    def score(self, inputs, training=False) -> tf.Tensor:
        """Next-item scores [B, V] of every item for the user state at the last
        position (for small catalogues and inspection; evaluation and serving
        score in chunks with `user_state` / `score_items`).

        Padding and OOV columns are -inf so they are never recommended.
        """
        if not isinstance(inputs, dict):
            inputs = {"item_ids": inputs}
        scores = self.score_items(self.user_state(inputs, training=training), tf.range(self.vocab_size))
        reserved = tf.concat([tf.fill([NUM_RESERVED], -float("inf")),
                              tf.zeros([self.vocab_size - NUM_RESERVED])], 0)
        return scores + reserved

    def recommend(self, inputs, k=10, exclude_seen=True):
        """Top-k (item ids [B, k], scores [B, k]); seen items excluded by default."""
        if not isinstance(inputs, dict):
            inputs = {"item_ids": inputs}
        scores = self.score(inputs)
        if exclude_seen:
            scores = mask_seen(scores, inputs["item_ids"])
        top = tf.math.top_k(scores, k=k)
        return top.indices, top.values

    # ---------------------------------------------------------------- losses
    def sequence_loss(self, batch, training=False) -> tf.Tensor:
        """Mean next-item loss over all positions that have a target.

        Under `tf.distribute` this is the replica's share of the mean over the
        global batch (`tfrec_dyn.layers.reduction.global_mean`), so that the
        summed gradients are those of one device with the whole batch; every
        override must reduce the same way.
        """
        return self.next_item_loss(self(batch, training=training), batch)

    def next_item_loss(self, representations, batch) -> tf.Tensor:
        """`sequence_loss` from the representations [B, L, d] of `call` (trainers
        that also need the representations call the model once)."""
        targets = tf.cast(batch["targets"], tf.int32)
        weights = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
        if self.loss_name == "ce":
            # Scores of every item only where there is a target: padded positions
            # would cost a full [V] row each and weigh 0.
            keep = weights > 0
            per_position = catalogue_cross_entropy(self.catalogue_logits(tf.boolean_mask(representations, keep)),
                                                   tf.boolean_mask(targets, keep))
            # The rows' sum over the number of targets counted on the unmasked weights: under XLA a
            # boolean_mask result is padded to every position, and a mean over it would count those.
            num_targets = tf.reduce_sum(weights)
            return global_mean((tf.reduce_sum(per_position) / tf.maximum(num_targets, 1.0))[tf.newaxis],
                               num_targets[tf.newaxis])
        if self.loss_name in ("gbce", "sampled_softmax"):
            return global_mean(self._many_negatives_loss(representations, targets, batch), weights)
        negatives = tf.cast(batch["negatives"], tf.int32)
        candidates = tf.concat([targets[..., tf.newaxis], negatives], -1)
        scores = self.item_logits(representations, candidates)
        if self.loss_name == "bpr":
            per_position = -tf.reduce_mean(tf.math.log_sigmoid(scores[..., :1] - scores[..., 1:]), -1)
        elif self.loss_name == "sampled_ce":
            per_position = -tf.nn.log_softmax(scores, -1)[..., 0]
        else:
            labels = tf.concat([tf.ones_like(scores[..., :1]), tf.zeros_like(scores[..., 1:])], -1)
            scores += self._binary_logit_offset(1.0)
            per_position = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels, scores), -1)
        return global_mean(per_position, weights)

    def _many_negatives_loss(self, representations, targets, batch) -> tf.Tensor:
        """Per-position "gbce" / "sampled_softmax" losses [B, L]: the negatives are
        scored once per user or once per batch, not gathered per position."""
        bias = self.output_bias()
        if self.loss_name == "sampled_softmax":
            return shared_softmax_loss(representations, targets, self.item_vectors,
                                       tf.cast(batch["shared_negatives"], tf.int32), batch["shared_log_q"],
                                       batch["target_log_q"], bias)
        positive = self.item_logits(representations, targets[..., tf.newaxis])[..., 0]
        negatives = tf.cast(batch["negatives"], tf.int32)  # [B, n]
        scores = tf.einsum("bld,bnd->bln", tf.cast(representations, tf.float32),
                           tf.cast(self.item_vectors(negatives), tf.float32))
        if bias is not None:
            scores += bias_rows(bias, negatives)[:, tf.newaxis, :]
        beta = gbce_beta(self.num_negatives, self.vocab_size - NUM_RESERVED, self.gbce_calibration)
        offset = self._binary_logit_offset(beta)
        return (-beta * tf.math.log_sigmoid(positive + offset)
                - tf.reduce_sum(tf.math.log_sigmoid(-(scores + offset)), -1))

    def _binary_logit_offset(self, positive_weight: float) -> float:
        """`logit_offset`, or the balanced one when it is None."""
        if self.logit_offset is not None:
            return self.logit_offset
        return balanced_logit_offset(self.num_negatives, positive_weight)

    # --------------------------------------------------------- keras hooks
    @property
    def metrics(self):
        return [self.loss_tracker, self.regularization_loss_tracker, self.total_loss_tracker]

    def regularization_loss(self) -> tf.Tensor:
        """Sum of the layers' `add_loss` terms (weight penalties)."""
        return tf.add_n([tf.constant(0.0)] + [tf.cast(l, tf.float32) for l in self.losses])

    def _update_trackers(self, loss, regularization_loss):
        """Tracks the step's figures; `loss` is this replica's share (see
        `sequence_loss`), so R replicas' shares add up to the global mean."""
        loss = loss * num_replicas()
        self.loss_tracker.update_state(loss)
        self.regularization_loss_tracker.update_state(regularization_loss)
        self.total_loss_tracker.update_state(loss + regularization_loss)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss = self.sequence_loss(data, training=True)
            regularization_loss = self.regularization_loss()
            # Every replica adds the full penalty; the gradient sum must count it once.
            total_loss = loss + regularization_loss / num_replicas()
        # `minimize` applies loss scaling when the optimizer is a LossScaleOptimizer.
        self.optimizer.minimize(total_loss, self.trainable_variables, tape=tape)
        return self._update_trackers(loss, regularization_loss)

    def test_step(self, data):
        return self._update_trackers(self.sequence_loss(data, training=False), self.regularization_loss())

    def get_config(self):
        return {"vocab_size": self.vocab_size, "max_len": self.max_len, "loss": self.loss_name,
                "num_negatives": self.num_negatives or None, "gbce_calibration": self.gbce_calibration,
                "logit_offset": self.logit_offset, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
