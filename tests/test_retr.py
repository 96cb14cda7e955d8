"""RETR: Gumbel-softmax, PathwayRouter, PathMultiHeadAttention, PathTransformerBlock, the model."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from layer_harness import run_layer_test
from tfrec_dyn.data.input_pipeline import training_dataset
from tfrec_dyn.layers import PathMultiHeadAttention, PathTransformerBlock, PathwayRouter, gumbel_softmax
from tfrec_dyn.layers.masks import attention_mask
from tfrec_dyn.models import RETR

ITEMS = tf.constant([[0, 0, 4, 5, 6, 7], [2, 3, 4, 5, 6, 7]], tf.int32)
PAD = tf.cast(ITEMS > 0, tf.float32)


# ---------------------------------------------------------------- Gumbel-softmax
def test_gumbel_sample_is_exactly_one_hot_with_soft_gradients():
    logits = tf.Variable(tf.math.log([[0.2, 0.8], [0.6, 0.4]]))
    with tf.GradientTape() as tape:
        sample, soft = gumbel_softmax(logits, 0.8)
        value = tf.reduce_sum(sample * [[1.0, 2.0], [3.0, -1.0]])
    assert set(np.unique(sample.numpy())) <= {0.0, 1.0}
    np.testing.assert_array_equal(sample.numpy().sum(-1), 1.0)
    grad = tape.gradient(value, logits).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_temperature_sharpens_the_soft_sample():
    logits = tf.math.log([[0.3, 0.7]])
    noise = tf.constant([[0.1, -0.2]])
    soft = {tau: gumbel_softmax(logits, tau, noise=noise)[1].numpy()[0, 1] for tau in (0.4, 0.8, 1.0, 2.0)}
    assert soft[0.4] > soft[0.8] > soft[1.0] > soft[2.0] > 0.5  # same noise, same arg-max, sharper at low τ
    np.testing.assert_allclose(soft[1.0], tf.nn.softmax(logits + noise)[0, 1], rtol=1e-6)


# ------------------------------------------------------------------ PathwayRouter
def test_pathway_router_layer(tmp_path):
    z = tf.random.normal([2, 6, 8])
    run_layer_test(PathwayRouter, {"temperature": 0.8}, [z, PAD, PAD], (2, 6), tmp_path)


def test_router_mask_is_binary_and_never_routes_padding():
    router = PathwayRouter(temperature=0.8)
    z = tf.random.normal([2, 6, 8])
    for training in (True, False):
        for _ in range(20):
            mask = router(z, PAD, PAD, training=training).numpy()
            assert set(np.unique(mask)) <= {0.0, 1.0}
            assert np.all(mask[0, :2] == 0.0)


def test_inference_routing_is_deterministic_and_training_routing_samples():
    router = PathwayRouter(temperature=0.8)
    z = tf.random.normal([4, 6, 8])
    pad = tf.ones([4, 6])
    inference = {router(z, pad, pad).numpy().tobytes() for _ in range(5)}
    training = {router(z, pad, pad, training=True).numpy().tobytes() for _ in range(20)}
    assert len(inference) == 1 and len(training) > 1


def test_gradients_reach_the_router_through_the_hard_mask():
    block = PathTransformerBlock(num_heads=2)
    z = tf.random.normal([2, 6, 8])
    with tf.GradientTape() as tape:
        out, _ = block(z, PAD, ITEMS, training=True)
        value = tf.reduce_sum(out * tf.random.normal(out.shape))
    router_weights = block.router.trainable_weights
    grads = tape.gradient(value, router_weights)
    assert len(router_weights) == 8
    for weight, grad in zip(router_weights, grads):
        assert grad is not None and np.abs(grad.numpy()).sum() > 0, weight.name


def test_temperature_changes_the_soft_distribution_not_pi():
    z = tf.random.normal([2, 6, 8])
    details = {}
    for tau in (0.4, 2.0):
        router = PathwayRouter(temperature=tau)
        router(z, PAD, PAD)
        if details:
            router.set_weights(first.get_weights())
        else:
            first = router
        tf.random.set_seed(7)
        details[tau] = router(z, PAD, PAD, training=True, return_details=True)
    np.testing.assert_allclose(details[0.4]["probabilities"], details[2.0]["probabilities"], rtol=1e-6)
    soft_low, soft_high = details[0.4]["soft"].numpy(), details[2.0]["soft"].numpy()
    # Same Gumbel draw: the low temperature is farther from uniform everywhere.
    assert np.all(np.abs(soft_low - 0.5) >= np.abs(soft_high - 0.5) - 1e-6)
    assert np.abs(soft_low - soft_high).max() > 0.05


def test_hierarchical_masks_are_monotone_and_the_ablation_is_not_forced_to_be():
    model = RETR(vocab_size=30, max_len=6, num_blocks=3)
    random_ids = tf.random.uniform([64, 6], 2, 30, tf.int32)
    masks = model.pathways({"item_ids": random_ids}).numpy()
    assert np.all(masks[:, 1:] <= masks[:, :-1])
    _, training_masks = model.encode({"item_ids": random_ids}, training=True)
    assert np.all(training_masks.numpy()[:, 1:] <= training_masks.numpy()[:, :-1])

    router = PathwayRouter(hierarchical=False)
    z = tf.random.normal([64, 6, 8])
    previous = tf.zeros([64, 6])
    mask = router(z, previous, tf.ones([64, 6]), training=True).numpy()
    assert mask.sum() > 64  # routes items the previous layer had dropped


def test_empty_pathway_keeps_the_most_probable_allowed_behaviour():
    router = PathwayRouter()
    z = tf.random.normal([2, 6, 8])
    router(z, PAD, PAD)
    kernel, bias = router.route_output.get_weights()
    router.route_output.set_weights([kernel * 0.01, np.array([20.0, -20.0], np.float32)])  # always "drop"
    previous = tf.constant([[0, 0, 1, 0, 1, 0], [1, 1, 1, 1, 1, 1]], tf.float32)
    for training in (False, True):
        details = router(z, previous, PAD, training=training, return_details=True)
        mask = details["mask"].numpy()
        np.testing.assert_array_equal(mask.sum(-1), [1.0, 1.0])
        assert mask[0, 2] + mask[0, 4] == 1.0  # within the previous mask
        keep = details["probabilities"].numpy()[..., 1]
        assert np.argmax(mask[0]) == [2, 4][np.argmax(keep[0, [2, 4]])]
    # A history without any real item stays empty (and finite downstream).
    assert router(z, tf.zeros([2, 6]), tf.zeros([2, 6])).numpy().sum() == 0.0


# ------------------------------------------------------- PathMultiHeadAttention
def test_path_attention_layer(tmp_path):
    run_layer_test(PathMultiHeadAttention, {"num_heads": 2}, [tf.random.normal([2, 6, 8]), PAD, ITEMS],
                   (2, 6, 8), tmp_path)


def test_all_ones_mask_equals_ordinary_causal_attention():
    z = tf.random.normal([2, 6, 8])
    path = PathMultiHeadAttention(num_heads=2)
    out = path(z, tf.ones([2, 6]), ITEMS)
    plain = keras.layers.MultiHeadAttention(2, 4)
    plain(z, z, z, attention_mask=attention_mask(ITEMS))
    plain.set_weights(path.attention.get_weights())
    np.testing.assert_allclose(out, plain(z, z, z, attention_mask=attention_mask(ITEMS)), rtol=1e-5, atol=1e-6)


def test_unrouted_queries_and_keys():
    z = tf.random.normal([1, 6, 8])
    ids = tf.constant([[1, 2, 3, 4, 5, 6]])
    mask = tf.constant([[1.0, 0, 1, 1, 1, 0]])
    path = PathMultiHeadAttention(num_heads=1)
    out = path(z, mask, ids).numpy()
    # A dropped query (position 5) has a zero query: uniform attention over positions 0..5.
    values = path.attention._value_dense(z)[0, :, 0, :]
    np.testing.assert_allclose(out[0, 5], path.attention._output_dense(
        tf.reduce_mean(values, 0)[tf.newaxis, tf.newaxis, tf.newaxis])[0, 0], rtol=1e-4, atol=1e-5)
    # With mask_keys, the dropped position 1 is invisible to every other query.
    strict = PathMultiHeadAttention(num_heads=1, mask_keys=True)
    strict(z, mask, ids)
    strict.set_weights(path.get_weights())
    changed = tf.tensor_scatter_nd_add(z, [[0, 1]], [tf.ones([8]) * 5.0])
    before, after = strict(z, mask, ids).numpy(), strict(changed, mask, ids).numpy()
    np.testing.assert_allclose(np.delete(after, 1, axis=1), np.delete(before, 1, axis=1), rtol=1e-5, atol=1e-5)
    assert not np.allclose(path(changed, mask, ids).numpy()[0, 2:], out[0, 2:])


# ----------------------------------------------------------- PathTransformerBlock
def test_path_transformer_block_config_and_save_load(tmp_path):
    block = PathTransformerBlock(num_heads=2, temperature=0.5, keep_rate_weight=0.1)
    z = tf.random.normal([2, 6, 8])
    out, mask = block(z, PAD, ITEMS)
    assert out.shape == (2, 6, 8) and mask.shape == (2, 6)
    np.testing.assert_array_equal(out.numpy()[0, :2], 0.0)
    assert keras.utils.get_registered_name(PathTransformerBlock) == "tfrec_dyn>PathTransformerBlock"
    clone = PathTransformerBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()

    inputs = [keras.Input((6, 8)), keras.Input((6,)), keras.Input((6,), dtype=tf.int32)]
    model = keras.Model(inputs, block(*inputs))
    model.save(str(tmp_path / "block"))
    restored = keras.models.load_model(str(tmp_path / "block"))
    for got, want in zip(restored([z, PAD, ITEMS]), model([z, PAD, ITEMS])):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_block_without_router_routes_every_real_item():
    block = PathTransformerBlock(num_heads=2, use_router=False)
    _, mask = block(tf.random.normal([2, 6, 8]), tf.zeros([2, 6]), ITEMS, training=True)
    np.testing.assert_array_equal(mask, PAD)
    assert not block.trainable_weights or all("router" not in w.name for w in block.trainable_weights)


# ---------------------------------------------------------------------- the model
def test_keep_rate_penalty_is_added_in_training_only():
    model = RETR(vocab_size=30, max_len=6, keep_rate_weight=0.5)
    model({"item_ids": ITEMS}, training=True)
    assert len(model.losses) == 2  # one per block
    assert all(0 < float(loss) <= 0.5 for loss in model.losses)
    model({"item_ids": ITEMS}, training=False)
    assert not model.losses


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="temperature"):
        RETR(vocab_size=30, max_len=6, temperature=0)
    with pytest.raises(ValueError, match="num_blocks"):
        RETR(vocab_size=30, max_len=6, num_blocks=0)
    with pytest.raises(ValueError, match="keep_rate_weight"):
        PathwayRouter(keep_rate_weight=-1)


def _cue_noise_answer_sequences(rng, count, cues=20, noise=20):
    """Triples (cue c, random noise item, answer c + cues): the answer is predictable
    only by looking back past the noise item to the cue."""
    def triples(n):
        c = rng.integers(cues, size=n) + 2
        return np.stack([c, rng.integers(noise, size=n) + 2 + 2 * cues, c + cues], 1).reshape(-1)
    return triples, [triples(5)[rng.integers(3):][:rng.integers(5, 13)] for _ in range(count)]


@pytest.mark.slow
def test_learns_a_pattern_that_needs_one_routed_look_back():
    """RETR must learn "after cue c and one noise item comes answer(c)", with and
    without the keep-rate penalty; the penalty makes the router drop most
    behaviours while the pattern is still predicted (what the pathway is found
    to need). The router does not single out the noise items on this data."""
    kept = {}
    for keep_rate_weight in (0.0, 0.3):
        tf.random.set_seed(0)
        rng = np.random.default_rng(0)
        triples, sequences = _cue_noise_answer_sequences(rng, 2000)
        vocab, max_len = 62, 12
        model = RETR(vocab, max_len, embed_dim=32, dropout=0.0, loss="ce", keep_rate_weight=keep_rate_weight)
        model.compile(optimizer=keras.optimizers.Adam(0.005))
        model.fit(training_dataset(sequences, vocab, max_len, 64, num_negatives=0, seed=0), epochs=15, verbose=0)

        full = np.stack([triples(4) for _ in range(200)])
        histories = np.zeros((200, max_len), np.int32)
        histories[:, 1:] = full[:, :11]  # ends with the noise item after a cue
        top1 = model.recommend({"item_ids": histories}, k=1, exclude_seen=False)[0].numpy()[:, 0]
        assert (top1 == full[:, 11]).mean() >= 0.9, keep_rate_weight
        kept[keep_rate_weight] = model.pathways({"item_ids": histories}).numpy()[:, -1][histories > 0].mean()
    assert kept[0.3] < 0.5 and kept[0.3] < kept[0.0] - 0.1, kept
