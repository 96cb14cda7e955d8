"""AdaSplit's behaviour allocator (Shao et al., 2022, "Adaptive Behaviour Allocation", sec. 3.1)."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.attention_gru import AttentionGRU
from tfrec_dyn.layers.masks import padding_mask
from tfrec_dyn.layers.normalization import LastAxisLayerNormalization
from tfrec_dyn.layers.policy import interest_attention, masked_log_softmax, orthogonality_reward, sample_action

CURRICULA = ("exponential", "linear", "none")
ALLOCATION_REWARDS = ("prediction", "nearest")
READOUTS = ("layer_norm", "dense", "none")


def curriculum_weight(schedule: str, created_before, rate: float):
    """Weight of the creation penalty for a creation after `created_before` earlier ones (eq. 17).

    linear: rate · T_a; exponential: rate ** T_a; none: 1 (a constant penalty),
    with T_a the number of sub-sequences created so far in the episode.

    >>> [float(curriculum_weight("linear", n, 0.5)) for n in (0, 1, 2)]
    [0.0, 0.5, 1.0]
    >>> [round(float(curriculum_weight("exponential", n, 2.0)), 2) for n in (0, 1, 2)]
    [1.0, 2.0, 4.0]
    """
    created_before = tf.cast(created_before, tf.float32)
    if schedule == "linear":
        return rate * created_before
    if schedule == "exponential":
        return tf.pow(tf.constant(rate, tf.float32), created_before)
    if schedule == "none":
        return tf.ones_like(created_before)
    raise ValueError(f"`curriculum` must be one of {CURRICULA}, got {schedule!r}")


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class SubsequenceAllocator(keras.layers.Layer):
    """Splits a sequence into sub-sequences, item by item, creating new ones as needed.

    An episode walks the items oldest first; the first item opens the first
    sub-sequence (no choice, no penalty). At step T, with the item v_T and the representations P of the h
    sub-sequences so far:

      s_T   = W0 [Σ_i z_i p_i ; c_T],  z = softmax_i(p_i · v_T)        (eq. 12)
      s_T,i = [s_T W_s ; p_i W_p ; p_i · v_T]                          (eq. 13, + p_i · v_T)
      r_i   = σ(MLP(s_T,i))                                            (eq. 7)
      π(a)  = softmax((r_1, …, r_h, ε) / τ)                            (eq. 8)

    with c_T the item's `context` (AdaSplit: its bidirectional-transformer
    output; default v_T), where the last action, with the learned logit ε, creates sub-sequence
    h + 1 (only while h < `max_subsequences`). The chosen sub-sequence takes
    the item with an `AttentionGRU` step (eq. 9-10). Every sub-sequence starts
    from a learned start vector: the paper starts from the user embedding e_u;
    a shared learned start serves users never seen in training and keeps the
    item itself out of a new sub-sequence's start. Actions are sampled in
    training and the arg-max at inference (eq. 22).

    Reward of each step (eq. 14-18, before discounting):
      r_loss: `allocation_reward="prediction"` (default): log P(v_T | p_a),
               the softmax of the chosen sub-sequence's representation
               *before* it takes v_T over v_T and the `reward_items` (the
               model passes sampled items) – the paper's "common
               target [with the recommender] is to lower the loss" (sec. 3.1);
               a sub-sequence that predicts its items well is a coherent one.
               `"nearest"` is eq. 14 as printed, softmax_i(p_i · v_T)[a] after
               the update; it gives a single sub-sequence its maximum, 1, so
               with it nothing rewards a split.
      r_ort  = −mean_{i<j} |p_i · p_j| (eq. 15), weighted by λ_o,
      r_create = −`create_penalty` · w(T_a) when the action creates, where w is
               the `curriculum` schedule of eq. 17 and T_a the number of
               sub-sequences the policy created before in the episode.

    `allow_create=False` is the fixed-count ablation: all `max_subsequences`
    sub-sequences exist from the start and there is no create action. A
    window without items leaves one sub-sequence at the start vector. Window
    lengths are static, so the steps are unrolled in the graph and vectorised
    over episodes.

    Call: `allocator(items, item_ids, context=None, reward_items=None,
    training=...)` with the items v [B, T, d] that sub-sequences are made of
    and compared with, ids [B, T] (0 = padding: no action), optional
    per-item context c [B, T, d] for the state, and the contrast items [S, d]
    of the prediction reward (without them that reward is 0: inference needs
    no rewards). Returns `(subsequences [B, K, d], active
    [B, K], actions [B, T] (−1 at padding), log_probs [B, T] (0 at padding),
    rewards [B, T])`.

    `route(subsequences, active, vectors, training)` assigns extra vectors
    ([B, d] or [B, C, d]) to an existing sub-sequence (no creation): the target
    item in training, candidates at prediction time.

    `readout(subsequences)` gives the vectors that score items, used by the
    prediction reward here and by the model's next-item scores. The paper
    scores with the sub-sequence states p themselves; an Attention-GRU state is
    a tanh-bounded mix of small item embeddings, so p · v starts near 0 for
    every item, the softmax over the catalogue is nearly flat and its
    gradients and rewards carry little signal. `readout="layer_norm"`
    (default) normalises p first (with a learned gain and bias, as SASRec's
    final LayerNorm): on MovieLens-100K validation NDCG@10 after 20 epochs went
    from 0.027 (`"none"`, the paper) to 0.085 (docs/results.md, "AdaSplit").
    `"dense"` (a learned d × d map) is offered too.

    Two more additions of ours. The similarity p_i · v_T is an input of the policy
    MLP: the paper asks the MLP to compute the similarity of the item and each
    sub-sequence from [s_T W_s ; p_i W_p], a product a ReLU network of a
    concatenation can only approximate, and without it allocations did not
    learn to follow item clusters in our tests. The policy temperature τ: with the paper's sigmoid relevance
    (τ = 1) no action can be more than e ≈ 2.7 times as likely as another,
    so sampled allocations stay close to random and splits look useless to
    the rewards; τ = `policy_temperature` (default 0.1) lets π become sharp.
    A sharp policy also collapses early onto whatever allocation it first
    prefers, so in training the layer adds `entropy_weight` · (−mean entropy
    of π over the steps with a choice) to its losses (`layer.losses`, which
    `SequentialRecommender.train_step` adds to the loss), the usual
    exploration bonus of policy-gradient methods.

    Args:
      max_subsequences: K, the most sub-sequences an episode may hold.
      allow_create: False for the fixed-count ablation.
      create_logit: initial ε (the paper tunes it in 0.2-0.8 and keeps it
        fixed; `learn_create_logit` says whether it is trained).
      learn_create_logit: whether ε is trained.
      curriculum: "linear" (default), "exponential" or "none" (eq. 17).
      curriculum_rate: a1 (linear) or b1 (exponential).
      create_penalty: scale λ of the creation penalty. The defaults (linear,
        a1 = 1, λ = 1: the policy's first creation is free, the n-th costs
        n − 1) split users with two item clusters into exactly two
        sub-sequences in `tests/test_adasplit.py`; a constant or exponential
        penalty of that size stopped all splitting there, a tenth of it let
        the policy open a third sub-sequence for about half of the users.
      orthogonality_weight: λ_o.
      allocation_reward: "prediction" or "nearest", see above.
      policy_temperature: τ, see above (1 = the paper).
      entropy_weight: weight of the exploration bonus (0 = the paper).
      policy_hidden_dim: hidden width of the MLP of eq. 7 (default d).
      readout: "layer_norm", "dense" or "none" (the paper), see above.

    Example:
    >>> allocator = SubsequenceAllocator(max_subsequences=3)
    >>> P, active, actions, _, _ = allocator(tf.ones([1, 4, 8]), tf.constant([[0, 3, 4, 5]]))
    >>> P.shape, actions.numpy()[0, 0], bool(tf.reduce_sum(active) <= 3)
    (TensorShape([1, 3, 8]), -1, True)
    """

    def __init__(self, max_subsequences=4, allow_create=True, create_logit=0.5, learn_create_logit=True,
                 curriculum="linear", curriculum_rate=1.0, create_penalty=1.0, orthogonality_weight=0.01,
                 allocation_reward="prediction", policy_temperature=0.1, entropy_weight=0.05, policy_hidden_dim=None,
                 readout="layer_norm", **kwargs):
        super().__init__(**kwargs)
        if int(max_subsequences) <= 0:
            raise ValueError(f"`max_subsequences` must be positive, got max_subsequences={max_subsequences}")
        if curriculum not in CURRICULA:
            raise ValueError(f"`curriculum` must be one of {CURRICULA}, got curriculum={curriculum!r}")
        if allocation_reward not in ALLOCATION_REWARDS:
            raise ValueError(f"`allocation_reward` must be one of {ALLOCATION_REWARDS}, "
                             f"got allocation_reward={allocation_reward!r}")
        self.max_subsequences = int(max_subsequences)
        self.allow_create = bool(allow_create)
        self.create_logit_init = float(create_logit)
        self.learn_create_logit = bool(learn_create_logit)
        self.curriculum = curriculum
        self.curriculum_rate = float(curriculum_rate)
        self.create_penalty = float(create_penalty)
        self.orthogonality_weight = float(orthogonality_weight)
        self.allocation_reward = allocation_reward
        if float(policy_temperature) <= 0:
            raise ValueError(f"`policy_temperature` must be positive, got {policy_temperature}")
        self.policy_temperature = float(policy_temperature)
        self.entropy_weight = float(entropy_weight)
        self.policy_hidden_dim = None if policy_hidden_dim is None else int(policy_hidden_dim)
        if readout not in READOUTS:
            raise ValueError(f"`readout` must be one of {READOUTS}, got readout={readout!r}")
        self.readout_kind = readout

    def build(self, input_shape):
        d = int(input_shape[-1])
        hidden = self.policy_hidden_dim or d

        def dense(units, name, **kwargs):
            return keras.layers.Dense(units, name=name, dtype=self.dtype_policy, **kwargs)

        self.state_projection = dense(d, "state_projection", use_bias=False)          # W0
        self.step_weights = dense(d, "step_weights", use_bias=False)                  # W_s
        self.subsequence_weights = dense(d, "subsequence_weights", use_bias=False)    # W_p
        self.policy_hidden = dense(hidden, "policy_hidden", activation="relu")        # W_p1, b_p1
        self.policy_middle = dense(hidden, "policy_middle")                           # W_p2, b_p2
        self.policy_output = dense(1, "policy_output", activation="sigmoid")         # W_p3, b_p3
        self.state_projection.build((None, 2 * d))
        self.step_weights.build((None, d))
        self.subsequence_weights.build((None, d))
        self.policy_hidden.build((None, 2 * d + 1))
        self.policy_middle.build((None, hidden))
        self.policy_output.build((None, hidden))
        self.gru = AttentionGRU(name="attention_gru", dtype=self.dtype_policy)
        self.gru.build((None, d))
        if self.readout_kind == "layer_norm":
            self.readout_layer = LastAxisLayerNormalization(epsilon=1e-8, name="readout", dtype=self.dtype_policy)
        elif self.readout_kind == "dense":
            self.readout_layer = dense(d, "readout")
        else:
            self.readout_layer = None
        if self.readout_layer is not None:
            self.readout_layer.build((None, d))
        self.create_logit = self.add_weight(
            "create_logit", shape=(), initializer=keras.initializers.Constant(self.create_logit_init),
            trainable=self.learn_create_logit and self.allow_create, dtype=tf.float32)  # ε
        self.start = self.add_weight("start", shape=(d,), initializer=keras.initializers.RandomNormal(stddev=0.1),
                                     dtype=tf.float32)  # every sub-sequence's p before its first item
        super().build(input_shape)

    def readout(self, subsequences):
        """The vectors (float32, same shape) that score items from sub-sequence states (see `readout`)."""
        if self.readout_layer is None:
            return tf.cast(subsequences, tf.float32)
        # One rank for the layer (Keras 2's LayerNormalization keeps the rank it was built with).
        flat = tf.reshape(subsequences, [-1, tf.shape(subsequences)[-1]])
        return tf.reshape(tf.cast(self.readout_layer(flat), tf.float32), tf.shape(subsequences))

    # ------------------------------------------------------------- the policy
    def _relevance(self, subsequences, active, vectors, context=None):
        """r [B, C, K] (eq. 7, 12, 13) of vectors [B, C, d] against every
        sub-sequence; `context` [B, C, d] (default: the vectors) enters the state."""
        subsequences = tf.cast(subsequences, self.compute_dtype)
        vectors = tf.cast(vectors, self.compute_dtype)
        context = vectors if context is None else tf.cast(context, self.compute_dtype)
        similarity, mixed = interest_attention(subsequences, active, vectors)    # p_i · v_T, Σ_i z_i p_i
        step = self.state_projection(tf.concat([mixed, context], -1))
        # [s W_s ; p W_p ; p · v] through the first layer is a sum of a per-vector,
        # a per-sub-sequence and a per-pair term: computed apart, broadcast to [B, C, K].
        # (tensordot: one matmul over all rows; tf.matmul of a [B, n, d] by a [d, h]
        # is a batched matmul whose gradient for the kernel is B kernels summed.)
        first = tf.cast(self.policy_hidden.kernel, self.compute_dtype)
        d = self.step_weights.units
        per_vector = tf.tensordot(self.step_weights(step), first[:d], 1)
        per_subsequence = tf.tensordot(self.subsequence_weights(subsequences), first[d:2 * d], 1)
        per_pair = tf.cast(similarity, self.compute_dtype)[..., tf.newaxis] * first[2 * d]
        hidden = tf.nn.relu(per_vector[:, :, tf.newaxis] + per_subsequence[:, tf.newaxis] + per_pair
                            + tf.cast(self.policy_hidden.bias, self.compute_dtype))
        return tf.cast(self.policy_output(self.policy_middle(hidden))[..., 0], tf.float32) / self.policy_temperature

    def route(self, subsequences, active, vectors, training=None):
        """(action, log_prob) assigning vectors [B, d] or [B, C, d] to an active sub-sequence."""
        single = vectors.shape.rank == 2
        relevance = self._relevance(subsequences, active, vectors[:, tf.newaxis] if single else vectors)
        allowed = tf.cast(active, tf.bool)[:, tf.newaxis] & tf.ones_like(relevance, tf.bool)
        action, log_prob = sample_action(masked_log_softmax(relevance, allowed), training)
        return (action[:, 0], log_prob[:, 0]) if single else (action, log_prob)

    # ------------------------------------------------------------- an episode
    def call(self, items, item_ids, context=None, reward_items=None, training=None):
        k = self.max_subsequences
        item_ids = tf.cast(item_ids, tf.int32)
        valid = padding_mask(item_ids)
        items = tf.cast(items, self.compute_dtype)
        batch = tf.shape(items)[0]
        subsequences = tf.cast(self.start, self.compute_dtype) + tf.zeros([batch, k, 1], self.compute_dtype)
        active = tf.zeros([batch, k]) if self.allow_create else tf.ones([batch, k])
        created = tf.zeros([batch])
        actions, log_probs, rewards, entropies = [], [], [], []
        # Unstacked once: a slice per step would make its gradient a whole [B, T, d] tensor each step.
        steps = zip(tf.unstack(items, axis=1), tf.unstack(tf.cast(valid, tf.float32), axis=1),
                    [None] * items.shape[1] if context is None else tf.unstack(context, axis=1), strict=True)
        for vector, real, step_context in steps:  # static window length: unrolled
            relevance = self._relevance(subsequences, active, vector[:, tf.newaxis],
                                        None if step_context is None else step_context[:, tf.newaxis])[:, 0]  # [B, K]
            count = tf.cast(tf.reduce_sum(active, -1), tf.int32)
            # The create action is the first unused slot (none once all K exist).
            create_slot = tf.one_hot(count, k) if self.allow_create else tf.zeros_like(active)
            logits = tf.where(create_slot > 0, tf.cast(self.create_logit, tf.float32) / self.policy_temperature,
                              relevance)
            policy = masked_log_softmax(logits, (active + create_slot) > 0)
            action, log_prob = sample_action(policy, training)
            entropies.append(-tf.reduce_sum(tf.exp(policy) * policy, -1) * real)
            chosen = tf.one_hot(action, k) * real[:, tf.newaxis]
            state = tf.gather(subsequences, action, batch_dims=1)  # the chosen sub-sequence, before v_T
            before = self.readout(state)
            # The first item's creation is forced: neither a choice nor penalised.
            creates = tf.reduce_sum(chosen * create_slot, -1) * tf.cast(count > 0, tf.float32)
            active = tf.maximum(active, chosen)
            # Only the chosen sub-sequence takes a GRU step (the others would be discarded).
            updated = self.gru(state, vector)
            subsequences = tf.where(chosen[..., tf.newaxis] > 0, updated[:, tf.newaxis], subsequences)

            if self.allocation_reward == "prediction" and reward_items is None:
                fit = tf.zeros_like(real)
            elif self.allocation_reward == "prediction":
                target = tf.reduce_sum(before * tf.cast(vector, tf.float32), -1, keepdims=True)
                contrast = tf.matmul(before, tf.cast(reward_items, tf.float32), transpose_b=True)
                fit = tf.nn.log_softmax(tf.concat([target, contrast], -1))[:, 0]
            else:
                affinity = tf.einsum("bkd,bd->bk", tf.cast(subsequences, tf.float32), tf.cast(vector, tf.float32))
                fit = tf.exp(tf.gather(masked_log_softmax(affinity, active > 0), action, batch_dims=1))
            penalty = self.create_penalty * curriculum_weight(self.curriculum, created, self.curriculum_rate)
            reward = (fit + self.orthogonality_weight * orthogonality_reward(subsequences, active)
                      - penalty * creates)
            created += creates
            actions.append(tf.where(real > 0, action, -1))
            log_probs.append(log_prob * real)
            rewards.append(reward * real)
        if training and self.entropy_weight:
            choices = tf.reduce_sum(tf.stack(entropies, 1), 1)
            steps = tf.reduce_sum(tf.cast(valid, tf.float32), 1)
            self.add_loss(-self.entropy_weight * tf.reduce_mean(choices / tf.maximum(steps, 1.0)))
        active = tf.maximum(active, tf.one_hot(tf.zeros([batch], tf.int32), k))  # empty windows: the start
        stack = lambda values: tf.stack(values, axis=1)  # noqa: E731
        return subsequences, active, stack(actions), stack(log_probs), stack(rewards)

    def get_config(self):
        config = super().get_config()
        config.update({
            "max_subsequences": self.max_subsequences, "allow_create": self.allow_create,
            "create_logit": self.create_logit_init, "learn_create_logit": self.learn_create_logit,
            "curriculum": self.curriculum, "curriculum_rate": self.curriculum_rate,
            "create_penalty": self.create_penalty, "orthogonality_weight": self.orthogonality_weight,
            "allocation_reward": self.allocation_reward, "policy_temperature": self.policy_temperature,
            "entropy_weight": self.entropy_weight, "policy_hidden_dim": self.policy_hidden_dim,
            "readout": self.readout_kind})
        return config
