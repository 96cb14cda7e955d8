"""Ranking the catalogue a chunk of items at a time: every model's chunked ranks and
top-k lists equal the dense ones, and no evaluation step holds a users x catalogue tensor."""

import numpy as np
import pytest
import tensorflow as tf
from graphs import all_graphs, whole_table_reads

from tfrec_dyn.data.vocabulary import Vocabulary
from tfrec_dyn.layers.chunks import fold_chunks, top_k_over_chunks
from tfrec_dyn.metrics import Scorer, evaluate, rank_of_target, top_k_items
from tfrec_dyn.data.splits import sample_users
from tfrec_dyn.metrics.evaluation import EvalArrays, evaluate_model
from tfrec_dyn.metrics.scoring import full_protocol_ranks
from tfrec_dyn.models import build_model
from tfrec_dyn.training.transfer import TransferrableTrainer

V, L, USERS = 30, 8, 12
# Every model, and the variants whose scoring differs (policy routing, best interest, retrieval).
CONFIGS = [("poprec", {}), ("sasrec", {}), ("gru4rec", {}), ("caser", {}), ("retr", {}), ("hstu", {}),
           ("rdrsr", {"window_len": 4}), ("rdrsr", {"window_len": 4, "scoring": "policy"}),
           ("adasplit", {"window_len": 4}), ("adasplit", {"window_len": 4, "scoring": "max"}),
           ("hup", {"category_vocab_size": 6, "behavior_vocab_size": 5}),
           ("hup", {"category_vocab_size": 6, "behavior_vocab_size": 5, "candidate_neighbors": 3})]


def _histories(seed=0):
    rng = np.random.default_rng(seed)
    histories = np.zeros((USERS, L), np.int32)
    for row in range(USERS):
        length = rng.integers(1, L + 1)
        histories[row, L - length:] = rng.integers(2, V, length)
    targets = rng.integers(2, V, USERS).astype(np.int32)
    targets[:3] = histories[:3, -1]  # targets the user has seen: misses, ranked last
    return histories, targets


def _dense_ranks(scores, histories, targets):
    """The full protocol by its definition, on the [U, V] score matrix: seen items
    are not candidates, and a seen target is ranked after every candidate."""
    candidates = np.zeros_like(scores, bool)
    candidates[:, 2:] = True
    for row, history in enumerate(histories):
        candidates[row, history] = False
    others = candidates.sum(1) - candidates[np.arange(len(targets)), targets]
    repeats = (histories == targets[:, None]).any(1)
    candidates[np.arange(len(targets)), targets] = True
    return np.where(repeats, others, rank_of_target(scores, targets, candidates))


@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k in CONFIGS])
def test_chunked_ranks_and_top_k_equal_the_dense_ones(name, kwargs):
    model = build_model(name, V, L, **kwargs)
    histories, targets = _histories()
    scores = model.score({"item_ids": histories}).numpy()
    if name == "poprec":  # give the counts ties and an order
        model.counts.assign(np.arange(V, dtype=np.float32) % 5)
        scores = model.score({"item_ids": histories}).numpy()
    ranks = _dense_ranks(scores, histories, targets)
    masked = scores.copy()
    for row, history in enumerate(histories):
        masked[row, history] = -np.inf
    top = np.argsort(-masked, axis=1, kind="stable")[:, :6]  # best first, ties to the smaller id
    # 4 chunks (the last one short), each of ranks and lists alone ...
    np.testing.assert_array_equal(evaluate(model, histories, targets, ks=(5,), chunk_size=7, batch_size=5).ranks,
                                  ranks)
    np.testing.assert_array_equal(top_k_items(model, histories, k=6, chunk_size=7, batch_size=5), top)
    # ... and one pass for both, over 4 chunks and over one (each traced call costs seconds on
    # the larger models, so the single chunk is checked through the joint pass only).
    for chunk_size in (7, 1024):
        both = evaluate(model, histories, targets, ks=(5,), chunk_size=chunk_size, batch_size=5, top_k=6)
        np.testing.assert_array_equal(both.ranks, ranks)
        np.testing.assert_array_equal(both.top_k_items, top)


def test_the_transfer_trainer_scores_like_its_model():
    model = build_model("sasrec", V, L)
    histories, targets = _histories(1)
    trainer = TransferrableTrainer(model)
    np.testing.assert_array_equal(evaluate(trainer, histories, targets, chunk_size=7).ranks,
                                  evaluate(model, histories, targets).ranks)


