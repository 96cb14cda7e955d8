"""Vocabularies, splits and the tf.data training pipeline."""

import numpy as np
import pytest
import tensorflow as tf

from tfrec_dyn.data import (
    Interactions,
    Vocabulary,
    existing_new_users,
    head_tail_users,
    k_core,
    leave_one_out,
    pad_left,
    session_split,
    training_dataset,
)
from tfrec_dyn.data.input_pipeline import (NegativeSampler, UserStream, next_item_windows, pack_rows,
                                           streamed_training_dataset)


def _interactions(sequences, **side):
    return Interactions(
        user_ids=[f"u{i}" for i in range(len(sequences))],
        items=[np.array(s, dtype=object) for s in sequences],
        side={k: [np.array(x) for x in v] for k, v in side.items()},
    )


# ----------------------------------------------------------------- vocabulary
def test_vocabulary_reserves_padding_and_oov_and_round_trips(tmp_path):
    vocab = Vocabulary.build([["b", "a", "b"], ["c", "b"]])
    assert vocab.tokens == ["b", "a", "c"]  # most frequent first, ties by first appearance
    assert vocab.encode(["a", "b", "zzz"]).tolist() == [3, 2, 1]
    assert vocab.decode([0, 1, 4]) == ["", "[OOV]", "c"]
    assert vocab.size == 5
    vocab.save(str(tmp_path / "items.txt"))
    assert Vocabulary.load(str(tmp_path / "items.txt")) == vocab


def test_vocabulary_matches_keras_string_lookup():
    vocab = Vocabulary(["x", "y"])
    lookup, inverse = vocab.lookup_layer(), vocab.inverse_lookup_layer()
    ids = lookup(tf.constant(["y", "", "nope", "x"])).numpy()
    assert ids.tolist() == [3, 0, 1, 2]  # "" is the padding (mask) token in the layer
    assert vocab.encode(["y", "nope", "x"]).tolist() == [3, 1, 2]
    assert [t.decode() for t in inverse(tf.constant([2, 3])).numpy()] == ["x", "y"]


def test_vocabulary_rejects_duplicates_and_reserved_tokens():
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="reserved"):
        Vocabulary(["[OOV]"])


# --------------------------------------------------------------------- splits
def test_leave_one_out_keeps_side_fields_aligned_and_short_users_in_train():
    data = _interactions([["a", "b", "c", "d"], ["e", "f"]], category=[[1, 2, 3, 4], [5, 6]])
    split = leave_one_out(data)
    assert split.train.items[0].tolist() == ["a", "b"]
    assert split.train.side["category"][0].tolist() == [1, 2]
    assert split.train.items[1].tolist() == ["e", "f"]  # too short: training only
    assert split.num_short_users == 1
    assert split.validation.inputs.items[0].tolist() == ["a", "b"]
    assert split.validation.target_items().tolist() == ["c"]
    assert split.test.inputs.items[0].tolist() == ["a", "b", "c"]
    assert split.test.targets.side["category"][0].tolist() == [4]
    assert split.test.num_users == 1


def test_leave_one_out_holds_out_moves_to_another_item():
    data = _interactions([["a", "b", "b", "c", "c"], ["a", "a", "b"]], behavior=[list("12345"), list("123")])
    split = leave_one_out(data)
    assert split.train.items[0].tolist() == ["a"] and split.train.items[1].tolist() == ["a", "a", "b"]
    assert split.num_short_users == 1  # two runs: nothing to hold out twice
    assert split.validation.inputs.items[0].tolist() == ["a"] and split.validation.target_items().tolist() == ["b"]
    assert split.test.inputs.items[0].tolist() == ["a", "b", "b"] and split.test.target_items().tolist() == ["c"]
    assert split.test.inputs.side["behavior"][0].tolist() == ["1", "2", "3"]
    assert split.test.targets.side["behavior"][0].tolist() == ["4"]


