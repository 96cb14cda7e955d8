"""Losses whose cost does not grow with the catalogue: hand-computed values, the shared
negative samplers' draws and logQ, no catalogue-sized tensor in a training step, learning."""

import functools

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from graphs import whole_table_reads

from tfrec_dyn.data.input_pipeline import SharedNegativeSampler, training_dataset
from tfrec_dyn.models import SASRec, build_model
from tfrec_dyn.models.base import gbce_beta

V, L, D = 12, 4, 3
ITEMS = tf.constant([[0, 2, 3, 4], [5, 6, 7, 8]], tf.int32)
TARGETS = tf.constant([[0, 3, 4, 9], [6, 7, 8, 10]], tf.int32)  # 0: no target at that position


def _model_and_representations(loss, **kwargs):
    model = SASRec(V, L, loss=loss, embed_dim=D, **kwargs)
    model({"item_ids": ITEMS})
    representations = tf.constant(np.random.default_rng(0).normal(size=(2, L, D)), tf.float32)
    return model, representations, model.output_embeddings().numpy()


def _log_sigmoid(x):
    return -np.log1p(np.exp(-x))


@pytest.mark.parametrize("logit_offset", [None, 0.0])
def test_gbce_matches_the_paper_formula(logit_offset):
    assert gbce_beta(256, 3707, 1.0) == pytest.approx(256 / 3706)  # t = 1: β = α
    assert gbce_beta(256, 3707, 0.0) == pytest.approx(1.0)  # t = 0: plain BCE
    model, h, table = _model_and_representations("gbce", num_negatives=3, gbce_calibration=0.5,
                                                 logit_offset=logit_offset)
    negatives = np.array([[9, 10, 11], [2, 3, 4]])
    value = model.next_item_loss(h, {"targets": TARGETS, "negatives": tf.constant(negatives)}).numpy()
    beta = 3 / (V - 2 - 1) * (0.5 * (1 - (V - 2 - 1) / 3) + (V - 2 - 1) / 3)
    offset = np.log(beta / 3) if logit_offset is None else 0.0  # None: the balanced offset
    losses = []
    for b in range(2):
        for t in range(L):
            target = int(TARGETS[b, t])
            if target:
                positive = h[b, t].numpy() @ table[target] + offset
                negative = table[negatives[b]] @ h[b, t].numpy() + offset
                losses.append(-beta * _log_sigmoid(positive) - np.sum(_log_sigmoid(-negative)))
    assert value == pytest.approx(np.mean(losses), rel=1e-5)


@pytest.mark.parametrize("loss, num_negatives", [("bce", 1), ("bce", 8), ("gbce", 64)])
def test_the_balanced_offset_cancels_the_first_steps_push_on_every_score(loss, num_negatives):
    """With every raw score 0, moving all scores together does not change the
    loss: the positive's pull and the negatives' push cancel (and "bce" with
    one negative, SASRec's setting, needs no offset)."""
    model = SASRec(V, L, loss=loss, embed_dim=D, num_negatives=num_negatives)
    model({"item_ids": ITEMS})
    negatives = tf.fill([2, L, num_negatives] if loss == "bce" else [2, num_negatives], 11)
    batch = {"targets": TARGETS, "negatives": negatives}
    shift = tf.Variable(0.0)
    with tf.GradientTape() as tape:  # every score is `shift`: representations (shift/|e|²) e along one item e
        table = model.output_embeddings()
        model.embedding.item_embedding.embeddings.assign(tf.ones_like(table))
        loss_value = model.next_item_loss(tf.ones([2, L, D]) * shift / D, batch)
    # Unbalanced, the gradient is about num_negatives / 2 (for ("bce", 1) only an offset of 0 cancels);
    # balanced, what is left is float32 rounding of 1 + num_negatives terms of about 1/2 each.
    assert abs(float(tape.gradient(loss_value, shift))) < 1e-6 * (1 + num_negatives)


