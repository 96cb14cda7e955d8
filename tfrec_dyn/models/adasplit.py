"""AdaSplit: adaptive behaviour allocation into a learned number of sub-sequences
(Shao et al., 2022, "Learning to Split User Behaviours", arXiv 2112.02812)."""

import functools

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.data.vocabulary import NUM_RESERVED
from tfrec_dyn.layers import CausalTransformerBlock, ItemPositionEmbedding, LastAxisLayerNormalization
from tfrec_dyn.layers.masks import padding_mask
from tfrec_dyn.layers.policy import discounted_returns, reinforce_loss
from tfrec_dyn.layers.reduction import global_mean, replica_sum
from tfrec_dyn.layers.tables import gather_rows
from tfrec_dyn.layers.subsequence_allocator import SubsequenceAllocator
from tfrec_dyn.models.base import SequentialRecommender, catalogue_cross_entropy, catalogue_rows, shared_softmax_loss
from tfrec_dyn.models.episodes import EpisodeScoring, episode_windows, last_window, window_groups

SCORINGS = ("policy", "max")


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class AdaSplit(EpisodeScoring, SequentialRecommender):
    """A user's recent behaviours split by a policy into sub-sequences, one interest each.

    For a window of the user's last t items: item + position embeddings and a
    bidirectional transformer (eq. 4-6; SASRec's pre-norm block with
    `causal=False`, then a final LayerNorm); the `SubsequenceAllocator` walks
    the items oldest first and puts each into an existing sub-sequence or
    creates a new one (up to `max_subsequences`), each sub-sequence
    summarised by an `AttentionGRU`.

    Two choices of ours, both arguments, found on tests/test_adasplit.py's
    task (users with two item clusters), where the policy otherwise often
    settled early on a split by position instead of by cluster (purity 0.71
    to 0.75 instead of 1.0 on some seeds):
      * the sub-sequences are built from, and compared with, the items'
        embeddings; the transformer output of each item (the paper feeds the
        allocator only these) enters the policy's state (eq. 12);
      * `position_embeddings=False`: the transformer sees the items without
        the paper's position embeddings (E + P); order still reaches the
        sub-sequences through the GRU steps.

    Training (`sequence_loss`), one episode per target position of a batch
    (built in the graph, as RDRSR):
      * the policy routes the target item (its embedding) to a sub-sequence a;
      * L_seq: full-softmax cross-entropy of the target scored by p_a (eq. 20;
        p_a through the allocator's `readout`, as every score here), or with
        `loss="sampled_softmax"` the same softmax over negatives shared by the
        batch with the logQ correction (`models.base.shared_softmax_loss`):
        the paper's full softmax costs users x items a step;
      * rewards: the allocator's per-step rewards (how well the chosen
        sub-sequence predicted the item, orthogonality, creation penalty with
        the curriculum; see `SubsequenceAllocator`), plus a final target step
        rewarded with log P(target | p_a) − mean_j log P(target | p_j) over the
        sub-sequences (routing the target well). Reward softmaxes contrast an
        item with `num_reward_items` items drawn uniformly for each batch. Returns are discounted with γ
        (`discount`, the paper's λ_d, eq. 18) and a baseline – the batch mean
        return at each step – is subtracted;
      * loss = L_seq + β · L_rl (eq. 21).

    Scoring: `scoring="policy"` (the paper, sec. 3.3): every candidate is
    routed (arg-max) to one sub-sequence and scored by its dot product with
    it (candidates in chunks of 1,024; the work grows as users × items × K),
    so `scoring="max"` (best sub-sequence) is offered for large catalogues.

    Ablations: `allow_create=False` (K fixed sub-sequences), `curriculum="none"`
    (a constant creation penalty).

    `subsequences(batch)` returns the inference-time split of each row's last
    `window_len` items.

    Args:
      vocab_size, max_len: see `SequentialRecommender`.
      embed_dim: d.
      window_len: t, items per episode.
      max_subsequences, allow_create, create_logit, learn_create_logit,
      curriculum, curriculum_rate, create_penalty, orthogonality_weight,
      allocation_reward, policy_temperature, entropy_weight,
      policy_hidden_dim, readout: see `SubsequenceAllocator`.
      num_blocks, num_heads, dropout: the bidirectional encoder.
      embeddings_initializer: the item (and position) tables' Keras initializer
        (default: Glorot, as SASRec; see `SASRec` for why a large catalogue
        wants one whose scale does not shrink with V, e.g. "uniform").
      position_embeddings: add learned position embeddings before the
        encoder (the paper; default False, see above).
      discount: γ of the discounted returns (λ_d).
      rl_weight: β.
      num_reward_items: S, items drawn per batch for the rewards' softmaxes.
      scoring: "policy" or "max".

    Example:
    >>> model = AdaSplit(vocab_size=100, max_len=20)
    >>> batch = {"item_ids": tf.constant([[0, 5, 9, 7]])}
    >>> model.score(batch).shape, model.subsequences(batch)["assignment"].shape
    (TensorShape([1, 100]), TensorShape([1, 10]))
    """

    supports_jit_compile = False  # its loss selects rows by a mask (see SequentialRecommender)
    supported_losses = ("ce", "sampled_softmax")

    def __init__(self, vocab_size, max_len, embed_dim=64, window_len=10, max_subsequences=4, allow_create=True,
                 create_logit=0.5, learn_create_logit=True, curriculum="linear", curriculum_rate=1.0,
                 create_penalty=1.0, orthogonality_weight=0.01, allocation_reward="prediction", policy_temperature=0.1,
                 entropy_weight=0.05, policy_hidden_dim=None, readout="layer_norm", num_blocks=1, num_heads=1,
                 dropout=0.2, position_embeddings=False, discount=0.9, rl_weight=1.0, num_reward_items=100,
                 scoring="policy", embeddings_initializer="glorot_uniform", loss="ce", **kwargs):
        if loss not in self.supported_losses:
            raise ValueError(f"AdaSplit's L_seq (eq. 20) is the full softmax 'ce' or, for large catalogues, "
                             f"'sampled_softmax' (negatives shared by the batch, logQ-corrected); got loss={loss!r}")
        if scoring not in SCORINGS:
            raise ValueError(f"`scoring` must be one of {SCORINGS}, got scoring={scoring!r}")
        super().__init__(vocab_size, max_len, loss=loss, **kwargs)
        if not 0 < int(window_len) <= self.max_len:
            raise ValueError(f"`window_len` must be in 1..max_len={self.max_len}, got window_len={window_len}")
        if not 0.0 <= float(discount) <= 1.0:
            raise ValueError(f"`discount` must be in [0, 1], got discount={discount}")
        self.embed_dim = int(embed_dim)
        self.window_len = int(window_len)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.position_embeddings = bool(position_embeddings)
        self.discount = float(discount)
        self.rl_weight = float(rl_weight)
        if int(num_reward_items) <= 0:
            raise ValueError(f"`num_reward_items` must be positive, got num_reward_items={num_reward_items}")
        self.num_reward_items = int(num_reward_items)
        self.scoring = scoring
        self.embedding = ItemPositionEmbedding(vocab_size, embed_dim, self.window_len, dropout=dropout,
                                               positions=self.position_embeddings,
                                               embeddings_initializer=embeddings_initializer, name="embedding")
        self.blocks = [CausalTransformerBlock(num_heads, dropout=dropout, causal=False, name=f"block_{i}")
                       for i in range(self.num_blocks)]
        self.encoder_norm = LastAxisLayerNormalization(epsilon=1e-8, name="encoder_norm")
        self.allocator = SubsequenceAllocator(
            max_subsequences, allow_create=allow_create, create_logit=create_logit,
            learn_create_logit=learn_create_logit, curriculum=curriculum, curriculum_rate=curriculum_rate,
            create_penalty=create_penalty, orthogonality_weight=orthogonality_weight,
            allocation_reward=allocation_reward, policy_temperature=policy_temperature,
            entropy_weight=entropy_weight, policy_hidden_dim=policy_hidden_dim, readout=readout, name="allocator")

    # ------------------------------------------------------------- episodes
    def user_state(self, inputs, training=False):
        """The episode without `reward_ids`, the batch's items drawn for the
        rewards (training only): every entry is per row, as the serving index,
        which ranks one row at a time, needs."""
        state = dict(super().user_state(inputs, training=training))
        del state["reward_ids"]
        return state

    def _table(self):
        return self.embedding.item_embedding.embeddings

    def episode(self, window, training=False):
        """Encoder + allocator over windows [N, t]: a dict with subsequences
        [N, K, d], active [N, K], actions [N, t], log_probs [N, t], rewards [N, t]
        and reward_ids [S], the items drawn for the rewards' softmaxes."""
        # The rewards contrast each item with S items drawn for the batch (a full
        # softmax per step and sub-sequence would cost steps × K × V per episode).
        reward_ids = tf.random.uniform([self.num_reward_items], NUM_RESERVED, self.vocab_size, tf.int32)
        x = self.embedding(window, training=training)
        for block in self.blocks:
            x = block(x, window, training=training)
        valid = tf.cast(padding_mask(window), tf.float32)[..., tf.newaxis]
        encoded = self.encoder_norm(x) * tf.cast(valid, x.dtype)  # pre-norm blocks end un-normalised
        # Sub-sequences are made of the items themselves; the encoder's view of
        # each item (global context, position) informs the policy's state only.
        items = gather_rows(self._table(), window, encoded.dtype) * tf.cast(valid, encoded.dtype)
        subsequences, active, actions, log_probs, rewards = self.allocator(
            items, window, context=encoded, training=training,
            reward_items=gather_rows(self._table(), reward_ids))
        return {"subsequences": subsequences, "active": active, "actions": actions, "log_probs": log_probs,
                "rewards": rewards, "reward_ids": reward_ids}

    def _scores(self, episode, vectors):
        """Scores [N, C] of candidates from an episode's sub-sequences (see
        `scoring`); vectors: [C, d] shared by every row or [N, C, d] per row."""
        subsequences = tf.cast(episode["subsequences"], tf.float32)
        interests = self.allocator.readout(subsequences)
        if self.scoring == "policy":
            if vectors.shape.rank == 2:
                vectors = tf.zeros_like(subsequences[:, :1, :1]) + vectors[tf.newaxis]
            routed, _ = self.allocator.route(subsequences, episode["active"], vectors, training=False)
            return tf.einsum("ncd,ncd->nc", tf.gather(interests, routed, batch_dims=1), vectors)
        per_subsequence = (tf.einsum("nkd,cd->nkc", interests, vectors) if vectors.shape.rank == 2
                           else tf.einsum("nkd,ncd->nkc", interests, vectors))
        return tf.reduce_max(tf.where(episode["active"][..., tf.newaxis] > 0, per_subsequence, -1e9), axis=1)

    # ---------------------------------------------------------- model API
    def call(self, inputs, training=False):
        """The episode (see `episode`) of each row's last `window_len` items."""
        return self.episode(last_window(inputs["item_ids"], self.window_len), training=training)

    def subsequences(self, inputs):
        """Inference-time split of each row's last `window_len` items: `count`
        [B] (sub-sequences used), `assignment` [B, t] (0-based sub-sequence of
        each item, −1 at padding) and `item_ids` [B, t]."""
        return window_groups(self, inputs)

    # --------------------------------------------------------------- losses
    def sequence_loss(self, batch, training=False):
        windows, targets, keep = episode_windows(batch["item_ids"], batch["targets"], self.window_len)
        episode = self({"item_ids": windows}, training=training)  # windows are their own last window
        sampled = gather_rows(self._table(), episode["reward_ids"])
        subsequences = tf.cast(episode["subsequences"], tf.float32)
        interests = self.allocator.readout(subsequences)
        target_vectors = gather_rows(self._table(), targets)
        routed, routed_log_prob = self.allocator.route(subsequences, episode["active"], target_vectors,
                                                       training=training)
        chosen = tf.gather(interests, routed, batch_dims=1)
        if self.loss_name == "sampled_softmax":  # eq. 20 over negatives shared by the batch, cost independent of V
            target_log_q = tf.boolean_mask(tf.reshape(batch["target_log_q"], [-1]), keep)
            negatives = tf.cast(batch["shared_negatives"], tf.int32)
            seq_loss = global_mean(shared_softmax_loss(chosen, targets, functools.partial(gather_rows, self._table()),
                                                       negatives, batch["shared_log_q"], target_log_q))
        else:
            logits = tf.matmul(chosen, tf.cast(catalogue_rows(self._table()), tf.float32), transpose_b=True)  # O(V)
            seq_loss = global_mean(catalogue_cross_entropy(logits, targets))  # eq. 20

        # Target step reward: log P(target | p_routed) − mean_j log P(target | p_j), sampled softmax.
        target_logit = tf.einsum("nkd,nd->nk", interests, target_vectors)[..., tf.newaxis]
        contrast = tf.einsum("nkd,sd->nks", interests, sampled)
        target_log_prob = tf.nn.log_softmax(tf.concat([target_logit, contrast], -1))[..., 0]        # [N, K]
        active = tf.cast(episode["active"], tf.float32)
        advantage = tf.gather(target_log_prob, routed, batch_dims=1) - \
            tf.reduce_sum(target_log_prob * active, -1) / tf.reduce_sum(active, -1)
        rewards = tf.concat([episode["rewards"], advantage[:, tf.newaxis]], 1)
        log_probs = tf.concat([episode["log_probs"], routed_log_prob[:, tf.newaxis]], 1)
        steps = tf.concat([tf.cast(episode["actions"] >= 0, tf.float32), tf.ones_like(advantage)[:, tf.newaxis]], 1)
        returns = discounted_returns(tf.stop_gradient(rewards), self.discount, steps)
        # The mean return per step over the global batch (the same on every replica).
        baseline = replica_sum(tf.reduce_sum(returns, 0)) / tf.maximum(replica_sum(tf.reduce_sum(steps, 0)), 1.0)
        rl_loss = reinforce_loss(log_probs, returns, steps, baseline=baseline[tf.newaxis])
        return seq_loss + self.rl_weight * rl_loss

    def output_embeddings(self):
        return self._table()

    def get_config(self):
        config = super().get_config()
        allocator = self.allocator.get_config()
        config.update({key: allocator[key] for key in (
            "max_subsequences", "allow_create", "create_logit", "learn_create_logit", "curriculum",
            "curriculum_rate", "create_penalty", "orthogonality_weight", "allocation_reward", "policy_temperature",
            "entropy_weight", "policy_hidden_dim", "readout")})
        config.update({
            "embed_dim": self.embed_dim, "window_len": self.window_len, "num_blocks": self.num_blocks,
            "num_heads": self.num_heads, "dropout": self.dropout, "position_embeddings": self.position_embeddings,
            "discount": self.discount,
            "rl_weight": self.rl_weight, "num_reward_items": self.num_reward_items, "scoring": self.scoring,
            "embeddings_initializer": self.embedding.get_config()["embeddings_initializer"]})
        return config
