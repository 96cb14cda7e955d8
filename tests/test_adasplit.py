"""AdaSplit: Attention-GRU, the sub-sequence allocator, curriculum and the model."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from layer_harness import run_layer_test
from tfrec_dyn.data.input_pipeline import training_dataset
from tfrec_dyn.layers import AttentionGRU, SubsequenceAllocator, curriculum_weight
from tfrec_dyn.models import AdaSplit

V, L = 30, 8
ITEMS = tf.constant([[0, 0, 0, 4, 5, 6, 7, 8], [2, 3, 4, 5, 6, 7, 8, 9]], tf.int32)
BATCH = {"item_ids": ITEMS, "targets": tf.concat([ITEMS[:, 1:], tf.constant([[9], [10]])], 1)}
WINDOW = tf.constant([[0, 0, 3, 4, 5, 6], [2, 3, 4, 5, 6, 7]], tf.int32)


def _allocator_args(d=8):
    """items, ids, context, reward items."""
    return [tf.random.stateless_normal([2, 6, d], [0, 1]), WINDOW, tf.random.stateless_normal([2, 6, d], [0, 3]),
            tf.random.stateless_normal([V, d], [0, 2])]


# ------------------------------------------------------------------ Attention-GRU
def test_attention_gru_layer(tmp_path):
    run_layer_test(AttentionGRU, {}, [tf.random.normal([3, 8]), tf.random.normal([3, 8])], (3, 8), tmp_path)


def test_attention_gru_equations_by_hand():
    gru = AttentionGRU()
    p, v = tf.random.stateless_normal([2, 4], [1, 1]), tf.random.stateless_normal([2, 4], [1, 2])
    got = gru(p, v).numpy()
    w = {layer.name: layer.get_weights() for layer in (gru.update_input, gru.update_state, gru.reset_input,
                                                       gru.reset_state, gru.candidate_input, gru.candidate_state)}
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    p, v = p.numpy(), v.numpy()
    z = sigmoid(v @ w["update_input"][0] + w["update_input"][1] + p @ w["update_state"][0])   # [2, 1]: scalar gates
    s = sigmoid(v @ w["reset_input"][0] + w["reset_input"][1] + p @ w["reset_state"][0])
    h = np.tanh(v @ w["candidate_input"][0] + w["candidate_input"][1] + (s * p) @ w["candidate_state"][0])
    np.testing.assert_allclose(got, z * p + (1 - z) * h, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the allocator
def test_allocator_layer(tmp_path):
    run_layer_test(SubsequenceAllocator, {"max_subsequences": 3}, _allocator_args(),
                   [(2, 3, 8), (2, 3), (2, 6), (2, 6), (2, 6)], tmp_path)


@pytest.mark.parametrize("training", [True, False])
def test_creation_is_never_taken_past_the_maximum(training):
    """ε far above every relevance: the policy creates whenever it may – and
    never holds more than `max_subsequences`."""
    allocator = SubsequenceAllocator(max_subsequences=3, create_logit=50.0, entropy_weight=0.0)
    items, window, context, table = _allocator_args()
    _, active, actions, log_probs, _ = allocator(items, window, context, table, training=training)
    real = window.numpy() > 0
    np.testing.assert_array_equal(active.numpy().sum(-1), [3, 3])
    assert np.all(actions.numpy()[real] < 3) and np.all(actions.numpy()[~real] == -1)
    assert np.all(log_probs.numpy()[~real] == 0)
    # Items open sub-sequences 0, 1, 2 in turn, then must join one.
    np.testing.assert_array_equal(actions.numpy()[1, :3], [0, 1, 2])
    np.testing.assert_array_equal(actions.numpy()[0, 2:5], [0, 1, 2])


def test_without_creation_all_subsequences_exist_from_the_start():
    allocator = SubsequenceAllocator(max_subsequences=3, allow_create=False, create_logit=50.0)
    _, active, actions, _, _ = allocator(*_allocator_args())
    np.testing.assert_array_equal(active.numpy(), np.ones((2, 3)))
    assert np.all(actions.numpy() < 3)


def test_empty_window_keeps_one_subsequence_at_the_start_vector():
    allocator = SubsequenceAllocator(max_subsequences=3)
    items, _, context, table = _allocator_args()
    subsequences, active, actions, _, rewards = allocator(items, tf.zeros([2, 6], tf.int32), context, table)
    np.testing.assert_array_equal(active.numpy(), [[1, 0, 0]] * 2)
    np.testing.assert_allclose(subsequences[:, 0], tf.tile(allocator.start[tf.newaxis], [2, 1]), atol=1e-6)
    assert np.all(actions.numpy() == -1) and np.all(rewards.numpy() == 0)


def test_each_item_moves_only_the_subsequence_it_joins():
    """Replaying the returned actions by hand – start vectors, one GRU step of
    the chosen sub-sequence per real item, the others untouched – gives the
    allocator's sub-sequences and the sub-sequences it marks active."""
    allocator = SubsequenceAllocator(max_subsequences=3, create_logit=1.0)
    items, window, context, table = _allocator_args()
    subsequences, active, actions, _, _ = allocator(items, window, context, table)
    expected = np.tile(allocator.start.numpy(), [2, 3, 1])
    for row in range(2):
        for step, action in enumerate(actions.numpy()[row]):
            if action >= 0:
                expected[row, action] = allocator.gru(expected[row, action][np.newaxis],
                                                      items[row, step][np.newaxis]).numpy()[0]
    np.testing.assert_allclose(subsequences.numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(active.numpy(), [[float(k in set(a)) for k in range(3)] for a in actions.numpy()])
    assert len(set(actions.numpy()[1])) > 1  # the replay covers more than one sub-sequence


def test_one_vector_and_many_candidates_get_the_same_relevance():
    """An episode's step (one vector a row) and scoring (many candidates a row)
    compute the policy's relevance by different products; they must agree."""
    allocator = SubsequenceAllocator(max_subsequences=3, create_logit=1.0)
    items, window, context, table = _allocator_args()
    subsequences, *_ = allocator(items, window, context, table)
    candidates = tf.random.stateless_normal([2, 5, 8], [0, 4])
    for active in (tf.constant([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]), tf.ones([2, 3])):  # the mask matters
        many = allocator._relevance(subsequences, active, candidates)
        one = tf.concat([allocator._relevance(subsequences, active, candidates[:, j:j + 1]) for j in range(5)], 1)
        np.testing.assert_allclose(one.numpy(), many.numpy(), rtol=1e-5, atol=1e-5)
    masked = allocator._relevance(subsequences, tf.constant([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]), candidates[:, :1])
    assert not np.allclose(masked.numpy(), one[:, :1].numpy(), atol=1e-4)  # ... as the state says it does


def test_curriculum_schedules_match_their_formulas():
    created = tf.constant([0.0, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(curriculum_weight("linear", created, 0.3), [0.0, 0.3, 0.6, 1.5], rtol=1e-6)
    np.testing.assert_allclose(curriculum_weight("exponential", created, 1.2), [1.0, 1.2, 1.44, 1.2 ** 5], rtol=1e-6)
    np.testing.assert_allclose(curriculum_weight("none", created, 1.2), [1.0] * 4)
    with pytest.raises(ValueError, match="curriculum"):
        curriculum_weight("cosine", created, 1.0)


@pytest.mark.parametrize("curriculum,rate", [("linear", 0.5), ("exponential", 2.0), ("none", 3.0)])
def test_creation_penalty_follows_the_curriculum(curriculum, rate):
    """Same weights, same (arg-max) actions: the rewards of a penalised allocator
    differ from an unpenalised one by exactly −λ · w(T_a) at each chosen creation."""
    args = _allocator_args()
    kwargs = dict(max_subsequences=4, create_logit=50.0, curriculum=curriculum, curriculum_rate=rate)
    free = SubsequenceAllocator(create_penalty=0.0, **kwargs)
    penalised = SubsequenceAllocator(create_penalty=0.1, **kwargs)
    free(*args)
    penalised(*args)
    penalised.set_weights(free.get_weights())
    *_, actions, _, free_rewards = free(*args)
    *_, same_actions, _, penalised_rewards = penalised(*args)
    np.testing.assert_array_equal(actions, same_actions)
    # Row 1 (no padding): step 0 opens the first sub-sequence (forced, free),
    # steps 1, 2, 3 are the policy's 1st, 2nd, 3rd creation (T_a = 0, 1, 2).
    expected = np.zeros(6)
    expected[1:4] = [-0.1 * float(curriculum_weight(curriculum, n, rate)) for n in (0, 1, 2)]
    np.testing.assert_allclose(penalised_rewards[1] - free_rewards[1], expected, atol=1e-5)


def test_bad_allocator_arguments():
    with pytest.raises(ValueError, match="max_subsequences"):
        SubsequenceAllocator(max_subsequences=0)
    with pytest.raises(ValueError, match="curriculum"):
        SubsequenceAllocator(curriculum="cosine")
    with pytest.raises(ValueError, match="allocation_reward"):
        SubsequenceAllocator(allocation_reward="dot")
    with pytest.raises(ValueError, match="policy_temperature"):
        SubsequenceAllocator(policy_temperature=0)
    with pytest.raises(ValueError, match="readout"):
        SubsequenceAllocator(readout="softmax")


@pytest.mark.parametrize("readout", ["layer_norm", "none"])
def test_readout(readout):
    allocator = SubsequenceAllocator(readout=readout)
    states = tf.random.stateless_normal([2, 3, 8], [0, 1]) * 0.01  # small, as Attention-GRU states start
    allocator(tf.ones([1, 2, 8]), tf.constant([[3, 4]]))  # builds it
    vectors = allocator.readout(states).numpy()
    if readout == "none":
        np.testing.assert_array_equal(vectors, states.numpy())
    else:  # each vector normalised over its d features, whatever its scale
        np.testing.assert_allclose(vectors.mean(-1), 0.0, atol=1e-5)
        np.testing.assert_allclose(vectors.std(-1), 1.0, atol=1e-3)


# -------------------------------------------------------------------- the model
@pytest.mark.parametrize("kwargs", [{}, {"allow_create": False}, {"curriculum": "none"},
                                    {"scoring": "max"}, {"allocation_reward": "nearest"},
                                    {"position_embeddings": True}, {"readout": "dense"}])
def test_model_scores_and_gradients_reach_every_weight(kwargs):
    model = AdaSplit(V, L, embed_dim=16, window_len=5, **kwargs)
    scores = model.score(BATCH)
    assert scores.shape == (2, V) and np.all(np.isneginf(scores[:, :2])) and np.all(np.isfinite(scores[:, 2:]))
    with tf.GradientTape() as tape:
        loss = model.sequence_loss(BATCH, training=True) + tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(loss.numpy())
    missing = [v.name for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing, missing
    # ε is trained only where creation is possible.
    assert any(v is model.allocator.create_logit for v in model.trainable_variables) == kwargs.get("allow_create", True)


def test_subsequences_inspection():
    model = AdaSplit(V, L, embed_dim=16, window_len=6, max_subsequences=3)
    found = model.subsequences(BATCH)
    count, assignment = found["count"].numpy(), found["assignment"].numpy()
    assert found["item_ids"].numpy().tolist() == ITEMS[:, -6:].numpy().tolist()
    assert np.all((1 <= count) & (count <= 3))
    assert assignment[0, 0] == -1 and np.all(assignment[0, 1:] >= 0)  # row 0's window starts with padding
    assert np.all(assignment < count[:, None])
    # Every sub-sequence counted holds at least one item.
    for row in range(2):
        assert set(assignment[row][assignment[row] >= 0]) == set(range(count[row]))


def test_mixed_precision():
    from tfrec_dyn.training.strategy import precision_scope

    with precision_scope(True):
        model = AdaSplit(V, L, embed_dim=16, window_len=5)
    assert np.isfinite(model.sequence_loss(BATCH, training=True).numpy())
    assert np.all(np.isfinite(model.score(BATCH)[:, 2:]))
    policies = {layer.dtype_policy.name for layer in model._flatten_layers(include_self=False)}
    assert policies == {"mixed_float16"}, policies


def test_bad_arguments():
    with pytest.raises(ValueError, match="window_len"):
        AdaSplit(V, 5, window_len=10)
    with pytest.raises(ValueError, match="scoring"):
        AdaSplit(V, L, window_len=5, scoring="mean")
    with pytest.raises(ValueError, match="loss"):
        AdaSplit(V, L, window_len=5, loss="bpr")
    with pytest.raises(ValueError, match="discount"):
        AdaSplit(V, L, window_len=5, discount=1.5)


@pytest.mark.slow
def test_splits_two_interest_users_into_two_subsequences():
    """Six disjoint clusters of five items; each user draws every item from
    two clusters. After training, the allocator should open exactly two
    sub-sequences for most held-out users, each holding one cluster, and the
    top 10 should come from the user's two clusters."""
    tf.random.set_seed(0)
    rng = np.random.default_rng(0)
    clusters = np.arange(30).reshape(6, 5) + 2
    sequences = [rng.choice(clusters[rng.choice(6, 2, replace=False)].ravel(), size=12) for _ in range(600)]
    vocab = 32
    model = AdaSplit(vocab, 10, embed_dim=32, window_len=10, max_subsequences=3, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(0.005))
    for seed in range(5):
        model.fit(training_dataset(sequences[:500], vocab, 10, 64, num_negatives=0, seed=seed), epochs=5, verbose=0)

    held_out = np.stack([s[-10:] for s in sequences[500:]]).astype(np.int32)
    found = model.subsequences({"item_ids": held_out})
    count, assignment = found["count"].numpy(), found["assignment"].numpy()
    cluster = (held_out - 2) // 5
    assert np.mean(count == 2) >= 0.8, np.bincount(count)
    purity = [np.mean(cluster[r][assignment[r] == s] == np.bincount(cluster[r][assignment[r] == s]).argmax())
              for r in range(len(held_out)) for s in range(count[r])]
    assert np.mean(purity) >= 0.9, np.mean(purity)
    top = model.recommend({"item_ids": held_out}, k=10, exclude_seen=False)[0].numpy()
    precision = np.mean([np.isin((row - 2) // 5, np.unique(c)).mean() for row, c in zip(top, cluster)])
    assert precision > 0.8, precision