def test_sampled_softmax_applies_logq_and_masks_accidental_hits():
    model, h, table = _model_and_representations("sampled_softmax", num_negatives=3)
    negatives = np.array([4, 9, 11])  # 4 is the target of position (0, 2): an accidental hit there
    log_q = np.array([-1.0, -2.0, -0.5])
    target_log_q = np.where(TARGETS.numpy() > 0, -1.5, 0.0)
    batch = {"targets": TARGETS, "shared_negatives": tf.constant(negatives), "shared_log_q": tf.constant(log_q),
             "target_log_q": tf.constant(target_log_q, tf.float32)}
    value = model.next_item_loss(h, batch).numpy()
    losses = []
    for b in range(2):
        for t in range(L):
            target = int(TARGETS[b, t])
            if target:
                x = h[b, t].numpy()
                logits = np.concatenate([[x @ table[target] - target_log_q[b, t]], table[negatives] @ x - log_q])
                logits[1:][negatives == target] = -np.inf
                losses.append(-(logits[0] - np.log(np.sum(np.exp(logits)))))
    assert value == pytest.approx(np.mean(losses), rel=1e-5)


def test_shared_samplers_draw_what_they_say_with_their_log_expected_counts():
    counts = np.array([0, 0, 50, 30, 15, 5, 0], np.float64)  # item 6 never seen: never drawn by frequency
    num_items, p = 5, counts[2:] / counts.sum()
    targets = tf.constant([[0, 3, 3, 4], [0, 0, 5, 2]])
    seed = tf.constant([1, 2], tf.int64)

    uniform = SharedNegativeSampler(7, 4, "uniform")
    negatives, log_q, target_log_q = uniform.sample(targets, seed)
    assert negatives.shape == (4,) and np.all((negatives.numpy() >= 2) & (negatives.numpy() < 7))
    np.testing.assert_allclose(log_q, np.log(4 / num_items), rtol=1e-6)
    np.testing.assert_allclose(target_log_q.numpy()[targets.numpy() == 0], 0.0)  # padding: 0, never -inf

    popularity = SharedNegativeSampler(7, 20_000, "popularity", counts)
    negatives, log_q, _ = popularity.sample(targets, seed)
    frequencies = np.bincount(negatives.numpy(), minlength=7)[2:] / 20_000
    np.testing.assert_allclose(frequencies, p, atol=0.015)
    assert frequencies[-1] == 0
    np.testing.assert_allclose(log_q, np.log(20_000 * p[negatives.numpy() - 2]), rtol=1e-5)

    in_batch = SharedNegativeSampler(7, 64, "in_batch", counts)
    negatives, _, _ = in_batch.sample(targets, seed)
    assert set(negatives.numpy()) <= {2, 3, 4, 5} and len(set(negatives.numpy())) > 1  # the batch's targets

    mixed = SharedNegativeSampler(7, 8, "mixed", counts)
    negatives, log_q, target_log_q = mixed.sample(targets, seed)
    expected = np.log(4 / num_items + 4 * p)
    np.testing.assert_allclose(log_q, expected[negatives.numpy() - 2], rtol=1e-5)
    np.testing.assert_allclose(target_log_q.numpy()[targets.numpy() > 0],
                               expected[targets.numpy()[targets.numpy() > 0] - 2], rtol=1e-5)

    with pytest.raises(ValueError, match="needs `item_counts`"):
        SharedNegativeSampler(7, 4, "in_batch")
    with pytest.raises(ValueError, match="it is for loss='sampled_softmax'"):
        training_dataset([np.array([2, 3, 4])], 7, 3, 2, num_negatives=2, sampler="in_batch", item_counts=counts)


