import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from layer_harness import run_layer_test
from tfrec_dyn.layers import (ByteDropout, CausalTransformerBlock, HSTUBlock, ItemPositionEmbedding,
                              LastAxisLayerNormalization, MatmulAttention, RelativeAttentionBias, attention_mask,
                              causal_mask, padding_mask)

ITEMS = tf.constant([[0, 0, 4, 5, 6], [2, 3, 4, 5, 6]], tf.int32)


def test_padding_mask_marks_only_real_items():
    assert padding_mask(ITEMS).numpy().tolist() == [[False, False, True, True, True], [True] * 5]


def test_causal_mask_is_lower_triangular():
    np.testing.assert_array_equal(causal_mask(3).numpy(), np.tril(np.ones((3, 3), bool)))


def test_attention_mask_never_sees_future_or_padding():
    mask = attention_mask(ITEMS).numpy()
    for b in range(2):
        for i in range(5):
            for j in range(5):
                expected = j <= i and ITEMS.numpy()[b, j] != 0
                assert mask[b, i, j] == expected, (b, i, j)
    bidirectional = attention_mask(ITEMS, causal=False).numpy()
    assert bidirectional[0, 2, 4] and not bidirectional[0, 2, 0]


def test_item_position_embedding(tmp_path):
    layer, out = run_layer_test(ItemPositionEmbedding, {"vocab_size": 10, "embed_dim": 8, "max_len": 5},
                                [ITEMS], (2, 5, 8), tmp_path)
    # Padding positions are exactly zero; item 4 at position 2 and at position 4
    # differs only by the position embeddings.
    np.testing.assert_array_equal(out[0, :2].numpy(), 0.0)
    moved = layer(tf.constant([[0, 0, 0, 0, 4]]))
    positions = layer.position_embedding.embeddings
    np.testing.assert_allclose(moved[0, 4] - out[0, 2], positions[4] - positions[2], atol=1e-5)


def test_item_position_embedding_rejects_bad_arguments():
    with pytest.raises(ValueError, match="embed_dim"):
        ItemPositionEmbedding(vocab_size=10, embed_dim=0, max_len=5)


def test_causal_transformer_block(tmp_path):
    x = tf.random.normal([2, 5, 8])
    run_layer_test(CausalTransformerBlock, {"num_heads": 2}, [x, ITEMS], (2, 5, 8), tmp_path)


def test_transformer_block_does_not_look_ahead_or_at_padding():
    block = CausalTransformerBlock(num_heads=2)
    x = tf.random.normal([1, 5, 8])
    items = tf.constant([[0, 3, 4, 5, 6]])
    out = block(x, items)
    # Changing the future (position 4) leaves positions 0..3 unchanged ...
    changed_future = tf.concat([x[:, :4], x[:, 4:] + 10.0], 1)
    np.testing.assert_allclose(block(changed_future, items)[:, :4], out[:, :4], atol=1e-5)
    # ... and changing the padding position's vector changes nothing at all.
    changed_padding = tf.concat([x[:, :1] + 10.0, x[:, 1:]], 1)
    np.testing.assert_allclose(block(changed_padding, items), out, atol=1e-5)
    np.testing.assert_array_equal(out[0, 0].numpy(), 0.0)


def test_transformer_block_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="num_heads=3"):
        CausalTransformerBlock(num_heads=3)(tf.zeros([1, 2, 8]), tf.constant([[1, 2]]))


def test_byte_dropout(tmp_path):
    x = tf.random.normal([2, 5, 8])
    layer, out = run_layer_test(ByteDropout, {"rate": 0.5}, [x], (2, 5, 8), tmp_path, has_weights=False)
    np.testing.assert_array_equal(out, x)  # not training: the identity
    with pytest.raises(ValueError, match="rate"):
        ByteDropout(1.0)


@pytest.mark.parametrize("rate, dropped", [(0.5, 0.5), (0.2, 51 / 256)])
def test_byte_dropout_drops_its_rate_and_keeps_the_expectation(rate, dropped):
    tf.random.set_seed(0)
    x = tf.ones([400, 1000])
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = ByteDropout(rate)(x, training=True)
    kept = out.numpy() != 0
    # Kept elements are scaled so that the mean is the input's: 1 / (1 - the rate in 256ths).
    np.testing.assert_allclose(out.numpy()[kept], 1 / (1 - dropped), rtol=1e-6)
    # 400k Bernoulli draws: the share dropped is within 5 standard deviations of the rate.
    assert abs((~kept).mean() - dropped) < 5 * np.sqrt(dropped * (1 - dropped) / kept.size)
    # Each element's gradient is its mask times the scale; masks differ between calls.
    np.testing.assert_allclose(tape.gradient(out, x), out)
    assert (ByteDropout(rate)(x, training=True).numpy() != 0).tolist() != kept.tolist()


def test_matmul_attention(tmp_path):
    x = tf.random.normal([2, 5, 8])
    run_layer_test(MatmulAttention, {"num_heads": 2, "key_dim": 4}, [x, x], (2, 5, 8), tmp_path)


