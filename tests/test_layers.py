import numpy as np
import pytest
import tensorflow as tf

from layer_harness import run_layer_test
from tfrec_dyn.layers import CausalTransformerBlock, ItemPositionEmbedding, attention_mask, causal_mask, padding_mask

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
