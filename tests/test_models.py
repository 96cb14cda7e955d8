"""Every model: shapes, gradients, scoring rules, save/load with identical top-K,
and learning a pattern with a known answer."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.data.input_pipeline import pack_rows, training_dataset
from tfrec_dyn.models import MODELS, Caser, PopRec, SASRec, build_model

V, L = 30, 8
ITEMS = tf.constant([[0, 0, 0, 4, 5, 6, 7, 8], [2, 3, 4, 5, 6, 7, 8, 9]], tf.int32)
BATCH = {"item_ids": ITEMS, "targets": tf.concat([ITEMS[:, 1:], tf.constant([[9], [10]])], 1),
         "negatives": tf.fill([2, L, 1], 20)}
NEURAL = ["sasrec", "gru4rec", "caser", "retr", "hstu"]
# Arguments a model needs to fit the tiny batch above (the default windows of 10 and o=99 do not;
# its negatives are one per position).
SMALL = {"rdrsr": {"window_len": 4, "num_negatives": 1}, "adasplit": {"window_len": 4},
         "gsasrec": {"loss": "bce"}, "hstu": {"loss": "bce"}}


@pytest.mark.parametrize("name", NEURAL)
def test_shapes_and_padding(name):
    model = build_model(name, V, L)
    hidden = model(BATCH)
    assert hidden.shape[:2] == (2, L)
    np.testing.assert_array_equal(hidden[0, :3].numpy(), 0.0)  # padding positions are zero
    scores = model.score(BATCH)
    assert scores.shape == (2, V)
    assert np.all(np.isneginf(scores[:, :2]))  # padding and OOV never recommended


@pytest.mark.parametrize("name", NEURAL)
@pytest.mark.parametrize("loss", ["bce", "bpr", "ce"])
def test_gradients_reach_every_weight(name, loss):
    model = build_model(name, V, L, loss=loss)
    model(BATCH)
    with tf.GradientTape() as tape:
        value = model.sequence_loss(BATCH, training=True)
    grads = tape.gradient(value, model.trainable_variables)
    assert np.isfinite(value.numpy())
    # HSTU's time buckets learn only from timestamps, which BATCH has not (see
    # test_hstu_reads_timestamps_through_its_time_bias); every other weight always learns.
    missing = [v.name for v, g in zip(model.trainable_variables, grads) if g is None and "time_bias" not in v.name]
    assert not missing, missing


@pytest.mark.parametrize("name", NEURAL)
def test_prediction_uses_only_the_past(name):
    """The representation at position t must not change when later items change."""
    model = build_model(name, V, L)
    changed = tf.tensor_scatter_nd_update(ITEMS, [[1, 7]], [25])
    np.testing.assert_allclose(model({"item_ids": changed})[:, :7], model({"item_ids": ITEMS})[:, :7], atol=1e-5)


def test_recommend_excludes_seen_items_unless_asked():
    model = SASRec(V, L)
    ids, scores = model.recommend({"item_ids": ITEMS}, k=V - 2 - 8)
    assert not set(ids[1].numpy()) & set(ITEMS[1].numpy())
    ids, _ = model.recommend({"item_ids": ITEMS}, k=V - 2, exclude_seen=False)
    assert set(ITEMS[1].numpy()) <= set(ids[1].numpy())
    assert 0 not in ids.numpy() and 1 not in ids.numpy()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_gives_identical_top_k(name, tmp_path):
    model = build_model(name, V, L, **SMALL.get(name, {}))
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(tf.data.Dataset.from_tensors(BATCH), epochs=2, verbose=0)  # non-trivial weights
    model.save(str(tmp_path / name))
    restored = keras.models.load_model(str(tmp_path / name), compile=False)
    assert type(restored) is type(model)
    np.testing.assert_allclose(restored.score(BATCH)[:, 2:], model.score(BATCH)[:, 2:], rtol=1e-6)
    np.testing.assert_array_equal(restored.recommend(BATCH, k=5)[0], model.recommend(BATCH, k=5)[0])
    assert restored.get_config() == model.get_config()


@pytest.mark.parametrize("name", ["sasrec", "retr", "hstu", "rdrsr", "adasplit"])
def test_item_initializer_independent_of_the_catalogue(name):
    """The models on `ItemPositionEmbedding`: Glorot's scale shrinks as 1/sqrt(V); N(0, 1/d)
    (VarianceScaling over fan_out) does not, and round trips through the config."""
    unit = {"class_name": "VarianceScaling", "config": {"mode": "fan_out", "distribution": "untruncated_normal"}}

    def item_std(vocab_size, **kwargs):
        model = build_model(name, vocab_size, L, embed_dim=16, **SMALL.get(name, {}), **kwargs)
        model({"item_ids": ITEMS})
        return float(np.std(model.output_embeddings().numpy()))

    assert item_std(50_000) < item_std(500) / 5  # glorot_uniform, the reference code's
    small, large = item_std(500, embeddings_initializer=unit), item_std(50_000, embeddings_initializer=unit)
    np.testing.assert_allclose([small, large], 0.25, rtol=0.1)  # 1/sqrt(16) at either size
    model = build_model(name, V, L, **SMALL.get(name, {}), embeddings_initializer=unit)
    assert type(model).from_config(model.get_config()).get_config() == model.get_config()


def test_poprec_ranks_by_training_counts():
    model = PopRec(V, L)
    model.compile()
    targets = tf.constant([[0, 5, 5, 5, 7, 7, 9, 0]])
    model.fit(tf.data.Dataset.from_tensors({"item_ids": targets, "targets": targets}), epochs=1, verbose=0)
    ids, _ = model.recommend({"item_ids": tf.constant([[0, 0, 0, 0, 0, 0, 0, 2]])}, k=3)
    assert ids.numpy().tolist() == [[5, 7, 9]]


def test_caser_window_limits_what_a_position_sees():
    """With window=2, position t depends only on items t-1 and t."""
    model = Caser(V, L, window=2)
    base = model({"item_ids": ITEMS})
    changed = tf.tensor_scatter_nd_update(ITEMS, [[1, 4]], [25])  # change position 4
    out = model({"item_ids": changed})
    np.testing.assert_allclose(out[1, 6:], base[1, 6:], atol=1e-6)  # positions 6, 7 do not see it
    assert not np.allclose(out[1, 4:6], base[1, 4:6])


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="loss"):
        SASRec(V, L, loss="hinge")
    with pytest.raises(ValueError, match="vocab_size"):
        SASRec(2, L)
    with pytest.raises(ValueError, match="unknown model 'bert'"):
        build_model("bert", V, L)


@pytest.mark.slow
@pytest.mark.parametrize("name", NEURAL)
def test_learns_a_deterministic_successor_pattern(name):
    """Item i is always followed by item i+1 (cyclically): after training, the
    next item must be top-1 for most held-out histories.  Full-softmax loss:
    with sampled negatives that are never history items, nothing tells the
    model that items seen earlier are not next, so exact top-1 is not its goal."""
    rng = np.random.default_rng(0)
    num_items = 20
    sequences = []
    for _ in range(200):
        start = rng.integers(num_items)
        sequences.append((start + np.arange(rng.integers(5, 12))) % num_items + 2)
    vocab = num_items + 2
    dataset = training_dataset(sequences, vocab, 10, 32, num_negatives=0, seed=0)
    model = build_model(name, vocab, 10, loss="ce", **({"window": 3} if name == "caser" else {}))
    model.compile(optimizer=keras.optimizers.Adam(0.003))
    history = model.fit(dataset, epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    histories = np.zeros((num_items, 10), np.int32)
    histories[:, -3:] = (np.arange(num_items)[:, None] + np.arange(3)) % num_items + 2
    top1 = model.recommend({"item_ids": histories}, k=1, exclude_seen=False)[0].numpy()[:, 0]
    expected = (np.arange(num_items) + 3) % num_items + 2
    assert (top1 == expected).mean() >= 0.9


@pytest.mark.parametrize("name", NEURAL)
def test_mixed_precision_reaches_every_sublayer(name):
    """Sublayers made in `build()` (after the policy scope has closed) take their
    parent's policy, so the whole model computes in float16 when asked."""
    from tfrec_dyn.training.strategy import precision_scope

    with precision_scope(True):
        model = build_model(name, V, L, **SMALL.get(name, {}))
    value = model.sequence_loss(BATCH, training=True)
    assert np.isfinite(value.numpy())
    policies = {layer.name: layer.dtype_policy.name for layer in model._flatten_layers(include_self=False)}
    assert set(policies.values()) == {"mixed_float16"}, policies


