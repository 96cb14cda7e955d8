"""RDRSR: reinforced sequential recommendation with a dynamic number of interests
(Shao et al., 2022, "Gumble Softmax For User Behavior Modeling")."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers import ItemPositionEmbedding, LastAxisLayerNormalization
from tfrec_dyn.layers.interest_allocator import DynamicInterestAllocator
from tfrec_dyn.layers.interest_discriminator import DynamicInterestDiscriminator, active_interests
from tfrec_dyn.layers.masks import padding_mask
from tfrec_dyn.layers.policy import orthogonality_reward, reinforce_loss
from tfrec_dyn.layers.reduction import global_mean
from tfrec_dyn.layers.tables import gather_rows
from tfrec_dyn.models.base import SequentialRecommender, catalogue_cross_entropy, catalogue_rows
from tfrec_dyn.models.episodes import EpisodeScoring, episode_windows, last_window, window_groups

SCORINGS = ("max", "policy")


def best_interest_scores(per_interest: tf.Tensor, active: tf.Tensor) -> tf.Tensor:
    """max over the active interests: [N, k, C] scores, [N, k] mask -> [N, C]."""
    per_interest = tf.where(tf.cast(active, tf.bool)[..., tf.newaxis], per_interest, -1e9)
    return tf.reduce_max(per_interest, axis=1)


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class RDRSR(EpisodeScoring, SequentialRecommender):
    """A user as a dynamic number of interests, each the average of its items.

    For a window of the user's last t items: item + position embeddings; the
    `DynamicInterestDiscriminator` (bidirectional attention + user attention +
    Gumbel-softmax) picks the interest count h ∈ 1..k; the
    `DynamicInterestAllocator` (a REINFORCE policy) assigns each item to one of
    the h interests, oldest first.

    Training (`sequence_loss`): every position of a training sequence with a
    target is one episode – the window of the t items up to it – so a batch of
    B sequences of length L gives up to B·L episodes, built in the graph.  Per
    episode, with o sampled negatives:
      * the policy routes the target item to an interest p_target;
      * reward (eq. 13-17): R = P(target | p_target) − mean_j P(target | p_j)
        + λ_o · R_orthogonal, each P a softmax over the target and the o
        negatives (held constant in the gradient);
      * L_RL = −log P(actions) · R over the episode's actions (eq. 22);
      * L_CE: softmax cross-entropy of the target against the o negatives
        (`loss="sampled_ce"`, eq. 23) or against all items (`loss="ce"`),
        with the scores of `scoring`;
      * loss = L_CE + β · L_RL (eq. 24).

    Scoring: `scoring="max"` (default) scores an item by its best active
    interest, max_j p_j · e_item, for training and prediction alike;
    `scoring="policy"` follows the paper's prediction (sec. 3.6): the policy
    routes each candidate to one interest and the score is that interest's dot
    product (in training, eq. 23 scores all candidates against p_target).

    Choices where the paper is silent or needs a serving-friendly form (all
    arguments): the user embedding e_u (in the user attention and as the
    interests' initial value) is the mean item embedding of the window, so new
    users are served; the target's state uses its (un-positioned) item
    embedding; `fixed_interests=n` gives RDRSR-F (the count head off, the
    encoder kept).

    `interests(batch)` returns the inference-time interest count and each
    window item's interest.

    Args:
      vocab_size, max_len: see `SequentialRecommender`; the model reads the
        last `window_len` items of its input.
      embed_dim: d (paper: 64).
      window_len: t, the items per episode (paper: 10).
      max_interests: k (paper: 4 on MovieLens).
      fixed_interests: None, or n for RDRSR-F.
      num_blocks, num_heads, dropout: the bidirectional encoder.
      embeddings_initializer: the item (and position) tables' Keras initializer
        (default: Glorot, as SASRec; see `SASRec` for why a large catalogue
        wants one whose scale does not shrink with V, e.g. "uniform").
      temperature: Gumbel-softmax τ of the count (paper: 10).
      policy_hidden_dim: hidden width of the allocation policy (default d).
      num_negatives: o, sampled negatives per episode (paper: 99).
      rl_weight: β (paper: 1).
      orthogonality_weight: λ_o (paper: 0.001).
      scoring: "max" or "policy", see above.
      loss: "sampled_ce" (paper) or "ce".

    Example:
    >>> model = RDRSR(vocab_size=100, max_len=20)
    >>> batch = {"item_ids": tf.constant([[0, 5, 9, 7]])}
    >>> model.score(batch).shape, model.interests(batch)["assignment"].shape
    (TensorShape([1, 100]), TensorShape([1, 10]))
    """

    supports_jit_compile = False  # its loss selects rows by a mask (see SequentialRecommender)

    def __init__(self, vocab_size, max_len, embed_dim=64, window_len=10, max_interests=4, fixed_interests=None,
                 num_blocks=1, num_heads=1, dropout=0.2, temperature=10.0, policy_hidden_dim=None,
                 num_negatives=99, rl_weight=1.0, orthogonality_weight=1e-3, scoring="max", loss="sampled_ce",
                 embeddings_initializer="glorot_uniform", **kwargs):
        if loss not in ("sampled_ce", "ce"):
            raise ValueError(f"RDRSR's `loss` is 'sampled_ce' or 'ce', got loss={loss!r}")
        if scoring not in SCORINGS:
            raise ValueError(f"`scoring` must be one of {SCORINGS}, got scoring={scoring!r}")
        super().__init__(vocab_size, max_len, loss=loss, **kwargs)
        if not 0 < int(window_len) <= self.max_len:
            raise ValueError(f"`window_len` must be in 1..max_len={self.max_len}, got window_len={window_len}")
        if int(num_negatives) <= 0:
            raise ValueError(f"`num_negatives` (o) must be positive: the reward needs it, got {num_negatives}")
        self.embed_dim = int(embed_dim)
        self.window_len = int(window_len)
        self.max_interests = int(max_interests)
        self.fixed_interests = None if fixed_interests is None else int(fixed_interests)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.temperature = float(temperature)
        self.policy_hidden_dim = None if policy_hidden_dim is None else int(policy_hidden_dim)
        self.num_negatives = int(num_negatives)  # the reward's o, also for loss="ce"
        self.rl_weight = float(rl_weight)
        self.orthogonality_weight = float(orthogonality_weight)
        self.scoring = scoring
        self.embedding = ItemPositionEmbedding(vocab_size, embed_dim, self.window_len, dropout=dropout,
                                               embeddings_initializer=embeddings_initializer, name="embedding")
        self.discriminator = DynamicInterestDiscriminator(
            max_interests, num_blocks=num_blocks, num_heads=num_heads, dropout=dropout, temperature=temperature,
            fixed_interests=fixed_interests, name="discriminator")
        self.encoder_norm = LastAxisLayerNormalization(epsilon=1e-8, name="encoder_norm")
        self.allocator = DynamicInterestAllocator(max_interests, policy_hidden_dim, name="allocator")

    # ------------------------------------------------------------- episodes
    def _table(self):
        return self.embedding.item_embedding.embeddings

    def episode(self, window, training=False):
        """Runs DID and DIA over windows [N, t]; returns a dict of tensors:
        interests [N, k, d], active [N, k], count_one_hot [N, k], count_logits,
        actions [N, t], log_probs [N, t]."""
        x = self.embedding(window, training=training)
        valid = tf.cast(padding_mask(window), tf.float32)[..., tf.newaxis]
        items = gather_rows(self._table(), window)
        user = tf.reduce_sum(items * valid, 1) / tf.maximum(tf.reduce_sum(valid, 1), 1.0)   # e_u, p^0
        encoded, count, count_logits = self.discriminator(x, window, user, training=training)
        encoded = self.encoder_norm(encoded) * tf.cast(valid, encoded.dtype)  # pre-norm blocks end un-normalised
        active = active_interests(count)
        interests, actions, log_probs = self.allocator(encoded, window, count, active, user, training=training)
        return {"interests": interests, "active": active, "count_one_hot": count, "count_logits": count_logits,
                "actions": actions, "log_probs": log_probs}

    def _scores(self, episode, vectors, routed=None):
        """Scores [N, C] of candidates from an episode's interests.

        vectors: [N, C, d] per-row candidates, or [C, d] shared by every row.
        routed: [N] one interest per row that scores every candidate (eq. 23);
        otherwise `scoring` decides: "max" over the active interests, or
        "policy" (each candidate routed to one interest, sec. 3.6).
        """
        interests = tf.cast(episode["interests"], tf.float32)
        per_row = vectors.shape.rank == 3
        if routed is not None:
            chosen = tf.gather(interests, routed, batch_dims=1)
            return tf.einsum("nd,ncd->nc", chosen, vectors) if per_row else tf.matmul(chosen, vectors, transpose_b=True)
        if self.scoring == "policy":
            if not per_row:
                vectors = tf.zeros_like(interests[:, :1, :1]) + vectors[tf.newaxis]
            action, _ = self.allocator.route(episode["interests"], vectors, episode["count_one_hot"],
                                             episode["active"], training=False)
            return tf.einsum("ncd,ncd->nc", tf.gather(interests, action, batch_dims=1), vectors)
        per_interest = (tf.einsum("nkd,ncd->nkc", interests, vectors) if per_row
                        else tf.einsum("nkd,cd->nkc", interests, vectors))
        return best_interest_scores(per_interest, episode["active"])

    # ---------------------------------------------------------- model API
    def call(self, inputs, training=False):
        """The episode (see `episode`) of each row's last `window_len` items."""
        return self.episode(last_window(inputs["item_ids"], self.window_len), training=training)

    def interests(self, inputs):
        """Inference-time allocation of each row's last `window_len` items:
        `count` [B] (interests chosen, 1..k), `assignment` [B, t] (0-based
        interest of each window item, −1 at padding) and `item_ids` [B, t]."""
        return window_groups(self, inputs)

    # --------------------------------------------------------------- losses
    def sequence_loss(self, batch, training=False):
        windows, targets, keep = episode_windows(batch["item_ids"], batch["targets"], self.window_len)
        negatives = tf.cast(batch["negatives"], tf.int32)
        negatives = tf.boolean_mask(tf.reshape(negatives, [-1, tf.shape(negatives)[-1]]), keep)

        episode = self({"item_ids": windows}, training=training)  # windows are their own last window
        target_vectors = gather_rows(self._table(), targets)
        # The policy routes the target to an interest: the last action of the episode.
        target_interest, target_log_prob = self.allocator.route(
            episode["interests"], target_vectors, episode["count_one_hot"], episode["active"], training=training)

        candidates = tf.concat([targets[:, tf.newaxis], negatives], 1)           # target first
        vectors = gather_rows(self._table(), candidates)
        # Target and o negatives under every interest: for the rewards (eq. 13-17,
        # constants for the gradient) and the sampled cross-entropy (eq. 23).
        per_interest = tf.einsum("nkd,ncd->nkc", tf.cast(episode["interests"], tf.float32), vectors)
        target_prob = tf.nn.softmax(per_interest, -1)[..., 0]                      # [N, k]
        active = tf.cast(episode["active"], tf.float32)
        advantage = tf.gather(target_prob, target_interest, batch_dims=1) - \
            tf.reduce_sum(target_prob * active, -1) / tf.reduce_sum(active, -1)
        reward = advantage + self.orthogonality_weight * orthogonality_reward(episode["interests"], active)
        log_probs = tf.concat([episode["log_probs"], target_log_prob[:, tf.newaxis]], 1)
        rl_loss = reinforce_loss(log_probs, reward)  # padding steps carry log π = 0

        routed = target_interest if self.scoring == "policy" else None
        if self.loss_name == "ce":
            logits = self._scores(episode, tf.cast(catalogue_rows(self._table()), tf.float32), routed)  # O(V)
            ce = catalogue_cross_entropy(logits, targets)
        else:
            scores = (tf.gather(per_interest, target_interest, batch_dims=1) if routed is not None
                      else best_interest_scores(per_interest, active))
            ce = -tf.nn.log_softmax(scores, -1)[:, 0]
        return global_mean(ce) + self.rl_weight * rl_loss

    def output_embeddings(self):
        return self._table()

    def get_config(self):
        config = super().get_config()
        config.update({
            "embed_dim": self.embed_dim, "window_len": self.window_len, "max_interests": self.max_interests,
            "fixed_interests": self.fixed_interests, "num_blocks": self.num_blocks, "num_heads": self.num_heads,
            "dropout": self.dropout, "temperature": self.temperature, "policy_hidden_dim": self.policy_hidden_dim,
            "num_negatives": self.num_negatives, "rl_weight": self.rl_weight,
            "orthogonality_weight": self.orthogonality_weight, "scoring": self.scoring,
            "embeddings_initializer": self.embedding.get_config()["embeddings_initializer"],
        })
        return config