def _largest_catalogue_tensor(model, batch, rows_bound):
    """Elements of the largest tensor with a catalogue-sized dimension in one traced
    training step (an unknown dimension counts as `rows_bound`, the most positions
    a batch has)."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    graph = tf.function(model.train_step).get_concrete_function(batch).graph
    largest = 0
    for op in graph.get_operations():
        for output in op.outputs:
            dims = output.shape.as_list() if output.shape.rank else []
            if any(d is not None and d >= model.vocab_size - 2 for d in dims):
                largest = max(largest, int(np.prod([d if d is not None else rows_bound for d in dims])))
    return largest


# (model, its scalable loss and layout); each also runs with "ce" to show the check can fail.
SCALABLE = [("sasrec", "gbce", "per_sequence"), ("sasrec", "sampled_softmax", "shared"),
            ("gru4rec", "sampled_softmax", "shared"), ("gru4rec", "gbce", "per_sequence"),
            ("caser", "sampled_softmax", "shared"), ("retr", "gbce", "per_sequence"),
            ("retr", "sampled_softmax", "shared"), ("rdrsr", "sampled_ce", "per_position"),
            ("adasplit", "sampled_softmax", "shared")]


@pytest.mark.parametrize("name, loss, layout", SCALABLE)
def test_no_training_step_holds_a_batch_by_catalogue_tensor(name, loss, layout):
    vocab, batch_size, length, dim = 20_003, 16, 4, 4
    rng = np.random.default_rng(0)
    sequences = [rng.integers(2, vocab, 6).astype(np.int32) for _ in range(batch_size)]
    counts = np.ones(vocab)
    kwargs = {"embed_dim": dim, **{"caser": {"window": 2}, "gru4rec": {"hidden_dim": dim},
                                   "rdrsr": {"window_len": 3}, "adasplit": {"window_len": 3}}.get(name, {})}
    sizes, reads = {}, {}
    for loss_name in (loss, "ce"):
        model = build_model(name, vocab, length, loss=loss_name, num_negatives=8, **kwargs)
        layout_name = model.negative_layout or "per_position"
        if loss_name == loss:
            assert layout_name == layout
        dataset = training_dataset(sequences, vocab, length, batch_size, num_negatives=model.num_negatives,
                                   sampler="mixed" if layout_name == "shared" else "uniform", item_counts=counts,
                                   negative_layout=layout_name)
        batch = next(iter(dataset))
        assert all(np.prod(v.shape) < vocab for v in batch.values())  # nothing catalogue-sized in a batch
        model(batch)
        sizes[loss_name] = _largest_catalogue_tensor(model, batch, batch_size * length)
        reads[loss_name] = whole_table_reads(functools.partial(_loss_gradients, model), vocab, batch)
    # The full softmax holds [positions, V] (so the check can fail); the scalable loss stays at the
    # weights' own [V, d] (embedding table, its Adam update), below B x V.
    assert sizes["ce"] >= batch_size * vocab, sizes
    assert sizes[loss] < batch_size * vocab, sizes
    # Nor does its loss or gradient read a table whole: only the rows of a batch's items and negatives.
    assert reads["ce"] and reads[loss] == [], reads


def _loss_gradients(model, batch):
    with tf.GradientTape() as tape:
        loss = model.sequence_loss(batch, training=True)
    return tape.gradient(loss, model.trainable_variables)


@pytest.fixture(scope="module")
def synthetic_log(tmp_path_factory):
    from tfrec_dyn.data.synthetic import LogSpec, generate_log

    path = tmp_path_factory.mktemp("synthetic") / "log.txt"
    return generate_log(LogSpec(num_users=1_000, num_items=1_500, mean_length=12, follow_successor=0.8,
                                seed=0)).write(str(path))


def _hr10(path, model, **settings):
    """Full-ranking HR@10 on the test targets that are new to the user: the pattern is
    the successor of the last item; most targets of this log repeat one (a miss each)."""
    from tfrec_dyn.training import TrainConfig, train

    config = TrainConfig(model=model, data=path, data_format="user-item", max_len=20, eval_protocols=("full",),
                         **settings)
    return train(config, verbose=0).metrics["full:novel"]["HR@10"]


@pytest.mark.slow
def test_sasrec_learns_the_synthetic_pattern_with_in_batch_negatives(synthetic_log):
    popularity = _hr10(synthetic_log, "poprec", epochs=1)
    learned = _hr10(synthetic_log, "sasrec", epochs=6, loss="sampled_softmax", negative_sampler="in_batch")
    assert learned > popularity + 0.2, (learned, popularity)


@pytest.mark.slow
def test_sasrec_learns_the_synthetic_pattern_with_gbce_and_many_negatives(synthetic_log):
    """gSASRec's setting (256 negatives, t = 0.75): without the balanced logit
    offset this stays at a representation shared by every user."""
    popularity = _hr10(synthetic_log, "poprec", epochs=1)
    learned = _hr10(synthetic_log, "sasrec", epochs=6, loss="gbce")
    assert learned > popularity + 0.2, (learned, popularity)


@pytest.mark.slow
def test_gru4rec_with_sampled_softmax_keeps_up_with_the_full_softmax(synthetic_log):
    """At equal epochs the sampled loss (cost independent of V) is no worse than "ce" (cost ∝ V)."""
    full = _hr10(synthetic_log, "gru4rec", epochs=6, loss="ce", learning_rate=3e-3)
    sampled = _hr10(synthetic_log, "gru4rec", epochs=6, loss="sampled_softmax", negative_sampler="in_batch",
                    learning_rate=3e-3)
    assert sampled >= full - 0.03, (sampled, full)