def test_leave_one_out_without_collapsing_holds_out_the_last_two_events():
    """A `user item` log keeps the next-event task (the SASRec protocol); a
    micro-behaviour log (a `behavior` field) collapses runs by default."""
    from tfrec_dyn.training import PreparedData

    items = [["a", "b", "b", "c", "c"], ["a", "a", "b"]]
    split = leave_one_out(_interactions(items), collapse_repeats=False)
    assert split.num_short_users == 0
    assert split.test.inputs.items[0].tolist() == ["a", "b", "b", "c"] and split.test.target_items().tolist() == ["c", "b"]
    assert split.validation.target_items().tolist() == ["c", "a"] and split.train.items[1].tolist() == ["a"]
    assert not PreparedData.from_interactions(_interactions(items)).collapse_repeats
    micro = PreparedData.from_interactions(_interactions(items, behavior=[list("12345"), list("123")]))
    assert micro.collapse_repeats and micro.split.num_short_users == 1


def test_k_core_iterates_until_stable():
    # Item "z" appears once; removing it leaves user u2 with one item, which
    # then has to go too, and with it the last "y".
    data = _interactions([["x", "y", "x"], ["x", "y", "z"], ["x", "x"]])
    core = k_core(data, 2)
    for seq in core.items:
        assert len(seq) >= 2
    counts = {}
    for seq in core.items:
        for item in seq:
            counts[item] = counts.get(item, 0) + 1
    assert min(counts.values()) >= 2 and "z" not in counts


def test_head_tail_and_existing_new_users():
    data = _interactions([["a"] * n for n in [1, 9, 3, 7, 5, 2, 4, 8, 6, 10]])
    head, tail = head_tail_users(data)
    assert head == ["u9", "u1"] and len(tail) == 8
    existing, new = existing_new_users(data, seed=3)
    assert len(new) == 2 and not set(new) & set(existing)
    assert existing_new_users(data, seed=3) == (existing, new)
    assert existing_new_users(data, seed=4) != (existing, new)


# ------------------------------------------------------------- input pipeline
def test_pad_left_truncates_to_the_most_recent_items():
    np.testing.assert_array_equal(pad_left([[1, 2, 3, 4], [5]], 3), [[2, 3, 4], [0, 0, 5]])


def test_the_eval_user_sample_is_decided_by_each_id_alone():
    from tfrec_dyn.data.splits import sample_users, user_sample_keys

    ids = [f"user{n}" for n in range(500)]
    picked = {ids[row] for row in sample_users(ids, 50)}
    shuffled = list(np.random.default_rng(0).permutation(ids))
    assert len(picked) == 50 and {shuffled[row] for row in sample_users(shuffled, 50)} == picked
    # The 50 smallest keys, a different sample under another seed, and numbers as their text.
    keys = user_sample_keys(ids)
    assert max(keys[[ids.index(user) for user in picked]]) < min(np.delete(keys, [ids.index(u) for u in picked]))
    assert {ids[row] for row in sample_users(ids, 50, seed=1)} != picked
    np.testing.assert_array_equal(user_sample_keys([7, "7"]), user_sample_keys(["7", "7"]))


def test_next_item_windows_are_the_last_pairs_left_padded():
    inputs, nexts = next_item_windows(tf.ragged.constant([[5, 6, 7, 8], [9, 4], [3], []], tf.int64), max_len=2)
    np.testing.assert_array_equal(inputs, [[6, 7], [0, 9], [0, 0], [0, 0]])
    np.testing.assert_array_equal(nexts, [[7, 8], [0, 4], [0, 0], [0, 0]])
    # A batch with no pair at all (no value, or one) is all padding.
    for rows in ([[]], [[3]]):
        inputs, nexts = next_item_windows(tf.ragged.constant(rows, tf.float32, ragged_rank=1), max_len=3)
        np.testing.assert_array_equal(tf.concat([inputs, nexts], 0), np.zeros((2, 3)))


def test_training_dataset_targets_are_the_next_items():
    sequences = [np.array([2, 3, 4, 5, 6]), np.array([7, 8]), np.array([9])]
    batch = next(iter(training_dataset(sequences, 12, 3, 8, num_negatives=0, shuffle=False)))
    np.testing.assert_array_equal(batch["item_ids"], [[3, 4, 5], [0, 0, 7]])
    np.testing.assert_array_equal(batch["targets"], [[4, 5, 6], [0, 0, 8]])  # user with 1 item left out