def test_sampled_protocol_scores_only_its_candidates():
    model = build_model("sasrec", V, L)
    histories, targets = _histories(2)
    asked = []

    class Recording:
        vocab_size = V

        def user_state(self, batch):
            return model.user_state(batch)

        def score_items(self, state, item_ids):
            asked.append(tuple(item_ids.shape))
            return model.score_items(state, item_ids)

    negatives = np.stack([np.setdiff1d(np.arange(2, V), np.r_[h, t])[:4] for h, t in zip(histories, targets)])
    sampled = evaluate(Recording(), histories, targets, protocol="sampled", negatives=negatives, batch_size=USERS)
    assert asked == [(USERS, 5)]  # the target and its 4 negatives, nothing else
    scores = model.score({"item_ids": histories}).numpy()
    candidates = np.concatenate([targets[:, None], negatives], 1)
    expected = rank_of_target(np.take_along_axis(scores, candidates, 1), np.zeros(USERS, int))
    expected[:3] = 4  # seen targets: misses, after the 4 negatives
    np.testing.assert_array_equal(sampled.ranks, expected)


def _largest_tensor(function, chunk_size, *specs):
    """Elements of the largest tensor anywhere in the traced `function` (an unknown
    dimension, a chunk's, counts as `chunk_size`)."""
    graph = tf.function(function).get_concrete_function(*specs).graph
    return max(int(np.prod([d if d is not None else chunk_size for d in output.shape.as_list()]))
               for g in all_graphs(graph) for op in g.get_operations() for output in op.outputs
               if output.shape.rank is not None)


@pytest.mark.parametrize("name, kwargs", [("sasrec", {}), ("rdrsr", {"window_len": 3, "scoring": "policy"}),
                                          ("hup", {"category_vocab_size": 6, "behavior_vocab_size": 5,
                                                   "candidate_neighbors": 3})])
def test_no_evaluation_step_holds_a_users_by_catalogue_tensor(name, kwargs):
    vocab, users, length, chunk = 20_003, 16, 6, 512
    model = build_model(name, vocab, length, embed_dim=4, **kwargs)
    model.score_items(model.user_state({"item_ids": tf.ones([1, length], tf.int32) * 2}), tf.range(3))  # builds it
    ids, targets = tf.TensorSpec([users, length], tf.int32), tf.TensorSpec([users], tf.int32)

    def ranks(item_ids, targets, chunk_size):
        state = model.user_state({"item_ids": item_ids})
        return full_protocol_ranks(model, state, item_ids, targets, vocab, True, chunk_size)

    chunked = _largest_tensor(lambda i, t: ranks(i, t, chunk), chunk, ids, targets)
    whole = _largest_tensor(lambda i, t: ranks(i, t, vocab), vocab, ids, targets)  # one chunk: the check can fail
    assert whole >= users * (vocab - 2), whole
    # The weights themselves ([V, d] tables) are the largest tensors left, far below users x V.
    assert chunked <= max(vocab * 8, users * chunk * 64), chunked


@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k in CONFIGS])
def test_ranking_never_reads_an_item_table_whole(name, kwargs):
    # After any embedding lookup TF keeps a table in copy-on-read mode: a whole read is then a
    # full copy, once per chunk (at a million items, 256 MB each: a served request took seconds).
    vocab, length = 20_003, 6
    model = build_model(name, vocab, length, **kwargs)
    histories = tf.constant(_histories()[0][:, -length:])
    model.score_items(model.user_state({"item_ids": histories}), tf.range(3))  # builds it

    def ranks(item_ids, targets):
        state = model.user_state({"item_ids": item_ids})
        return full_protocol_ranks(model, state, item_ids, targets, vocab, True, 512)

    assert whole_table_reads(ranks, vocab, tf.TensorSpec([None, length], tf.int32), tf.TensorSpec([None], tf.int32)) == []
    table = model.counts if name == "poprec" else model.output_embeddings()
    assert whole_table_reads(lambda ids: tf.gather(tf.convert_to_tensor(table), ids), vocab,
                             tf.TensorSpec([None], tf.int32))  # the check sees a whole read


def test_folds_and_top_k_over_chunks_cover_every_id_once():
    seen = fold_chunks(lambda ids, total: total + tf.math.bincount(ids, minlength=23, maxlength=23),
                       tf.zeros([23], tf.int32), 3, 23, 6)
    np.testing.assert_array_equal(seen.numpy(), [0] * 3 + [1] * 20)
    scores = tf.constant([[5., 1., 5., 9., -np.inf, 2.]])
    values, ids = top_k_over_chunks(lambda i: tf.gather(scores, i, axis=1), 1, 0, 6, 8, 4)
    # Ties to the smaller id; a -inf item never takes an empty slot's place.
    assert ids.numpy().tolist() == [[3, 0, 2, 5, 1, -1, -1, -1]]
    assert np.isneginf(values.numpy()[0, 5:]).all()
    with pytest.raises(ValueError, match="chunk_size"):
        fold_chunks(lambda ids, s: s, tf.constant(0), 0, 5, 0)


