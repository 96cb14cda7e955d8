"""The transferrable-parameters trainer: per-user tasks, the Reptile outer update,
k = 1 as plain training, the adversary, save/load and serving of the wrapped model."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from layer_harness import run_layer_test
from tfrec_dyn.data import head_mask
from tfrec_dyn.data.user_tasks import user_task_dataset
from tfrec_dyn.layers import HeadTailDiscriminator, reverse_gradient
from tfrec_dyn.models import HUP, RETR, Caser, GRU4Rec, SASRec
from tfrec_dyn.training import TrainConfig, TransferrableTrainer

VOCAB = 14


def _sequences():
    rng = np.random.default_rng(0)
    return [rng.integers(2, VOCAB, size=n).astype(np.int32) for n in (12, 3, 7, 2, 1, 9)]


# ------------------------------------------------------------------ the data
def test_user_task_windows_come_from_one_user_each_and_target_the_next_item():
    sequences = _sequences()
    heads = head_mask([len(s) for s in sequences], 0.34)
    assert heads.tolist() == [True, False, False, False, False, True]
    dataset = user_task_dataset(sequences, heads, VOCAB, max_len=4, inner_steps=3, users_per_step=2,
                                windows_per_user=5, num_negatives=2, seed=7)
    element = next(iter(dataset))
    assert element["item_ids"].shape == (3, 10, 4) and element["negatives"].shape == (3, 10, 4, 2)
    for step in range(3):
        for user in range(2):
            rows = slice(5 * user, 5 * user + 5)
            items, targets = element["item_ids"][step, rows].numpy(), element["targets"][step, rows].numpy()
            negatives, head = element["negatives"][step, rows].numpy(), element["heads"][step, rows].numpy()
            owners = set()
            for window, target in zip(items, targets):
                present = window > 0
                # Inputs and targets are one contiguous stretch of one sequence, shifted by one.
                stretch = np.concatenate([window[present], target[-1:]])
                owner = [i for i, s in enumerate(sequences)
                         if any(tuple(s[j:j + len(stretch)]) == tuple(stretch) for j in range(len(s)))]
                assert owner, (window, target)
                owners.add(tuple(owner))
                np.testing.assert_array_equal(target[:-1][present[:-1]], window[1:][present[:-1]])
                assert (target[present] >= 2).all() and (target[~present] == 0).all()
            assert len(owners) == 1  # one user's windows
            user_index = owners.pop()[0]
            assert len(sequences[user_index]) >= 2  # never the single-item user
            assert set(head) == {float(heads[user_index])}
            assert not set(negatives.ravel()) & set(sequences[user_index].tolist())
    again = next(iter(user_task_dataset(sequences, heads, VOCAB, max_len=4, inner_steps=3, users_per_step=2,
                                        windows_per_user=5, num_negatives=2, seed=7)))
    np.testing.assert_array_equal(again["item_ids"], element["item_ids"])  # seeded


def test_user_task_dataset_rejects_bad_arguments():
    with pytest.raises(ValueError, match="one entry per sequence"):
        user_task_dataset(_sequences(), [True], VOCAB, 4)
    with pytest.raises(ValueError, match="`inner_steps` must be positive"):
        user_task_dataset(_sequences(), [False] * 6, VOCAB, 4, inner_steps=0)
    with pytest.raises(ValueError, match="nothing to train on"):
        user_task_dataset([np.array([3])], [False], VOCAB, 4)


# --------------------------------------------------------- the discriminator
def test_discriminator_layer(tmp_path):
    run_layer_test(HeadTailDiscriminator, {"hidden_units": (6,), "adversarial_weight": 0.5},
                   [tf.random.normal([3, 4])], (3,), tmp_path)


def test_reverse_gradient_flips_and_scales():
    x = tf.constant([[1.0, -2.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(reverse_gradient(x, 2.0) * [[3.0, 5.0]])
    np.testing.assert_allclose(tape.gradient(y, x), [[-6.0, -10.0]])
    np.testing.assert_allclose(reverse_gradient(x, 2.0), x)


# ---------------------------------------------------------------- the trainer
def _batches(seed, k, max_len=5, num_negatives=1, negative_layout="per_position"):
    sequences = _sequences()
    heads = head_mask([len(s) for s in sequences], 0.34)
    dataset = user_task_dataset(sequences, heads, VOCAB, max_len, inner_steps=k, windows_per_user=3,
                                num_negatives=num_negatives, seed=seed, negative_layout=negative_layout)
    return dataset.batch(1)


def _trainer(model, k, alpha, weight, outer):
    trainer = TransferrableTrainer(model, inner_steps=k, inner_learning_rate=alpha, adversarial_weight=weight,
                                   discriminator_units=(4,))
    trainer.compile(optimizer=outer)
    return trainer


def test_outer_update_is_the_reptile_formula():
    """θ ← θ + β(θ_k − θ), with θ_k from k hand-applied SGD steps on L − λ·BCE."""
    k, alpha, beta, weight = 2, 0.5, 0.3, 0.7
    model = GRU4Rec(VOCAB, 5, embed_dim=4, hidden_dim=4, dropout=0.0)
    trainer = _trainer(model, k, alpha, weight, keras.optimizers.SGD(beta))
    data = next(iter(_batches(seed=1, k=k)))
    inner = [{key: value[0, step] for key, value in data.items()} for step in range(k)]
    trainer.build_for(inner[0])
    variables = trainer._variables()
    theta = [v.numpy() for v in variables]

    # By hand: k SGD steps, each on one user's windows; the model's gradient of
    # L − λ·BCE, the discriminator's of BCE.
    fast = [t.copy() for t in theta]
    for batch in inner:
        for v, value in zip(variables, fast):
            v.assign(value)
        num_model = len(model.trainable_variables)
        with tf.GradientTape(persistent=True) as tape:
            representations = model(batch, training=True)
            loss = model.next_item_loss(representations, batch)
            logits = trainer.discriminator(representations[:, -1])
            bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(batch["heads"], logits))
            model_objective = loss - weight * bce
        model_grads = tape.gradient(model_objective, variables[:num_model])
        disc_grads = tape.gradient(bce, variables[num_model:])
        fast = [f - alpha * tf.convert_to_tensor(g).numpy() for f, g in zip(fast, model_grads + disc_grads)]
    expected = [t + beta * (f - t) for t, f in zip(theta, fast)]

    for v, value in zip(variables, theta):
        v.assign(value)
    trainer.train_step(data)
    for v, want, start in zip(variables, expected, theta):
        np.testing.assert_allclose(v.numpy(), want, rtol=1e-4, atol=1e-6, err_msg=v.name)
    assert any(not np.allclose(v.numpy(), t) for v, t in zip(variables, theta))


def test_an_outer_step_reads_only_the_item_rows_its_batches_touch():
    """Going back to θ and the pseudo-gradient cost the touched rows: with a
    sparse outer optimizer no op of the step reads the item table whole (a copy
    of θ would)."""
    from graphs import whole_table_reads
    from tfrec_dyn.training.optimizers import LazyAdam

    vocab = 20_011  # a row count no other dimension has
    rng = np.random.default_rng(0)
    sequences = [rng.integers(2, vocab, size=8).astype(np.int32) for _ in range(6)]
    dataset = user_task_dataset(sequences, head_mask([8] * 6, 0.34), vocab, 5, inner_steps=2,
                                windows_per_user=3, num_negatives=4, negative_layout="per_sequence")
    data = next(iter(dataset.batch(1)))
    trainer = _trainer(SASRec(vocab, 5, embed_dim=4, loss="gbce", num_negatives=4), 2, 0.1, 0.1, LazyAdam(1e-3))
    trainer.build_for({key: value[0, 0] for key, value in data.items()})
    table = trainer.model.output_embeddings()
    before = table.numpy()
    assert whole_table_reads(trainer.train_step, vocab, data) == []
    trainer.train_step(data)
    touched = np.unique(np.concatenate([data[key].numpy().ravel() for key in ("item_ids", "targets", "negatives")]))
    changed = np.flatnonzero(np.any(table.numpy() != before, axis=1))
    assert len(changed) and set(changed) <= set(touched)


def test_task_batches_built_for_another_k_are_refused():
    trainer = _trainer(GRU4Rec(VOCAB, 5, embed_dim=4, hidden_dim=4), 2, 0.1, 0.1, keras.optimizers.Adam())
    data = next(iter(_batches(seed=1, k=3)))
    trainer.build_for({key: value[0, 0] for key, value in data.items()})
    with pytest.raises(ValueError, match=r"hold \[3\] inner steps .* inner_steps=2"):
        trainer.train_step(data)


def test_one_inner_step_is_plain_training_with_adam():
    """k = 1: the pseudo-gradient is α·∇L and Adam ignores its scale (α = 1: exactly)."""
    batches = list(_batches(seed=2, k=1).take(3))
    plain = SASRec(VOCAB, 5, embed_dim=8, dropout=0.0)
    wrapped = SASRec(VOCAB, 5, embed_dim=8, dropout=0.0)
    first = {key: value[0, 0] for key, value in batches[0].items()}
    plain(first)
    trainer = _trainer(wrapped, 1, 1.0, 0.0, keras.optimizers.Adam(0.01))
    trainer.build_for(first)
    wrapped.set_weights(plain.get_weights())
    first_weights = plain.trainable_variables[0].numpy()
    plain.compile(optimizer=keras.optimizers.Adam(0.01))
    for batch in batches:
        plain.train_step({key: value[0, 0] for key, value in batch.items() if key != "heads"})
        trainer.train_step(batch)
    for got, want in zip(wrapped.trainable_variables, plain.trainable_variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5, err_msg=want.name)
    assert not np.allclose(wrapped.trainable_variables[0].numpy(), first_weights)


def _separable_tasks(num_users=40, length=8):
    """Head users (the longest half) view items 2..7, tail users items 8..13: their
    window embeddings start out separable."""
    rng = np.random.default_rng(0)
    sequences = [rng.integers(2, 8, size=length + 1) if u % 2 == 0 else rng.integers(8, 14, size=length)
                 for u in range(num_users)]
    heads = head_mask([len(s) for s in sequences], 0.5)
    assert heads.tolist() == [u % 2 == 0 for u in range(num_users)]
    return user_task_dataset(sequences, heads, VOCAB, length, inner_steps=2, users_per_step=4,
                             windows_per_user=4, num_negatives=1, seed=0).batch(1)


@pytest.mark.slow
def test_discriminator_learns_at_lambda_zero_and_is_fooled_at_high_lambda():
    """Adversarial training oscillates (the discriminator re-learns, the model
    hides again), so the figure is the mean accuracy over the last 5 epochs."""
    accuracies = {}
    for weight in (0.0, 10.0):
        keras.utils.set_random_seed(0)
        model = GRU4Rec(VOCAB, 8, embed_dim=8, hidden_dim=8, dropout=0.0, loss="bce")
        trainer = _trainer(model, 2, 0.2, weight, keras.optimizers.Adam(0.01))
        dataset = _separable_tasks()
        trainer.build_for({key: value[0, 0] for key, value in next(iter(dataset)).items()})
        history = trainer.fit(dataset, epochs=10, steps_per_epoch=50, verbose=0)
        accuracies[weight] = np.mean(history.history["discriminator_accuracy"][-5:])
    assert accuracies[0.0] > 0.95, accuracies  # head and tail embeddings are separable ...
    assert accuracies[10.0] < 0.85, accuracies  # ... until the model learns to hide which is which


@pytest.mark.parametrize("build", [lambda: GRU4Rec(VOCAB, 5, embed_dim=4, hidden_dim=4),
                                   lambda: Caser(VOCAB, 5, embed_dim=4),
                                   lambda: SASRec(VOCAB, 5, embed_dim=4, num_heads=1),
                                   lambda: RETR(VOCAB, 5, embed_dim=4, num_heads=1)],
                         ids=["gru4rec", "caser", "sasrec", "retr"])
def test_every_shared_loss_model_trains_unchanged_under_the_trainer(build):
    model = build()
    trainer = _trainer(model, 2, 0.1, 0.1, keras.optimizers.Adam(0.01))
    dataset = _batches(seed=3, k=2)
    trainer.build_for({key: value[0, 0] for key, value in next(iter(dataset)).items()})
    before = [v.numpy() for v in model.trainable_variables]
    history = trainer.fit(dataset.repeat(), steps_per_epoch=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    unchanged = [v.name for v, b in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), b)]
    assert not unchanged  # every weight of the model gets a share of the outer update


def test_sasrec_trains_with_gbce_under_the_trainer():
    """gSASRec's loss (negatives drawn per window, not per position) under the meta-learning trainer."""
    model = SASRec(VOCAB, 5, embed_dim=4, num_heads=1, loss="gbce", num_negatives=3)
    assert model.negative_layout == "per_sequence"
    trainer = _trainer(model, 2, 0.1, 0.1, keras.optimizers.Adam(0.01))
    dataset = _batches(seed=3, k=2, num_negatives=3, negative_layout="per_sequence")
    first = next(iter(dataset))
    assert first["negatives"].shape == (1, 2, 3, 3)  # [replicas, k, users x windows, n]: no position axis
    trainer.build_for({key: value[0, 0] for key, value in first.items()})
    before = [v.numpy() for v in model.trainable_variables]
    history = trainer.fit(dataset.repeat(), steps_per_epoch=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not [v.name for v, b in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), b)]
    with pytest.raises(ValueError, match="per position or per user"):
        _batches(seed=3, k=2, negative_layout="shared")


