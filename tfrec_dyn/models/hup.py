"""HUP: hierarchical user profiling over micro-behaviours with a pyramid of
Behavior-LSTMs (Gu et al., WSDM 2020, "Hierarchical User Profiling for
E-commerce Recommender Systems")."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.data.vocabulary import NUM_RESERVED, PAD_ID
from tfrec_dyn.layers.behavior_lstm import BehaviorLSTMCell
from tfrec_dyn.layers.chunks import top_k_over_chunks
from tfrec_dyn.layers.dropout import ByteDropout
from tfrec_dyn.layers.masks import padding_mask
from tfrec_dyn.layers.pyramid import PrefixAttention, SegmentCell
from tfrec_dyn.layers.reduction import global_mean
from tfrec_dyn.layers.tables import gather_rows
from tfrec_dyn.models.base import SequentialRecommender, catalogue_cross_entropy, catalogue_rows

# Seconds; the buckets of the JD data's README (time interval 0-1, 1-15,
# 15-40, 40-90, 90+; dwell time 0-15, 15-40, 40-100, 100-600, 600+).
INTERVAL_BOUNDARIES = (1.0, 15.0, 40.0, 90.0)
DWELL_BOUNDARIES = (15.0, 40.0, 100.0, 600.0)
LEVELS = ("micro", "item", "category")
# `candidate_neighbors`: items whose similarity is searched at a time, and the
# slack on the n-th neighbour's cosine (the search and the scoring compute it
# in different chunks, which may differ in the last bit).
NEIGHBOUR_CHUNK = 16384
NEIGHBOUR_TOLERANCE = 1e-6


def bucketize(seconds, boundaries):
    """Bucket ids of durations: 1 + the number of boundaries ≤ the value; 0 for
    unknown (negative, e.g. a field the caller left out), whose embedding is 0."""
    seconds = tf.cast(seconds, tf.float32)
    buckets = 1 + tf.reduce_sum(tf.cast(seconds[..., tf.newaxis] >= tf.constant(boundaries, tf.float32), tf.int32), -1)
    return tf.where(seconds >= 0, buckets, 0)


def run_ends(ids, valid):
    """[B, T] bool: the last step of each run of equal consecutive ids (the
    last valid step always ends one)."""
    changes = tf.not_equal(ids[:, 1:], ids[:, :-1])
    return tf.concat([changes, tf.ones_like(changes[:, :1])], 1) & valid


def run_starts(ids, valid):
    """[B, T] bool: the first valid step of each run of equal consecutive ids."""
    previous_valid = tf.concat([tf.zeros_like(valid[:, :1]), valid[:, :-1]], 1)
    changes = tf.concat([tf.ones_like(valid[:, :1]), tf.not_equal(ids[:, 1:], ids[:, :-1])], 1)
    return valid & (changes | ~previous_valid)


def category_dwell(dwell, item_ends, category_starts):
    """Seconds spent in the current category run up to each step: the dwell
    times of its finished item runs plus the current item's (every
    micro-behaviour of an item carries that item's dwell time)."""
    dwell = tf.maximum(tf.cast(dwell, tf.float32), 0.0)  # unknown counts as 0 s
    finished = tf.cumsum(dwell * tf.cast(item_ends, tf.float32), axis=1, exclusive=True)
    # The `finished` sum where the current category run started: a running maximum
    # (`finished` never decreases) of its values at the run starts.
    at_starts = tf.where(category_starts, finished, 0.0)
    run_base = tf.transpose(tf.scan(tf.maximum, tf.transpose(at_starts)))
    return finished - run_base + dwell


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class HUP(SequentialRecommender):
    """Pyramid of Behavior-LSTMs over a user's micro-behaviours: micro → item → category.

    Inputs (a dict, [B, T] each, left padded; one step per micro-behaviour):
    `item_ids`, and optionally `behavior_ids`, `category_ids` (vocabulary ids,
    0 = padding, 1 = unknown), `time_interval` (seconds to the next
    behaviour) and `dwell_time` (seconds on the item). A missing field, or an
    unknown value (id < 2, negative seconds), enters as a zero embedding, so a
    caller with item ids only still gets recommendations (the serving module
    fills categories in from the items).

    Sec. 4: every micro-behaviour is embedded as [e_v; e_c; e_b; e_dwell;
    e_interval] (durations in the README's 5 buckets, `interval_boundaries`
    and `dwell_boundaries`). Three Behavior-LSTM levels (eq. 1-4):
      micro:    every behaviour; behaviour gate ← behaviour type, time gate ← interval;
      item:     [e_v; y_micro], steps once per run of behaviours on one item;
                behaviour gate ← dwell time;
      category: [e_c; y_item], steps once per run of items of one category;
                behaviour gate ← time in the category run (summed item dwell times).
    The time gate of a level's step takes the interval after the step's last
    micro-behaviour (to the next item or category). Each level has its
    attention (eq. 5, `PrefixAttention`, the signal a_i being the behaviour
    type or the dwell time) and a dense layer giving the profiles p_item,
    p_category and, when λ_M > 0, p_micro (sec. 4.5; with λ_M = 0, the
    paper's best, the micro level only feeds the item level). A `SegmentCell`
    lets one pass give the profiles of every prefix, so training uses every
    position where the user moves to a new item.

    Loss (eq. 6-7): Σ_level λ_level · (−cos(p_level, e_target)), the target
    being the next item (micro, item levels) or its category. The softmax
    options score with the ranking's own cosines, divided by
    `softmax_temperature` (cosines lie in [−1, 1]; unscaled, a softmax over
    thousands of items is nearly flat): `loss="sampled_ce"` puts the target
    against the batch's `negatives`, `loss="ce"` against every item (a full
    softmax, over the positions that are moves only); both rank the
    categories with a full softmax (there are few). Why they exist: eq. 6
    pulls profiles and target embeddings together and nothing pushes other
    items away, so the embeddings can drift together until cosines no longer
    tell items apart (eq. 6 is minimised, −1 per level, with every embedding
    and profile on one direction; on a 24-item toy log 30 epochs get there,
    tests/test_hup.py); on the 1,000-session JD samples validation accuracy
    under eq. 6 peaks and then falls (docs/results.md, "HUP").
    Ranking: cosine similarity of p_item with every item (full ranking);
    `category_scores` ranks categories with p_category.

    Choices of ours: the JD data has one (leaf) category level, so the
    pyramid has one category level (the paper's K levels stack the same way);
    the paper retrieves candidate items by embedding similarity before
    ranking: full ranking is the default here, see `candidate_neighbors`.

    Args:
      vocab_size, max_len: see `SequentialRecommender`.
      category_vocab_size, behavior_vocab_size: sizes of the category and
        behaviour-type vocabularies (2 reserved ids included; the trainer
        passes them from the data).
      embed_dim: item and category embedding (and profile) width.
      side_dim: behaviour, dwell and interval embedding width.
      hidden_dim: Behavior-LSTM width.
      attention_dim: hidden width of the attention's alignment model.
      time_gate, behavior_gate: the Behavior-LSTM gates (both off: HUP-LSTM;
        time only: HUP-TLSTM).
      attention_signal: feed the behaviour type / dwell time to the attention
        (the paper's HUP; off in its ablations).
      level_weights: (λ_M, λ_I, λ_C); the paper's best is (0, 0.5, 0.5).
      interval_boundaries, dwell_boundaries: bucket boundaries in seconds.
      candidate_neighbors: 0 (default) ranks every item; n > 0 ranks only the
        n items most similar (cosine of embeddings) to each item of the
        window, the paper's retrieval step (found a chunk of the catalogue at
        a time; the others score -1e9).
      dropout: on the embeddings.
      loss: "cosine" (the paper), "sampled_ce" or "ce".
      softmax_temperature: divides the cosines in the softmax losses.

    Example:
    >>> model = HUP(vocab_size=50, max_len=6, category_vocab_size=6, behavior_vocab_size=5)
    >>> batch = {"item_ids": tf.constant([[0, 5, 5, 9, 7, 7]]), "category_ids": tf.constant([[0, 2, 2, 3, 3, 3]])}
    >>> model.score(batch).shape, model.category_scores(batch).shape
    (TensorShape([1, 50]), TensorShape([1, 6]))
    """

    supports_jit_compile = False  # its loss selects rows by a mask (see SequentialRecommender)
    supported_losses = ("cosine", "sampled_ce", "ce")
    side_fields = ("behavior", "category", "time_interval", "dwell_time")  # what the trainer feeds it

    def __init__(self, vocab_size, max_len, category_vocab_size=NUM_RESERVED, behavior_vocab_size=NUM_RESERVED,
                 embed_dim=64, side_dim=16, hidden_dim=64, attention_dim=32, time_gate=True, behavior_gate=True,
                 attention_signal=True, level_weights=(0.0, 0.5, 0.5), interval_boundaries=INTERVAL_BOUNDARIES,
                 dwell_boundaries=DWELL_BOUNDARIES, candidate_neighbors=0, dropout=0.2, loss="cosine",
                 softmax_temperature=0.1, **kwargs):
        super().__init__(vocab_size, max_len, loss=loss, **kwargs)
        for name, value in (("category_vocab_size", category_vocab_size),
                            ("behavior_vocab_size", behavior_vocab_size)):
            if int(value) < NUM_RESERVED:
                raise ValueError(f"`{name}` counts the {NUM_RESERVED} reserved ids too: at least {NUM_RESERVED}, "
                                 f"got {name}={value}")
        if len(level_weights) != len(LEVELS) or min(level_weights) < 0 or sum(level_weights) <= 0:
            raise ValueError(f"`level_weights` must be 3 non-negative weights (micro, item, category) with a "
                             f"positive sum, got {level_weights}")
        for name, boundaries in (("interval_boundaries", interval_boundaries), ("dwell_boundaries", dwell_boundaries)):
            if list(boundaries) != sorted(boundaries) or len(set(boundaries)) != len(boundaries):
                raise ValueError(f"`{name}` must be strictly increasing, got {boundaries}")
        if float(softmax_temperature) <= 0:
            raise ValueError(f"`softmax_temperature` must be positive, got {softmax_temperature}")
        if int(candidate_neighbors) < 0:
            raise ValueError(f"`candidate_neighbors` must be >= 0, got {candidate_neighbors}")
        self.category_vocab_size = int(category_vocab_size)
        self.behavior_vocab_size = int(behavior_vocab_size)
        self.embed_dim = int(embed_dim)
        self.side_dim = int(side_dim)
        self.hidden_dim = int(hidden_dim)
        self.attention_dim = int(attention_dim)
        self.time_gate = bool(time_gate)
        self.behavior_gate = bool(behavior_gate)
        self.attention_signal = bool(attention_signal)
        self.level_weights = tuple(float(w) for w in level_weights)
        self.interval_boundaries = tuple(float(b) for b in interval_boundaries)
        self.dwell_boundaries = tuple(float(b) for b in dwell_boundaries)
        self.candidate_neighbors = int(candidate_neighbors)
        self.dropout = float(dropout)
        self.softmax_temperature = float(softmax_temperature)

        def embedding(size, width, name):
            return keras.layers.Embedding(size, width, name=name)

        self.item_embedding = embedding(vocab_size, embed_dim, "item_embedding")
        self.category_embedding = embedding(self.category_vocab_size, embed_dim, "category_embedding")
        self.behavior_embedding = embedding(self.behavior_vocab_size, side_dim, "behavior_embedding")
        self.interval_embedding = embedding(len(self.interval_boundaries) + 2, side_dim, "interval_embedding")
        self.dwell_embedding = embedding(len(self.dwell_boundaries) + 2, side_dim, "dwell_embedding")
        self.embedding_dropout = ByteDropout(dropout, name="embedding_dropout")

        def cell(x_dim):
            # Each level's inputs are projected for whole sequences before its time loop (see the cell):
            # (x, behaviour or dwell, interval) with x = what `call` concatenates for that level.
            return BehaviorLSTMCell(hidden_dim, time_gate=time_gate, behavior_gate=behavior_gate,
                                    input_dims=(x_dim, side_dim, side_dim))

        self.rnns = {
            "micro": keras.layers.RNN(cell(2 * embed_dim + 3 * side_dim), return_sequences=True, name="micro_rnn"),
            "item": keras.layers.RNN(SegmentCell(cell(embed_dim + hidden_dim)), return_sequences=True, name="item_rnn"),
            "category": keras.layers.RNN(SegmentCell(cell(embed_dim + hidden_dim)), return_sequences=True,
                                         name="category_rnn"),
        }
        # Items and categories are ranked with their profiles; the micro level has a
        # profile only when it has a loss (λ_M > 0), otherwise it only feeds the item level.
        self.profiled_levels = (["micro"] if self.level_weights[0] else []) + ["item", "category"]
        self.attentions = {level: PrefixAttention(attention_dim, name=f"{level}_attention")
                           for level in self.profiled_levels}
        self.profile_layers = {level: keras.layers.Dense(embed_dim, name=f"{level}_profile")
                               for level in self.profiled_levels}

    # --------------------------------------------------------------- inputs
    def _side_inputs(self, inputs):
        """The five fields [B, T], defaults where a field is missing."""
        item_ids = tf.cast(inputs["item_ids"], tf.int32)

        def field(name, default, dtype):
            value = inputs.get(name)
            return tf.fill(tf.shape(item_ids), tf.constant(default, dtype)) if value is None else tf.cast(value, dtype)

        return (item_ids, field("category_ids", PAD_ID, tf.int32), field("behavior_ids", PAD_ID, tf.int32),
                field("time_interval", -1.0, tf.float32), field("dwell_time", -1.0, tf.float32))

    def _embed(self, layer, ids, known, training):
        vectors = layer(ids) * tf.cast(known, layer.compute_dtype)[..., tf.newaxis]  # unknown -> 0
        return self.embedding_dropout(vectors, training=training)

    # ------------------------------------------------------------- the pyramid
    def call(self, inputs, training=False, levels=None):
        """Every prefix's profiles: {"item" | "category" (| "micro"): [B, T, d]},
        one per level with a loss weight, plus that level's attention weights
        {"<level>_attention": [B, T, T]} and run ends {"<level>_ends": [B, T]}.
        `levels` (default: all of them) limits the profiles to those levels; the
        category RNN runs only when "category" is one (ranking items skips it)."""
        levels = self.profiled_levels if levels is None else tuple(levels)
        if set(levels) - set(self.profiled_levels):
            raise ValueError(f"levels must be among {self.profiled_levels}, got {levels}")
        item_ids, category_ids, behavior_ids, interval, dwell = self._side_inputs(inputs)
        valid = padding_mask(item_ids)
        item_ends = run_ends(item_ids, valid)
        category_ends = run_ends(category_ids, valid)
        category_seconds = category_dwell(dwell, item_ends, run_starts(category_ids, valid))

        e_item = self._embed(self.item_embedding, item_ids, item_ids >= NUM_RESERVED, training)
        e_category = self._embed(self.category_embedding, category_ids, category_ids >= NUM_RESERVED, training)
        e_behavior = self._embed(self.behavior_embedding, behavior_ids, behavior_ids >= NUM_RESERVED, training)
        interval_ids = bucketize(interval, self.interval_boundaries)
        e_interval = self._embed(self.interval_embedding, interval_ids, interval_ids > 0, training)
        dwell_ids = bucketize(dwell, self.dwell_boundaries)
        e_dwell = self._embed(self.dwell_embedding, dwell_ids, dwell_ids > 0, training)
        category_dwell_ids = tf.where(dwell >= 0, bucketize(category_seconds, self.dwell_boundaries), 0)
        e_category_dwell = self._embed(self.dwell_embedding, category_dwell_ids, category_dwell_ids > 0, training)

        def run_level(name, cell_inputs, ends=None):
            rnn = self.rnns[name]
            projected = (rnn.cell if ends is None else rnn.cell.cell).project(*cell_inputs)
            rnn_inputs = projected if ends is None else (projected, tf.cast(ends, tf.float32)[..., tf.newaxis])
            if rnn.input_spec is not None and len(tf.nest.flatten(rnn.input_spec)) != len(tf.nest.flatten(rnn_inputs)):
                rnn.input_spec = None  # a run saved before inputs were projected: its (x, a, Δ) spec, same weights
            return rnn(rnn_inputs, mask=valid, training=training)

        micro = run_level("micro", (tf.concat([e_item, e_category, e_behavior, e_dwell, e_interval], -1),
                                    e_behavior, e_interval))
        item = run_level("item", (tf.concat([e_item, micro], -1), e_dwell, e_interval), item_ends)
        category = None if "category" not in levels else run_level(
            "category", (tf.concat([e_category, item], -1), e_category_dwell, e_interval), category_ends)

        result = {}
        for level, outputs, signal, ends in (("micro", micro, e_behavior, valid),
                                             ("item", item, e_dwell, item_ends),
                                             ("category", category, e_category_dwell, category_ends)):
            if level not in levels:
                continue
            attention_inputs = (outputs, signal) if self.attention_signal else outputs
            context, weights = self.attentions[level](attention_inputs, ends=ends, valid=valid)
            profile = self.profile_layers[level](context)
            result[level] = profile * tf.cast(valid, profile.dtype)[..., tf.newaxis]
            result[f"{level}_attention"] = weights
            result[f"{level}_ends"] = ends
        return result

    def output_embeddings(self):
        return self.item_embedding.embeddings

    # -------------------------------------------------------------- scoring
    def user_state(self, inputs, training=False):
        """The item-level profile (unit length) and, with `candidate_neighbors`,
        the window's unit item vectors and each one's neighbour threshold."""
        profile = self(inputs, training=training, levels=["item"])["item"][:, -1]
        state = {"profile": tf.math.l2_normalize(tf.cast(profile, tf.float32), -1)}
        if self.candidate_neighbors:
            item_ids = tf.cast(inputs["item_ids"], tf.int32)
            def unit_rows(ids):
                return tf.math.l2_normalize(gather_rows(self.output_embeddings(), ids), -1)

            window = unit_rows(item_ids)                                                      # [B, T, d]
            flat = tf.reshape(window, [-1, tf.shape(window)[-1]])
            # The similarity of each window item's (n+1)-th nearest item (itself the first), a chunk at a time.
            nearest, _ = top_k_over_chunks(lambda ids: tf.matmul(flat, unit_rows(ids), transpose_b=True),
                                           tf.shape(flat)[0], 0, self.vocab_size,
                                           min(self.candidate_neighbors + 1, self.vocab_size), NEIGHBOUR_CHUNK)
            state.update(window=window, valid=padding_mask(item_ids),
                         threshold=tf.reshape(nearest[:, -1], tf.shape(item_ids)))
        return state

    def score_items(self, state, item_ids):
        """Cosine of the profile with each candidate; with `candidate_neighbors`,
        -1e9 for items that are no window item's neighbour (ties at the n-th
        neighbour's similarity all count, within `NEIGHBOUR_TOLERANCE`)."""
        item_ids = tf.cast(item_ids, tf.int32)
        # Only the candidates' rows are normalised: a chunk must not cost a pass over the whole table.
        vectors = tf.math.l2_normalize(gather_rows(self.output_embeddings(), item_ids), -1)
        shared = item_ids.shape.rank == 1
        scores = (tf.matmul(state["profile"], vectors, transpose_b=True) if shared
                  else tf.einsum("bd,bnd->bn", state["profile"], vectors))
        if not self.candidate_neighbors:
            return scores
        similarity = (tf.einsum("btd,nd->btn", state["window"], vectors) if shared
                      else tf.einsum("btd,bnd->btn", state["window"], vectors))
        neighbour = (similarity >= state["threshold"][..., tf.newaxis] - NEIGHBOUR_TOLERANCE) \
            & state["valid"][..., tf.newaxis]
        return tf.where(tf.reduce_any(neighbour, 1), scores, -1e9)

    def category_scores(self, inputs, training=False):
        """Cosine scores [B, category_vocab_size] of every category for the next
        item's category (reserved ids -inf)."""
        profile = self(inputs, training=training, levels=["category"])["category"][:, -1]
        profile = tf.math.l2_normalize(tf.cast(profile, tf.float32), -1)
        table = tf.math.l2_normalize(tf.cast(self.category_embedding.embeddings, tf.float32), -1)
        scores = tf.matmul(profile, table, transpose_b=True)
        reserved = tf.concat([tf.fill([NUM_RESERVED], -float("inf")), tf.zeros([self.category_vocab_size - NUM_RESERVED])], 0)
        return scores + reserved

    # ---------------------------------------------------------------- losses
    def sequence_loss(self, batch, training=False):
        """Eq. 7 over every position where the user moves on to another item."""
        profiles = self(batch, training=training)
        item_ids = tf.cast(batch["item_ids"], tf.int32)
        targets = tf.cast(batch["targets"], tf.int32)
        moves = (targets >= NUM_RESERVED) & tf.not_equal(targets, item_ids)
        next_categories = tf.cast(batch.get("next_category_ids", tf.zeros_like(targets)), tf.int32)
        total = 0.0
        for level in self.profiled_levels:
            if level == "category":
                loss = self._level_loss(profiles[level], next_categories, moves & (next_categories >= NUM_RESERVED),
                                        self.category_embedding.embeddings, None)
            else:
                loss = self._level_loss(profiles[level], targets, moves, self.item_embedding.embeddings,
                                        batch.get("negatives"))
            total += self.level_weights[LEVELS.index(level)] * loss
        return total

    def _level_loss(self, profile, targets, weights, table, negatives):
        profile = tf.math.l2_normalize(tf.cast(profile, tf.float32), -1)
        weights = tf.cast(weights, tf.float32)
        # The sampled losses normalise only the rows they read, not the table.
        if self.loss_name == "cosine":  # eq. 6: cosine proximity
            per_position = -tf.reduce_sum(profile * tf.math.l2_normalize(gather_rows(table, targets), -1), -1)
            return global_mean(per_position, weights)
        if self.loss_name == "sampled_ce" and negatives is not None:  # items: target vs sampled negatives
            candidates = tf.concat([targets[..., tf.newaxis], tf.cast(negatives, tf.int32)], -1)
            vectors = tf.math.l2_normalize(gather_rows(table, candidates), -1)
            logits = tf.einsum("btd,btnd->btn", profile, vectors) / self.softmax_temperature
            per_position = -tf.nn.log_softmax(logits, -1)[..., 0]
            return global_mean(per_position, weights)
        # A full softmax over the table (categories; items with "ce"), on the weighted positions only.
        table = tf.math.l2_normalize(tf.cast(catalogue_rows(table), tf.float32), -1)
        keep = weights > 0
        logits = tf.matmul(tf.boolean_mask(profile, keep) / self.softmax_temperature, table, transpose_b=True)
        per_position = catalogue_cross_entropy(logits, tf.boolean_mask(targets, keep))
        return global_mean(per_position, tf.boolean_mask(weights, keep))

    def get_config(self):
        config = super().get_config()
        config.update({
            "category_vocab_size": self.category_vocab_size, "behavior_vocab_size": self.behavior_vocab_size,
            "embed_dim": self.embed_dim, "side_dim": self.side_dim, "hidden_dim": self.hidden_dim,
            "attention_dim": self.attention_dim, "time_gate": self.time_gate, "behavior_gate": self.behavior_gate,
            "attention_signal": self.attention_signal, "level_weights": list(self.level_weights),
            "interval_boundaries": list(self.interval_boundaries), "dwell_boundaries": list(self.dwell_boundaries),
            "candidate_neighbors": self.candidate_neighbors, "dropout": self.dropout,
            "softmax_temperature": self.softmax_temperature})
        return config