def test_training_dataset_carries_side_fields_and_the_next_category():
    sequences = [np.array([2, 3, 4, 5])]
    side = {"category": [np.array([2, 2, 3, 4])], "dwell_time": [np.array([5.0, 6.0, 7.0, 8.0])]}
    batch = next(iter(training_dataset(sequences, 8, 4, 8, num_negatives=0, side=side, shuffle=False)))
    np.testing.assert_array_equal(batch["category_ids"], [[0, 2, 2, 3]])
    np.testing.assert_array_equal(batch["next_category_ids"], [[0, 2, 3, 4]])  # the target's category
    np.testing.assert_array_equal(batch["dwell_time"], [[0.0, 5.0, 6.0, 7.0]])
    assert "next_dwell_time" not in batch


def _user_stream(sequences, **side):
    ragged = {"items": [np.asarray(s, np.int32) for s in sequences], **side}
    users = tf.data.Dataset.from_tensor_slices({name: tf.ragged.constant(values) for name, values in ragged.items()})
    return UserStream(users, sum(len(s) >= 2 for s in sequences))


@pytest.mark.parametrize("layout", ["per_position", "per_sequence", "shared"])
def test_streamed_batches_are_the_in_memory_ones(layout):
    # Same users in the same order -> the same windows, side fields and negatives (one batch rule).
    rng = np.random.default_rng(0)
    sequences = [rng.integers(2, 30, size=n) for n in (5, 1, 2, 40, 7, 3, 12)]
    categories = [s % 4 + 2 for s in sequences]
    common = dict(vocab_size=60, max_len=6, batch_size=3, num_negatives=4, negative_layout=layout, seed=5,
                  epochs=range(2, 4))
    streamed = streamed_training_dataset(_user_stream(sequences, category=categories), shuffle_buffer=0,
                                         side_fields=["category"], **common)
    in_memory = training_dataset(sequences, side={"category": categories}, shuffle=False, **common)
    pairs = list(zip(streamed, in_memory, strict=True))
    assert len(pairs) == 2 * 2  # 6 trainable users in batches of 3, two epochs
    for a, b in pairs:
        assert sorted(a) == sorted(b) and "next_category_ids" in a
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_streamed_epochs_are_seeded_shuffles_that_resume():
    sequences = [np.array([2, i + 3, i + 4]) for i in range(40)]
    stream = _user_stream(sequences)

    def epochs(first, stop, buffer=64):
        dataset = streamed_training_dataset(stream, 50, 2, 8, num_negatives=1, shuffle_buffer=buffer,
                                            epochs=range(first, stop))
        return [np.concatenate([b["targets"][:, -1] for b in list(dataset)[i:i + 5]]) for i in range(0, 5 * (stop - first), 5)]

    full, resumed = epochs(0, 3), epochs(1, 3)
    for epoch in full:
        assert sorted(epoch) == [i + 4 for i in range(40)]  # every user once an epoch
    assert not np.array_equal(full[0], full[1]) and not np.array_equal(full[0], np.arange(4, 44))
    for a, b in zip(full[1:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)  # epoch e is the same whether or not epochs before it ran here
    blocks = epochs(0, 1, buffer=16)[0]  # permuted within blocks of 16 users, in the stream's block order
    for start in (0, 16, 32):
        assert sorted(blocks[start:start + 16]) == list(range(start + 4, min(start + 16, 40) + 4))
    with pytest.raises(ValueError, match="no \\['dwell_time'\\]"):
        streamed_training_dataset(stream, 50, 2, 8, side_fields=["dwell_time"])


def test_session_split_holds_out_whole_sessions_predicting_every_move():
    sessions = [["a", "b", "b", "c", "c"], ["x", "x"], ["p", "q"], ["m", "n", "n", "m"]] * 5
    data = _interactions(sessions, category=[[s.upper() for s in session] for session in sessions])
    split = session_split(data, 0.2, 0.2, seed=3)
    held_out = set(split.validation.inputs.user_ids) | set(split.test.inputs.user_ids)
    assert not held_out & set(split.train.user_ids)  # whole sessions, never both
    assert len(held_out) + len(split.train.user_ids) == 20
    # 8 sessions drawn for evaluation; those of one item only ("x x") train instead, counted.
    assert len(held_out) + split.num_short_users == 8 and split.num_short_users > 0
    expected = {"a b b c c": [("a", "b"), ("a b b", "c")], "p q": [("p", "q")],
                "m n n m": [("m", "n"), ("m n n", "m")]}
    for part in (split.validation, split.test):
        rows = {}
        for user, history, target, category in zip(part.inputs.user_ids, part.inputs.items, part.targets.items,
                                                   part.targets.side["category"]):
            assert category.tolist() == [target[0].upper()]
            rows.setdefault(user, []).append((" ".join(history), target[0]))
        for user, pairs in rows.items():
            assert pairs == expected[" ".join(data.items[data.user_ids.index(user)])]
    last = session_split(data, 0.2, 0.2, seed=3, targets="last")
    assert [h.tolist() for h in last.test.inputs.items] == [h.tolist() for h, u, n in zip(
        split.test.inputs.items, split.test.inputs.user_ids, split.test.inputs.user_ids[1:] + [None]) if u != n]
    again = session_split(data, 0.2, 0.2, seed=3)
    assert again.test.inputs.user_ids == split.test.inputs.user_ids  # seeded
    with pytest.raises(ValueError, match="fraction"):
        session_split(data, 0.5, 0.5)


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_negatives_are_never_history_items(sampler):
    rng = np.random.default_rng(0)
    vocab = 40
    sequences = [rng.choice(np.arange(2, vocab), size=30, replace=False) for _ in range(50)]
    counts = np.bincount(np.concatenate(sequences), minlength=vocab)
    dataset = training_dataset(sequences, vocab, 30, 16, num_negatives=5, sampler=sampler, item_counts=counts, seed=1)
    seen_rows = 0
    for batch in dataset:
        for inputs, targets, negatives in zip(batch["item_ids"].numpy(), batch["targets"].numpy(),
                                              batch["negatives"].numpy()):
            history = set(inputs) | set(targets)
            assert not history & set(negatives.ravel())
            assert negatives.min() >= 2 and negatives.max() < vocab
            seen_rows += 1
    assert seen_rows == 50


def test_popularity_sampler_prefers_popular_items():
    counts = np.zeros(12)
    counts[2], counts[3:] = 1000, 1
    sampler = NegativeSampler(12, [np.array([5])], "popularity", counts)
    draws = sampler.sample(tf.constant([0]), [1, 2000], tf.constant([1, 2], tf.int64)).numpy()
    assert (draws == 2).mean() > 0.9 and not (draws == 5).any()


def test_each_row_keeps_out_its_own_history_only():
    # Row 0 has seen 2..6, row 1 only 7: row 0 can only draw 7, row 1 anything but 7.
    sampler = NegativeSampler(8, [np.array([6, 2, 3, 4, 5, 2]), np.array([7])])
    draws = sampler.sample(tf.constant([0, 1, 0]), [3, 200], tf.constant([3, 4], tf.int64)).numpy()
    assert set(draws[0]) == set(draws[2]) == {7}
    assert set(draws[1]) == {2, 3, 4, 5, 6}


def test_negatives_are_uniform_over_the_items_outside_the_history():
    # Rows 0 and 1 have seen 2, 3, 4 of items 2..9; row 2 nothing. Rejection redraws only the draws
    # that hit, so each row's draws are uniform over what it has not seen.
    sampler = NegativeSampler(10, [np.array([2, 3, 4]), np.array([4, 3, 2]), np.array([], np.int64)])
    draws = sampler.sample(tf.constant([0, 1, 2]), [3, 6000], tf.constant([5, 6], tf.int64)).numpy()
    for row, unseen in ((0, range(5, 10)), (1, range(5, 10)), (2, range(2, 10))):
        counts = np.bincount(draws[row], minlength=10)[list(unseen)]
        assert counts.sum() == 6000
        np.testing.assert_allclose(counts / 6000, 1 / len(unseen), atol=0.02)


def test_training_dataset_is_reproducible_from_its_seed():
    sequences = [np.arange(2, 12) + i for i in range(20)]

    def first_batch(seed):
        return next(iter(training_dataset(sequences, 40, 5, 4, num_negatives=2, seed=seed)))

    a, b, c = first_batch(7), first_batch(7), first_batch(8)
    np.testing.assert_array_equal(a["negatives"], b["negatives"])
    np.testing.assert_array_equal(a["item_ids"], b["item_ids"])
    assert not np.array_equal(a["negatives"], c["negatives"])


def test_impossible_negatives_fail_clearly():
    sampler = NegativeSampler(5, [np.array([2, 3, 4])], "uniform")
    with pytest.raises(tf.errors.InvalidArgumentError, match="could not draw negatives"):
        sampler.sample(tf.constant([0]), [1, 3], tf.constant([0, 0], tf.int64))


def test_collapse_repeats_gives_the_item_level_of_a_micro_behaviour_log():
    data = Interactions(
        ["s1", "s2", "s3"],
        [np.array(["a", "a", "a", "b", "a", "c", "c"]), np.array(["x"]), np.array([], dtype=str)],
        {"behavior": [np.array(["1", "2", "3", "1", "1", "1", "4"]), np.array(["1"]), np.array([], dtype=str)],
         "dwell_time": [np.array([6.0, 6.0, 6.0, 4.0, 5.0, 7.0, 7.0]), np.array([9.0]), np.array([])],
         "time_interval": [np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), np.array([9.0]), np.array([])]})
    collapsed = data.collapse_repeats()
    assert collapsed.items[0].tolist() == ["a", "b", "a", "c"]       # a later return to "a" stays apart
    assert collapsed.side["behavior"][0].tolist() == ["1", "1", "1", "1"]  # each run's first behaviour
    assert collapsed.side["dwell_time"][0].tolist() == [6.0, 4.0, 5.0, 7.0]  # the item's, shared by its run
    assert collapsed.side["time_interval"][0].tolist() == [3.0, 4.0, 5.0, 7.0]  # from the run's last behaviour
    assert collapsed.items[1].tolist() == ["x"] and collapsed.side["dwell_time"][1].tolist() == [9.0]
    assert collapsed.items[2].tolist() == [] and collapsed.user_ids == data.user_ids