def test_trainer_config_round_trip():
    trainer = TransferrableTrainer(SASRec(VOCAB, 5), inner_steps=3, inner_learning_rate=0.05, adversarial_weight=0.5)
    clone = TransferrableTrainer.from_config(trainer.get_config())
    assert clone.get_config() == trainer.get_config() and type(clone.model) is SASRec
    assert (clone.inner_steps, clone.discriminator.adversarial_weight) == (3, 0.5)


def test_models_with_their_own_loss_are_refused():
    with pytest.raises(ValueError, match="loss of its own"):
        TransferrableTrainer(HUP(VOCAB, 5))
    with pytest.raises(TypeError, match="SequentialRecommender"):
        TransferrableTrainer(keras.Sequential([keras.layers.Dense(2)]))


def test_config_validates_trainer_options():
    assert TrainConfig(trainer="tp", trainer_options={"inner_steps": 3}).trainer_options == {"inner_steps": 3}
    with pytest.raises(ValueError, match="`trainer` must be one of"):
        TrainConfig(trainer="maml")
    with pytest.raises(ValueError, match="trainer_options"):
        TrainConfig(trainer="tp", trainer_options={"inner_step": 3})
    with pytest.raises(ValueError, match="trainer_options"):
        TrainConfig(trainer_options={"inner_steps": 3})