@pytest.mark.parametrize("num_heads", [1, 2])
def test_matmul_attention_is_keras_attention_with_its_checkpoint(num_heads, tmp_path):
    """A checkpoint of Keras' MultiHeadAttention loads into MatmulAttention, which
    then gives Keras' outputs and attention scores."""
    x, mask = tf.random.normal([2, 5, 8]), attention_mask(ITEMS)
    keras_attention = keras.layers.MultiHeadAttention(num_heads, 8 // num_heads, dropout=0.3)
    want, want_scores = keras_attention(x, x, attention_mask=mask, return_attention_scores=True)
    path = tf.train.Checkpoint(attention=keras_attention).save(str(tmp_path / "ckpt"))
    attention = MatmulAttention(num_heads, 8 // num_heads, dropout=0.3)
    attention(x, x, attention_mask=mask)
    tf.train.Checkpoint(attention=attention).restore(path).assert_consumed()
    got, got_scores = attention(x, x, attention_mask=mask, return_attention_scores=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="attention_axes"):
        MatmulAttention(1, 4, attention_axes=(2,))


def test_last_axis_layer_normalization(tmp_path):
    run_layer_test(LastAxisLayerNormalization, {"epsilon": 1e-8}, [tf.random.normal([2, 5, 8])], (2, 5, 8), tmp_path)
    with pytest.raises(ValueError, match="axis"):
        LastAxisLayerNormalization(axis=1)


def test_last_axis_layer_normalization_is_keras_layer_normalization_with_its_gradient():
    """Same outputs and gradients (inputs, gamma, beta) as Keras' layer with the same weights."""
    x = tf.random.normal([3, 4, 8])
    keras_norm = keras.layers.LayerNormalization(epsilon=1e-8)
    keras_norm(x)
    keras_norm.set_weights([np.random.default_rng(0).normal(size=8), np.random.default_rng(1).normal(size=8)])
    norm = LastAxisLayerNormalization(epsilon=1e-8)
    norm(x)
    norm.set_weights(keras_norm.get_weights())
    upstream = tf.random.normal(x.shape)
    results = []
    for layer in (keras_norm, norm):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * upstream)
        results.append([y, *tape.gradient(loss, [x, *layer.trainable_weights])])
    for got, want in zip(*results[::-1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_hstu_block_through_the_harness(tmp_path):
    x = tf.random.normal([2, 5, 8])
    timestamps = tf.constant([[0.0, 0.0, 10.0, 100.0, 5000.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    run_layer_test(HSTUBlock, {"max_len": 5, "num_heads": 2, "attention_dropout": 0.1, "attention_scale": "items"},
                   [x, ITEMS, timestamps], (2, 5, 8), tmp_path)


def test_hstu_block_does_not_look_ahead_or_at_padding():
    block = HSTUBlock(max_len=5, num_heads=2)
    x = tf.random.normal([1, 5, 8])
    items = tf.constant([[0, 3, 4, 5, 6]])
    base = block(x, items)
    changed = block(tf.tensor_scatter_nd_update(x, [[0, 4]], [tf.ones(8)]), items)
    np.testing.assert_allclose(changed[0, :4], base[0, :4], atol=1e-6)  # the future does not leak
    padded = block(tf.tensor_scatter_nd_update(x, [[0, 0]], [tf.ones(8)]), items)
    np.testing.assert_allclose(padded, base, atol=1e-6)  # nor does a padding position
    np.testing.assert_array_equal(base[0, 0], 0.0)


def test_relative_attention_bias_is_position_plus_time_bucket(tmp_path):
    run_layer_test(RelativeAttentionBias, {"max_len": 3}, [tf.constant([[0, 5, 6]]), tf.constant([[0.0, 1.0, 30.0]])],
                   (1, 3, 3), tmp_path)
    bias = RelativeAttentionBias(max_len=3, num_time_buckets=4)
    bias.build(None)
    bias.position_bias.assign([1.0, 2.0, 3.0])
    bias.time_bias.assign([0.0, 10.0, 20.0, 30.0, 40.0])
    # Gaps 1 s -> bucket 0, 2 s -> ln 2 / 0.301 = 2.3 -> 2, 100 s -> 15.3 -> clipped to 4.
    got = bias(tf.constant([[2, 3, 4]]), tf.constant([[0.0, 2.0, 102.0]])).numpy()[0]
    want = [[1 + 0, 2 + 20, 3 + 40],
            [2 + 20, 1 + 0, 2 + 40],
            [3 + 40, 2 + 40, 1 + 0]]
    # Keys after the query (j > i) get the distance-0 position bias; attention masks them anyway.
    np.testing.assert_allclose(np.tril(got), np.tril(want))
    np.testing.assert_allclose(bias(tf.constant([[2, 3, 4]])).numpy()[0], np.tril([[1, 0, 0], [2, 1, 0], [3, 2, 1]])
                               + np.triu(np.ones((3, 3)), 1))


def test_hstu_items_scale_does_not_depend_on_the_padding():
    """attention_scale="items" divides by the items a query attends to, so
    more left padding leaves the real positions unchanged; "window" divides
    by the window length, so it does not."""
    x = tf.random.normal([1, 3, 8], seed=1)
    items = tf.constant([[3, 4, 5]])
    padded_x = tf.concat([tf.zeros([1, 2, 8]), x], axis=1)
    padded_items = tf.constant([[0, 0, 3, 4, 5]])
    for scale, same in (("items", True), ("window", False)):
        block = HSTUBlock(max_len=5, attention_scale=scale, attention_dropout=0.0)
        short, long = block(x, items)[0], block(padded_x, padded_items)[0, 2:]
        assert np.allclose(short, long, atol=1e-5) == same, scale