def test_a_scorer_compiles_once_and_refuses_what_cannot_score():
    model = build_model("sasrec", V, L)
    scorer = Scorer(model, chunk_size=7)
    assert Scorer.of(scorer) is scorer and Scorer.of(scorer, 7) is scorer
    assert Scorer.of(scorer, 9).source is model and Scorer.of(scorer, 9).chunk_size == 9
    plain = Scorer(lambda batch: np.zeros((len(batch["item_ids"]), V)), chunk_size=7)
    assert scorer.compiled and not plain.compiled and not Scorer.of(plain, 9).compiled  # a function runs eagerly
    with pytest.raises(TypeError, match="cannot score"):
        Scorer(42)


def test_a_short_last_batch_is_filled_so_the_scorer_traces_once_with_the_same_figures():
    model = build_model("sasrec", V, L)
    histories, targets = _histories(2)
    rng = np.random.default_rng(0)
    negatives = np.stack([rng.choice(np.setdiff1d(np.arange(2, V), np.r_[history, target]), 4, replace=False)
                          for history, target in zip(histories, targets)])
    model.score({"item_ids": histories})  # built, as a trained model is (its first trace would create the weights)
    scorer = Scorer(model, chunk_size=7)
    for protocol, top_k in (("full", 4), ("full", 0), ("sampled", 0)):
        # 12 users in batches of 5: the last batch of 2 is filled up to 5.
        batched = evaluate(scorer, histories, targets, protocol=protocol, negatives=negatives, batch_size=5,
                           top_k=top_k)
        whole = evaluate(model, histories, targets, protocol=protocol, negatives=negatives, batch_size=USERS,
                         top_k=top_k, chunk_size=7)
        assert len(batched.ranks) == USERS and batched.metrics == whole.metrics
        for name in ("ranks", "num_candidates", "repeats") + (("top_k_items",) if top_k else ()):
            np.testing.assert_array_equal(getattr(batched, name), getattr(whole, name))
    np.testing.assert_array_equal(top_k_items(scorer, histories, k=4, batch_size=5),
                                  top_k_items(model, histories, k=4, batch_size=USERS, chunk_size=7))
    for step in (scorer.state, scorer.ranks_and_top_k, scorer.ranks, scorer.sampled_ranks, scorer.top_k):
        assert step.experimental_get_tracing_count() == 1


def test_a_sample_of_users_gets_exactly_its_rows_of_the_whole_evaluation(tmp_path):
    model = build_model("sasrec", V, L)
    histories, targets = _histories(3)
    vocab = Vocabulary([f"i{i}" for i in range(2, V)])
    known = [np.r_[history[history > 0], target] for history, target in zip(histories, targets)]
    arrays = EvalArrays([f"u{row}" for row in range(USERS)], histories, targets, known)
    settings = dict(protocols=("full", "sampled"), num_negatives=5, cache_dir=str(tmp_path))
    whole = evaluate_model(model, arrays, vocab, np.ones(V), **settings)
    part = evaluate_model(model, arrays, vocab, np.ones(V), eval_users=5, **settings)
    rows = sample_users(arrays.user_ids, 5)
    assert len(rows) == 5 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, sample_users(arrays.user_ids, 5))  # seeded: every model gets the same users
    for protocol in ("full", "sampled"):
        np.testing.assert_array_equal(part[protocol].ranks, whole[protocol].ranks[rows])
        assert part[protocol].metrics["NDCG@10"] == pytest.approx(whole[protocol].metrics_for(rows)["NDCG@10"])
    np.testing.assert_array_equal(sample_users(arrays.user_ids, 50), np.arange(USERS))  # more than there are: all
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="eval_users"):
            sample_users(arrays.user_ids, bad)


def test_small_batches_take_bigger_chunks_with_the_same_top_k():
    from tfrec_dyn.metrics.scoring import chunk_for_rows

    assert [int(chunk_for_rows(rows, 8192)) for rows in (1, 64, 128, 256, 5000)] == [32768, 32768, 16384, 8192, 8192]
    assert int(chunk_for_rows(1, 1024)) == 32768 and int(chunk_for_rows(256, 1024)) == 1024
    scores = tf.constant(np.random.default_rng(0).normal(size=(3, 40)), tf.float32)
    at = lambda chunk: top_k_over_chunks(lambda ids: tf.gather(scores, ids, axis=1), 3, 2, 40, 5, chunk)  # noqa: E731
    for fixed, chosen in zip(at(7), at(tf.constant(7))):
        np.testing.assert_array_equal(fixed, chosen)


def test_top_k_lists_come_only_with_the_full_protocol():
    model = build_model("sasrec", V, L)
    histories, targets = _histories(3)
    for protocol, top_k in (("full", -1), ("full", True), ("sampled", 5)):
        with pytest.raises(ValueError, match="top_k"):
            evaluate(model, histories, targets, protocol=protocol, top_k=top_k,
                     negatives=np.full((USERS, 3), 2) if protocol == "sampled" else None)