# ------------------------------------------------- the trainer end to end
@pytest.mark.slow
def test_tp_training_saves_loads_and_serves_the_model_unchanged(ml100k, tmp_path):
    from test_rest import _Server

    from tfrec_dyn.serving.export import export_saved_model
    from tfrec_dyn.training import PreparedData, Run, train

    data = PreparedData.from_interactions(ml100k.subset(range(120)))
    config = TrainConfig(model="sasrec", epochs=2, max_len=20, trainer="tp", eval_protocols=("full",),
                         trainer_options={"windows_per_user": 4, "users_per_step": 2})
    result = train(config, out_dir=str(tmp_path / "run"), verbose=0, data=data)
    assert type(result.model) is SASRec  # the wrapped model itself, not the wrapper
    assert np.isfinite(result.history["loss"]).all() and "discriminator_accuracy" in result.history
    assert result.metrics["full"]["HR@10"] > 0.0

    run = Run.load(str(tmp_path / "run"))
    histories = data.eval_arrays("test", config.max_len).histories[:8]
    np.testing.assert_allclose(run.model.score({"item_ids": histories}),
                               result.model.score({"item_ids": histories}), rtol=1e-5, atol=1e-5)

    export_saved_model(run.model, run.vocab, data.item_counts, config.max_len, str(tmp_path / "served" / "1"))
    server = _Server({"sasrec": str(tmp_path / "served")})
    try:
        history = run.vocab.decode([i for i in histories[0] if i > 0])
        status, body = server.request("/v1/models/sasrec:predict", {"inputs": {"item_ids": [history], "k": 5}})
        assert status == 200, body
        scores = result.model.score({"item_ids": histories[:1]}).numpy()[0]
        scores[histories[0]] = -np.inf  # served recommendations leave seen items out
        assert body["outputs"]["item_ids"][0] == run.vocab.decode(np.argsort(-scores)[:5])
    finally:
        server.close()
