"""RDRSR: DID, DIA and the model (the shared policy-gradient utilities: test_policy.py)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from layer_harness import run_layer_test
from tfrec_dyn.data.input_pipeline import training_dataset
from tfrec_dyn.layers import DynamicInterestAllocator, DynamicInterestDiscriminator, active_interests
from tfrec_dyn.models import RDRSR
from tfrec_dyn.models.episodes import episode_windows

IDS = tf.constant([[0, 0, 4, 5, 6, 7], [2, 3, 4, 5, 6, 7]], tf.int32)
V, L = 30, 8
ITEMS = tf.constant([[0, 0, 0, 4, 5, 6, 7, 8], [2, 3, 4, 5, 6, 7, 8, 9]], tf.int32)
BATCH = {"item_ids": ITEMS, "targets": tf.concat([ITEMS[:, 1:], tf.constant([[9], [10]])], 1),
         "negatives": tf.fill([2, L, 3], 20)}


# ------------------------------------------------------------------------- DID
def test_discriminator_layer(tmp_path):
    run_layer_test(DynamicInterestDiscriminator, {"max_interests": 4}, [tf.random.normal([2, 6, 8]), IDS,
                                                                       tf.random.normal([2, 8])],
                   [(2, 6, 8), (2, 4), (2, 4)], tmp_path)


def test_gumbel_count_is_one_hot_forward_with_gradients_into_the_discriminator():
    did = DynamicInterestDiscriminator(max_interests=4, temperature=10.0)
    x, user = tf.random.normal([16, 6, 8]), tf.random.normal([16, 8])
    ids = tf.tile(IDS, [8, 1])
    did(x, ids, user)
    with tf.GradientTape() as tape:
        _, count, _ = did(x, ids, user, training=True)
        # Any downstream use of the count, e.g. how many interests are active.
        value = tf.reduce_sum(active_interests(count) * tf.random.normal([16, 4]))
    np.testing.assert_array_equal(np.sort(np.unique(count.numpy())), [0.0, 1.0])
    np.testing.assert_array_equal(count.numpy().sum(-1), 1.0)
    head = did.count_head.kernel
    grad = tape.gradient(value, head)
    assert grad is not None and np.abs(grad.numpy()).sum() > 0
    # Inference is the deterministic arg-max.
    inference = {did(x, ids, user)[1].numpy().tobytes() for _ in range(3)}
    assert len(inference) == 1


def test_user_vector_changes_the_count_logits():
    did = DynamicInterestDiscriminator(max_interests=4)
    x = tf.random.normal([1, 6, 8])
    a = did(x, IDS[1:], tf.random.normal([1, 8]))[2]
    b = did(x, IDS[1:], tf.random.normal([1, 8]))[2]
    assert not np.allclose(a, b)


def test_fixed_count_is_rdrsr_f():
    did = DynamicInterestDiscriminator(max_interests=4, fixed_interests=3)
    _, count, _ = did(tf.random.normal([2, 6, 8]), IDS, tf.random.normal([2, 8]), training=True)
    np.testing.assert_array_equal(count, [[0, 0, 1, 0]] * 2)
    assert not hasattr(did, "count_head")
    with pytest.raises(ValueError, match="fixed_interests"):
        DynamicInterestDiscriminator(max_interests=4, fixed_interests=5)


def test_active_interests_from_the_count():
    np.testing.assert_array_equal(active_interests(tf.constant([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])),
                                  [[1, 0, 0], [1, 1, 1], [1, 1, 0]])


# ------------------------------------------------------------------------- DIA
def _allocator_args(batch=2, count=2, k=4):
    z = tf.one_hot([count - 1] * batch, k)
    return [tf.random.normal([batch, 6, 8]), tf.tile(IDS, [batch // 2, 1]), z, active_interests(z),
            tf.random.normal([batch, 8])]


def test_allocator_layer(tmp_path):
    run_layer_test(DynamicInterestAllocator, {"max_interests": 4}, _allocator_args(),
                   [(2, 4, 8), (2, 6), (2, 6)], tmp_path)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_no_item_goes_to_an_interest_beyond_the_count(count):
    dia = DynamicInterestAllocator(max_interests=4)
    args = _allocator_args(batch=64, count=count)
    for training in (True, False):
        interests, actions, log_probs = dia(*args, training=training)
        real = args[1].numpy() > 0
        assert np.all(actions.numpy()[real] < count) and np.all(actions.numpy()[real] >= 0)
        assert np.all(actions.numpy()[~real] == -1) and np.all(log_probs.numpy()[~real] == 0)
        # Interests beyond the count never move from their initial vector.
        np.testing.assert_allclose(interests[:, count:], tf.tile(args[4][:, None], [1, 4 - count, 1]), atol=1e-6)


def test_interests_are_averages_of_their_items_and_the_initial_vector():
    dia = DynamicInterestAllocator(max_interests=2)
    items, ids, z, active, init = _allocator_args(batch=2, count=2, k=2)
    interests, actions, _ = dia(items, ids, z, active, init)
    for row in range(2):
        for j in range(2):
            members = items[row].numpy()[actions[row].numpy() == j]
            expected = (init[row].numpy() + members.sum(0)) / (1 + len(members))
            np.testing.assert_allclose(interests[row, j], expected, rtol=1e-5, atol=1e-6)


def test_episode_windows():
    windows, targets, keep = episode_windows(tf.constant([[0, 3, 4, 5]]), tf.constant([[0, 4, 5, 6]]), 3)
    assert windows.numpy().tolist() == [[0, 0, 3], [0, 3, 4], [3, 4, 5]]
    assert targets.numpy().tolist() == [4, 5, 6] and keep.numpy().tolist() == [False, True, True, True]


# ----------------------------------------------------------------------- model
@pytest.mark.parametrize("kwargs", [{}, {"loss": "ce"}, {"scoring": "policy"}, {"fixed_interests": 2}])
def test_model_scores_and_gradients_reach_every_weight(kwargs):
    model = RDRSR(V, L, embed_dim=16, window_len=5, **kwargs)
    scores = model.score(BATCH)
    assert scores.shape == (2, V) and np.all(np.isneginf(scores[:, :2]))
    with tf.GradientTape() as tape:
        value = model.sequence_loss(BATCH, training=True)
    assert np.isfinite(value.numpy())
    grads = tape.gradient(value, model.trainable_variables)
    missing = [v.name for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing, missing


def test_interests_inspection():
    model = RDRSR(V, L, window_len=6, max_interests=3)
    found = model.interests(BATCH)
    count, assignment = found["count"].numpy(), found["assignment"].numpy()
    assert found["item_ids"].numpy().tolist() == ITEMS[:, -6:].numpy().tolist()
    assert np.all((1 <= count) & (count <= 3))
    assert assignment[0, 0] == -1 and np.all(assignment[0, 1:] >= 0)  # row 0's window starts with padding
    assert np.all(assignment < count[:, None])
    assert RDRSR(V, L, window_len=6, fixed_interests=2).interests(BATCH)["count"].numpy().tolist() == [2, 2]


def test_mixed_precision():
    from tfrec_dyn.training.strategy import precision_scope

    with precision_scope(True):
        model = RDRSR(V, L, embed_dim=16, window_len=5)
    assert np.isfinite(model.sequence_loss(BATCH, training=True).numpy())
    policies = {layer.dtype_policy.name for layer in model._flatten_layers(include_self=False)}
    assert policies == {"mixed_float16"}, policies


def test_bad_arguments():
    with pytest.raises(ValueError, match="window_len"):
        RDRSR(V, 5, window_len=10)
    with pytest.raises(ValueError, match="scoring"):
        RDRSR(V, L, scoring="mean")
    with pytest.raises(ValueError, match="loss"):
        RDRSR(V, L, loss="bpr")


@pytest.mark.slow
def test_learns_users_with_several_interests():
    """Six disjoint clusters of five items; each user draws every item from the
    two clusters they like. After training, a user's top 10 (seen items
    included) should be their two clusters; popularity alone would get 1/3."""
    rng = np.random.default_rng(0)
    clusters = np.arange(30).reshape(6, 5) + 2
    sequences, liked = [], []
    for _ in range(600):
        pair = rng.choice(6, 2, replace=False)
        liked.append(set(clusters[pair].ravel()))
        sequences.append(rng.choice(clusters[pair].ravel(), size=12))
    vocab = 32
    model = RDRSR(vocab, 10, embed_dim=32, window_len=10, max_interests=3, num_negatives=10)
    model.compile(optimizer=keras.optimizers.Adam(0.005))
    model.fit(training_dataset(sequences[:500], vocab, 10, 64, num_negatives=10, seed=0), epochs=15, verbose=0)
    held_out = np.stack([s[-10:] for s in sequences[500:]]).astype(np.int32)
    top = model.recommend({"item_ids": held_out}, k=10, exclude_seen=False)[0].numpy()
    precision = np.mean([len(set(row) & like) / 10 for row, like in zip(top, liked[500:])])
    assert precision > 0.8, precision