def test_hstu_reads_timestamps_through_its_time_bias():
    """With timestamps the representations change (the time-gap bias), gradients
    reach the time buckets, and a window without them is scored by position only."""
    from tfrec_dyn.models import HSTU

    model = HSTU(V, L, dropout=0.0, loss="bce")
    timestamps = tf.cast(tf.range(L)[tf.newaxis] * tf.constant([[60], [86400]]), tf.float32)
    with_time = {"item_ids": ITEMS, "timestamp": timestamps}
    model(with_time)
    for block in model.blocks:  # non-zero time buckets, so that the gaps matter
        block.relative_bias.time_bias.assign(tf.range(129, dtype=tf.float32) / 10.0)
    assert not np.allclose(model(with_time), model({"item_ids": ITEMS}), atol=1e-4)
    with tf.GradientTape() as tape:
        value = model.sequence_loss({**BATCH, "timestamp": timestamps}, training=True)
    time_biases = [block.relative_bias.time_bias for block in model.blocks]
    assert all(g is not None and np.any(tf.convert_to_tensor(g).numpy() != 0)
               for g in tape.gradient(value, time_biases))


def test_sasrec_computes_the_same_on_packed_rows():
    """Packed rows (`pack_rows`) give every user's positions the representations and the loss
    of the unpacked batch: attention stays in the segment, positions keep their embeddings."""
    keras.utils.set_random_seed(0)
    items = tf.constant([[0, 0, 0, 5, 6, 7], [0, 0, 0, 0, 8, 9], [3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 10]])
    targets = tf.concat([items[:, 1:], tf.constant([[3], [4], [9], [2]])], 1) * tf.cast(items > 0, tf.int32)
    batch = {"item_ids": items, "targets": targets,
             "negatives": tf.random.uniform([4, 6, 1], 2, 30, tf.int32)}
    packed = pack_rows(batch)
    assert packed["item_ids"].shape[0] == 2  # 3 + 2 + 6 + 1 positions in two rows of 6
    model = SASRec(vocab_size=30, max_len=6, embed_dim=8, num_heads=2, dropout=0.0)
    unpacked_out, packed_out = model(batch).numpy(), model(packed).numpy()
    rows, columns = np.nonzero(packed["segments"].numpy())
    users = packed["segments"].numpy()[rows, columns] - 1
    np.testing.assert_allclose(packed_out[rows, columns], unpacked_out[users, packed["positions"].numpy()[rows, columns]],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.sequence_loss(packed), model.sequence_loss(batch), rtol=1e-5)