def test_pack_rows_moves_every_position_once_into_fewer_rows():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 13, size=40)
    items = np.zeros([40, 12], np.int32)
    for user, length in enumerate(lengths):
        items[user, 12 - length:] = rng.integers(2, 100, size=length)
    negatives = rng.integers(2, 100, size=[40, 12, 3]).astype(np.int32) * (items > 0)[..., None]
    packed = {k: v.numpy() for k, v in pack_rows({"item_ids": tf.constant(items), "negatives": tf.constant(negatives),
                                                  "shared": tf.constant([7, 8])}).items()}
    assert packed["shared"].tolist() == [7, 8]  # rank 1: kept
    # First-fit decreasing needs at most 11/9 of the optimum plus one row.
    assert -(-lengths.sum() // 12) <= len(packed["item_ids"]) <= 11 / 9 * -(-lengths.sum() // 12) + 1
    real = packed["segments"] > 0
    np.testing.assert_array_equal(real, packed["item_ids"] > 0)
    users, columns = packed["segments"][real] - 1, packed["positions"][real]
    assert len(set(zip(users.tolist(), columns.tolist()))) == real.sum() == lengths.sum()
    np.testing.assert_array_equal(packed["item_ids"][real], items[users, columns])
    np.testing.assert_array_equal(packed["negatives"][real], negatives[users, columns])
    # A user's positions are one contiguous, increasing run within a row.
    for row in range(len(packed["segments"])):
        for user in set(packed["segments"][row][real[row]].tolist()):
            where = np.nonzero(packed["segments"][row] == user)[0]
            assert (np.diff(where) == 1).all() and (np.diff(packed["positions"][row][where]) == 1).all()
