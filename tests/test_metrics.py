"""Tests of tfrec_dyn.metrics: hand-computed ranks and metrics, protocols, negatives, beyond-accuracy."""

import math
import os

import numpy as np
import pytest

from tfrec_dyn.metrics import (
    EvaluationResult,
    SampledNegatives,
    count_items,
    evaluate,
    gini_index,
    head_tail_items,
    hit_rate,
    item_coverage,
    metrics_from_ranks,
    mrr,
    ndcg,
    rank_of_target,
    rank_of_target_tf,
    recall_at_k,
    tail_share,
    top_k_items,
)

# After tfrec_dyn, which selects Keras 2 before TensorFlow is first imported.
import tensorflow as tf  # noqa: E402


class MatrixScorer:
    """score_fn giving user u the fixed score row `matrix[u]`; the user is found
    from their (distinct) history row, so no model is needed."""

    def __init__(self, histories, matrix):
        histories = np.asarray(histories, np.int32)
        self.row_of = {h.tobytes(): u for u, h in enumerate(histories)}
        assert len(self.row_of) == len(histories), "test histories must be distinct"
        self.matrix = np.asarray(matrix, np.float32)

    def __call__(self, batch):
        item_ids = np.asarray(batch["item_ids"], np.int32)
        return self.matrix[[self.row_of[h.tobytes()] for h in item_ids]]


# ------------------------------------------------------------------ ranks
def test_rank_counts_others_scored_higher_or_equal():
    scores = np.array([0.5, 0.9, 0.5, 0.1])
    assert rank_of_target(scores, 1) == 0      # best
    assert rank_of_target(scores, 0) == 2      # 0.9 above, 0.5 tied -> counts against it
    assert rank_of_target(scores, 2) == 2      # symmetric tie: both get the worse rank
    assert rank_of_target(scores, 3) == 3      # worst


def test_all_equal_scores_get_the_worst_rank():
    assert rank_of_target(np.zeros(10), 4) == 9


def test_nan_target_gets_the_worst_rank():
    assert rank_of_target(np.array([np.nan, 0.1, -5.0]), 0) == 2


def test_candidate_mask_removes_items_but_never_the_target():
    scores = np.array([[0.2, 0.9, 0.5, 0.1]])
    mask = np.array([[False, False, True, True]])          # target column 0 masked: still ranked
    np.testing.assert_array_equal(rank_of_target(scores, np.array([0]), mask), [1])   # only 0.5 counts


def test_tf_rank_matches_numpy_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(64, 30)).astype(np.float32)   # many ties
    targets = rng.integers(0, 30, size=64)
    mask = rng.random((64, 30)) < 0.7
    np.testing.assert_array_equal(rank_of_target_tf(scores, targets).numpy(), rank_of_target(scores, targets))
    np.testing.assert_array_equal(rank_of_target_tf(scores, targets, mask).numpy(),
                                  rank_of_target(scores, targets, mask))


def test_rank_shape_errors():
    with pytest.raises(ValueError):
        rank_of_target(np.zeros((2, 3)), np.array([0]))
    with pytest.raises(ValueError):
        rank_of_target(np.zeros(3), 3)


# ------------------------------------------------------ metrics from ranks
def test_hr_ndcg_mrr_by_hand():
    ranks = np.array([0, 2, 5, 10])
    # HR@5: ranks 0 and 2 are < 5 -> 2/4
    assert hit_rate(ranks, 5) == pytest.approx(0.5)
    # NDCG@5: (1/log2(2) + 1/log2(4) + 0 + 0) / 4 = (1 + 0.5) / 4
    assert ndcg(ranks, 5) == pytest.approx(0.375)
    # MRR: (1/1 + 1/3 + 1/6 + 1/11) / 4
    assert mrr(ranks) == pytest.approx((1 + 1 / 3 + 1 / 6 + 1 / 11) / 4)
    # MRR@5: (1 + 1/3 + 0 + 0) / 4
    assert mrr(ranks, 5) == pytest.approx(1 / 3)
    # rank 5 is a hit at k = 6 only
    assert hit_rate(ranks, 6) == pytest.approx(0.75)


def test_metrics_from_ranks_keys_and_recall_equals_hr():
    out = metrics_from_ranks([0, 3], ks=(1, 5))
    assert set(out) == {"HR@1", "NDCG@1", "MRR@1", "Recall@1", "HR@5", "NDCG@5", "MRR@5", "Recall@5", "MRR"}
    assert out["HR@1"] == 0.5 and out["Recall@5"] == out["HR@5"] == 1.0
    assert out["NDCG@5"] == pytest.approx((1 + 1 / math.log2(5)) / 2)


def test_empty_group_gives_nan_and_bad_k_raises():
    assert math.isnan(hit_rate(np.array([], np.int64), 10))
    with pytest.raises(ValueError):
        ndcg([0, 1], 0)
    with pytest.raises(ValueError):
        hit_rate([0.5], 1)


def test_recall_at_k_multi_target_by_hand():
    top = np.array([[5, 7, 9, 2], [2, 3, 4, 6]])
    # user 0: {7, 8} -> 7 found: 1/2;  user 1: {4, 6, 8} -> 4, 6 found: 2/3
    assert recall_at_k(top, [[7, 8], {4, 6, 8}]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    # k = 2: user 0 top [5, 7] -> 1/2; user 1 top [2, 3] -> 0
    assert recall_at_k(top, [[7, 8], [4, 6, 8]], k=2) == pytest.approx(0.25)
    # padded target array: 0 is padding
    assert recall_at_k(top, np.array([[7, 0], [4, 0]])) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        recall_at_k(top, [[7], []])


def test_recall_with_single_target_equals_hit_rate():
    top = np.array([[5, 7, 9], [2, 3, 4], [8, 6, 2]])
    targets = np.array([9, 6, 8])
    ranks = np.array([list(row).index(t) if t in row else 99 for row, t in zip(top, targets)])
    assert recall_at_k(top, targets[:, None]) == hit_rate(ranks, 3) == pytest.approx(2 / 3)
    assert recall_at_k(top, targets) == pytest.approx(2 / 3)     # one id per user


# ---------------------------------------------------------- full protocol
V = 7   # ids 0 pad, 1 OOV, real items 2..6
HISTORIES = np.array([[0, 0, 4], [0, 3, 5]], np.int32)
SCORES = np.array([
    #  pad  oov  2    3    4    5    6
    [9.0, 9.0, 0.1, 0.5, 0.9, 0.3, 0.7],   # user 0: target 6 (0.7); seen 4 (0.9) above it
    [9.0, 9.0, 0.5, 0.8, 0.2, 0.5, 0.1],   # user 1: target 5 (0.5) is in the history; 2 ties it
], np.float32)
TARGETS = np.array([6, 5])


def test_full_exclude_seen_by_hand():
    result = evaluate(MatrixScorer(HISTORIES, SCORES), HISTORIES, TARGETS, ks=(1, 2))
    # user 0: candidates 2,3,5,6 (4 seen) -> nothing >= 0.7 -> rank 0; pad/OOV columns (9.0) never count
    # user 1: the target 5 is a seen item, so not a candidate either: a miss, ranked last among 2,4,6 + 5
    np.testing.assert_array_equal(result.ranks, [0, 3])
    np.testing.assert_array_equal(result.num_candidates, [4, 4])
    assert isinstance(result, EvaluationResult) and result.protocol == "full"
    assert result.metrics["HR@1"] == pytest.approx(0.5)                       # (1 + 0) / 2
    assert result.metrics["NDCG@2"] == pytest.approx(0.5)                     # (1 + 0) / 2
    assert result.metrics["MRR"] == pytest.approx((1 + 1 / 4) / 2)
    assert result.metrics["RepeatShare"] == 0.5
    assert result.by_target() == {"repeat": result.metrics_for([1]), "novel": result.metrics_for([0])}


def test_full_without_exclude_seen_counts_seen_items():
    result = evaluate(MatrixScorer(HISTORIES, SCORES), HISTORIES, TARGETS, exclude_seen=False, ks=(1,))
    # user 0: seen 4 (0.9) now counts -> rank 1; user 1: 3 (0.8) and tied 2 (0.5) -> rank 2
    np.testing.assert_array_equal(result.ranks, [1, 2])
    np.testing.assert_array_equal(result.num_candidates, [5, 5])


def test_full_ranking_is_independent_of_batch_size_and_accepts_tf_scores():
    rng = np.random.default_rng(1)
    users, vocab = 50, 40
    histories = np.zeros((users, 6), np.int32)
    histories[:, 1:] = rng.integers(2, vocab, size=(users, 5))
    histories[:, 0] = np.arange(users) % 2   # keeps rows distinct-ish with pad/OOV
    histories = np.unique(histories, axis=0)
    matrix = rng.integers(0, 4, size=(len(histories), vocab)).astype(np.float32)   # ties
    targets = rng.integers(2, vocab, size=len(histories))
    scorer = MatrixScorer(histories, matrix)
    a = evaluate(scorer, histories, targets, batch_size=7)
    b = evaluate(lambda batch: tf.constant(scorer(batch)), histories, targets, batch_size=256)
    np.testing.assert_array_equal(a.ranks, b.ranks)
    # cross-check with the numpy rank on the same candidate sets (a repeat target: last, a miss)
    mask = np.zeros_like(matrix, bool)
    mask[:, 2:] = True
    for u, h in enumerate(histories):
        mask[u, h] = False
    repeats = (histories == targets[:, None]).any(1)
    assert 0 < repeats.sum() < len(repeats)
    np.testing.assert_array_equal(a.ranks, np.where(repeats, mask.sum(1), rank_of_target(matrix, targets, mask)))


def test_metrics_for_a_subset_of_users():
    result = evaluate(MatrixScorer(HISTORIES, SCORES), HISTORIES, TARGETS, ks=(1,))
    assert result.metrics_for(np.array([True, False]))["HR@1"] == 1.0
    assert result.metrics_for([1])["HR@1"] == 0.0


# ------------------------------------------------------- sampled protocol
@pytest.mark.parametrize("protocol", ["full", "sampled"])
def test_repeat_targets_never_give_the_answer_away(protocol):
    """A log where a known 30 % of the targets repeat a window item, scored by a
    "recommend what they had" ranker (seen items first, else random): the old rule
    (seen items out but the target kept) would credit it with every repeat.
    With seen items excluded the repeats are misses, so it is at chance level;
    kept as candidates, a repeat competes with the other seen items."""
    rng = np.random.default_rng(0)
    users, length, vocab = 1000, 10, 500
    histories = np.stack([rng.choice(np.arange(2, vocab), length, replace=False) for _ in range(users)]).astype(np.int32)
    repeats = rng.random(users) < 0.3
    targets = np.where(repeats, histories[np.arange(users), rng.integers(0, length, users)],
                       [rng.choice(np.setdiff1d(np.arange(2, vocab), h)) for h in histories])

    def seen_first(batch):
        item_ids = np.asarray(batch["item_ids"])
        scores = rng.random((len(item_ids), vocab)).astype(np.float32)
        np.put_along_axis(scores, item_ids, 10.0 + np.arange(length, dtype=np.float32), axis=1)
        return scores

    negatives = SampledNegatives.draw(np.concatenate([histories, targets[:, None]], 1), vocab, 100, seed=0) \
        if protocol == "sampled" else None
    result = evaluate(seen_first, histories, targets, protocol=protocol, negatives=negatives, ks=(10,))
    assert result.metrics["RepeatShare"] == pytest.approx(repeats.mean())
    np.testing.assert_array_equal(result.repeats, repeats)
    groups = result.by_target()
    assert groups["repeat"]["HR@10"] == 0.0  # never credited
    chance = 10 / (vocab - 2 - length) if protocol == "full" else 10 / 101
    assert groups["novel"]["HR@10"] == pytest.approx(chance, abs=0.05)
    if protocol == "full":
        kept = evaluate(seen_first, histories, targets, exclude_seen=False, ks=(10,)).by_target()
        assert kept["repeat"]["HR@10"] == 1.0 and kept["novel"]["HR@10"] == 0.0  # 10 seen items fill the top 10


def test_sampled_by_hand():
    negatives = np.array([[2, 3, 5], [4, 6, 2]])
    result = evaluate(MatrixScorer(HISTORIES, SCORES), HISTORIES, TARGETS, protocol="sampled",
                      negatives=negatives, ks=(1,))
    # user 0: target 0.7 vs 0.1, 0.5, 0.3 -> rank 0; user 1: its target 5 is a seen item -> a miss
    np.testing.assert_array_equal(result.ranks, [0, 3])
    np.testing.assert_array_equal(result.num_candidates, [4, 4])
    assert result.metrics["MRR"] == pytest.approx((1 + 1 / 4) / 2)
    # Seen items kept as candidates: user 1's 0.5 vs 0.2, 0.1, 0.5 (tie) -> rank 1
    kept = evaluate(MatrixScorer(HISTORIES, SCORES), HISTORIES, TARGETS, protocol="sampled",
                    negatives=negatives, ks=(1,), exclude_seen=False)
    np.testing.assert_array_equal(kept.ranks, [0, 1])


def test_sampled_rejects_negatives_that_hit_target_or_history():
    scorer = MatrixScorer(HISTORIES, SCORES)
    with pytest.raises(ValueError, match="negatives"):
        evaluate(scorer, HISTORIES, TARGETS, protocol="sampled", negatives=np.array([[6, 2], [2, 4]]))
    with pytest.raises(ValueError, match="negatives"):
        evaluate(scorer, HISTORIES, TARGETS, protocol="sampled", negatives=np.array([[4, 2], [2, 4]]))
    with pytest.raises(ValueError, match="negatives"):
        evaluate(scorer, HISTORIES, TARGETS, protocol="sampled")
    with pytest.raises(ValueError, match="negatives"):
        evaluate(scorer, HISTORIES, TARGETS, protocol="sampled", negatives=np.array([[2, 3]]))


def test_evaluate_validation_errors():
    scorer = MatrixScorer(HISTORIES, SCORES)
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate(scorer, HISTORIES, TARGETS, protocol="leave-one-out")
    with pytest.raises(ValueError, match="targets"):
        evaluate(scorer, HISTORIES, np.array([6]))
    with pytest.raises(ValueError, match="padding"):
        evaluate(scorer, HISTORIES, np.array([6, 0]))
    with pytest.raises(ValueError, match="OOV"):
        evaluate(scorer, HISTORIES, np.array([1, 5]))
    with pytest.raises(ValueError, match="< V"):
        evaluate(scorer, HISTORIES, np.array([6, 7]))
    with pytest.raises(ValueError, match="histories"):
        evaluate(scorer, HISTORIES[0], TARGETS[:1])
    with pytest.raises(ValueError, match="score_fn"):
        evaluate(lambda batch: np.zeros((1, V)), HISTORIES, TARGETS)
    with pytest.raises(ValueError):
        evaluate(scorer, HISTORIES, TARGETS, ks=())


# -------------------------------------------------------- sampled negatives
def _random_sequences(rng, users, vocab, max_len):
    lengths = rng.integers(1, max_len + 1, size=users)
    return [rng.choice(np.arange(2, vocab), size=n, replace=False) for n in lengths]


def test_negatives_never_in_history_no_duplicates_real_ids():
    rng = np.random.default_rng(3)
    vocab = 60
    sequences = _random_sequences(rng, 300, vocab, 40)      # dense histories: many rejections
    for sampler in ("uniform", "popularity"):
        negs = SampledNegatives.draw(sequences, vocab, num_negatives=15, sampler=sampler,
                                     item_counts=count_items(sequences, vocab), seed=11)
        assert negs.negatives.shape == (300, 15) and negs.negatives.dtype == np.int32
        assert negs.negatives.min() >= 2 and negs.negatives.max() < vocab
        for row, seq in zip(negs.negatives, sequences):
            assert len(set(row.tolist())) == 15
            assert not set(row.tolist()) & set(seq.tolist())


def test_negatives_padded_histories_and_determinism():
    rng = np.random.default_rng(4)
    histories = np.zeros((100, 10), np.int32)
    histories[:, 3:] = rng.integers(2, 500, size=(100, 7))
    a = SampledNegatives.draw(histories, 500, num_negatives=100, seed=123)
    b = SampledNegatives.draw(histories, 500, num_negatives=100, seed=123)
    c = SampledNegatives.draw(histories, 500, num_negatives=100, seed=124)
    np.testing.assert_array_equal(a.negatives, b.negatives)
    assert not np.array_equal(a.negatives, c.negatives)
    assert not np.isin(0, a.negatives) and not np.isin(1, a.negatives)
    for row, h in zip(a.negatives, histories):
        assert not np.isin(row, h).any()


def test_negatives_save_load_round_trip(tmp_path):
    histories = np.array([[0, 2, 3], [4, 5, 6]], np.int32)
    negs = SampledNegatives.draw(histories, 30, num_negatives=5, seed=9)
    path = negs.save(os.path.join(tmp_path, "test_negatives"))
    assert path.endswith(".npz") and os.path.exists(path)
    loaded = SampledNegatives.load(path)
    np.testing.assert_array_equal(loaded.negatives, negs.negatives)
    assert (loaded.vocab_size, loaded.sampler, loaded.seed) == (30, "uniform", 9)


def test_popularity_sampler_favours_popular_items():
    vocab = 102                                   # 100 real items
    counts = np.zeros(vocab)
    counts[2:] = np.arange(1, 101)                # item i + 2 has count i + 1
    histories = np.zeros((2000, 1), np.int32)     # nobody has seen anything
    pop = SampledNegatives.draw(histories, vocab, num_negatives=5, sampler="popularity",
                                item_counts=counts, seed=0).negatives
    uni = SampledNegatives.draw(histories, vocab, num_negatives=5, sampler="uniform", seed=0).negatives
    freq_pop = np.bincount(pop.ravel(), minlength=vocab)[2:]
    freq_uni = np.bincount(uni.ravel(), minlength=vocab)[2:]
    # popular half drawn far more often than the unpopular half (expected ratio ~ 3 by mass)
    assert freq_pop[50:].sum() > 2 * freq_pop[:50].sum()
    assert 0.8 < freq_uni[50:].sum() / freq_uni[:50].sum() < 1.25
    assert np.corrcoef(counts[2:], freq_pop)[0, 1] > 0.9


def test_popularity_sampler_never_draws_zero_count_items():
    counts = np.array([0, 0, 5, 0, 3, 2, 0, 1])
    negs = SampledNegatives.draw(np.zeros((50, 1), np.int32), 8, num_negatives=3, sampler="popularity",
                                 item_counts=counts, seed=1)
    assert set(np.unique(negs.negatives)) <= {2, 4, 5, 7}


def test_negatives_errors():
    with pytest.raises(ValueError, match="fewer than"):
        SampledNegatives.draw([[2, 3, 4]], 6, num_negatives=2)        # only item 5 left
    with pytest.raises(ValueError, match="sampler"):
        SampledNegatives.draw([[2]], 6, num_negatives=1, sampler="zipf")
    with pytest.raises(ValueError, match="item_counts"):
        SampledNegatives.draw([[2]], 6, num_negatives=1, sampler="popularity")


# -------------------------------------------------------- beyond accuracy
def test_item_coverage_by_hand():
    # V = 8 -> real items 2..7 (6 items); recommended: 2, 3, 5 -> 3/6
    assert item_coverage(np.array([[2, 3], [3, 5], [2, 5]]), vocab_size=8) == pytest.approx(0.5)
    assert item_coverage(np.array([[2, 0]]), vocab_size=4) == pytest.approx(0.5)   # 0 = empty slot
    with pytest.raises(ValueError):
        item_coverage(np.array([[1, 2]]), vocab_size=4)                 # OOV is never an item


def test_gini_index_by_hand():
    # V = 6 -> n = 4 real items; counts: item2 = 3, item3 = 2, item4 = 1, item5 = 0
    # sorted (0, 1, 2, 3), weights 2i - n - 1 = (-3, -1, 1, 3): (0 - 1 + 2 + 9) / (4 * 6) = 10 / 24
    top = np.array([[2, 3], [2, 4], [2, 3]])
    assert gini_index(top, vocab_size=6) == pytest.approx(10 / 24)
    assert gini_index(np.array([[2, 3], [4, 5]]), vocab_size=6) == pytest.approx(0.0)       # equal
    assert gini_index(np.array([[2], [2], [2]]), vocab_size=6) == pytest.approx(3 / 4)      # (n-1)/n
    with pytest.raises(ValueError):
        gini_index(np.zeros((2, 2), np.int32), vocab_size=6)


def test_tail_share_and_head_tail_items_by_hand():
    # 10 real items (ids 2..11) with counts 10, 9, ..., 1: head 20% = ids 2, 3
    counts = np.concatenate([[0, 0], np.arange(10, 0, -1)])
    head, tail = head_tail_items(counts)
    assert head.tolist() == [2, 3] and tail.tolist() == list(range(4, 12))
    top = np.array([[2, 3, 4], [2, 5, 0]])                  # 5 filled slots, 2 of them tail (4, 5)
    assert tail_share(top, tail) == pytest.approx(2 / 5)
    # ties broken by the smaller id
    head, _ = head_tail_items(np.array([0, 0, 1, 3, 3, 1, 1]), head_fraction=0.2)   # 5 items -> 1 head
    assert head.tolist() == [3]


def test_count_items():
    counts = count_items([np.array([2, 3, 3]), np.array([1, 4])], vocab_size=6)
    assert counts.tolist() == [0, 0, 1, 2, 1, 0]


def test_top_k_items_by_hand():
    top = top_k_items(MatrixScorer(HISTORIES, SCORES), HISTORIES, k=3)
    # user 0 (4 seen): 6 (.7), 3 (.5), 5 (.3); user 1 (3, 5 seen): 2 (.5), 4 (.2), 6 (.1)
    assert top.tolist() == [[6, 3, 5], [2, 4, 6]]
    top = top_k_items(MatrixScorer(HISTORIES, SCORES), HISTORIES, k=2, exclude_seen=False)
    assert top.tolist() == [[4, 6], [3, 2]]    # user 1: 2 and 5 tie at .5 -> the smaller id first
    # fewer candidates than k -> empty (0) slots
    top = top_k_items(MatrixScorer(HISTORIES, SCORES), HISTORIES, k=5)
    assert top[1].tolist() == [2, 4, 6, 0, 0]


# ---------------------------------------------------- MovieLens-100K scale
def test_full_ranking_runs_at_movielens_100k_scale():
    users, items = 943, 1684
    vocab = items + 2
    rng = np.random.default_rng(0)
    histories = np.zeros((users, 50), np.int32)
    for u in range(users):
        n = rng.integers(5, 51)
        histories[u, 50 - n:] = rng.choice(np.arange(2, vocab), size=n, replace=False)
    targets = rng.integers(2, vocab, size=users)
    matrix = rng.standard_normal((users, vocab)).astype(np.float32)
    scorer = MatrixScorer(histories, matrix)

    result = evaluate(scorer, histories, targets, protocol="full", ks=(5, 10, 20))
    # The same ranks straight from the matrix: candidates are the real items the user has not
    # seen, plus the target; pessimistic ties; a seen target is a miss.
    seen = np.zeros((users, vocab), bool)
    seen[np.arange(users)[:, None], histories] = True
    seen[:, :2] = True
    repeat = seen[np.arange(users), targets]
    counts = (~seen).sum(1) + repeat
    target_scores = matrix[np.arange(users), targets]
    above = ((matrix >= target_scores[:, None]) & ~seen).sum(1) - ~repeat  # less the target itself
    np.testing.assert_array_equal(result.num_candidates, counts)
    np.testing.assert_array_equal(result.ranks, np.where(repeat, counts - 1, above))

    top = top_k_items(scorer, histories, k=10)
    assert top.shape == (users, 10) and top.min() >= 2
    assert 0.0 < item_coverage(top, vocab) <= 1.0 and 0.0 <= gini_index(top, vocab) < 1.0

    sequences = np.concatenate([histories, targets[:, None]], axis=1)
    negatives = SampledNegatives.draw(sequences, vocab, seed=0)
    sampled = evaluate(scorer, histories, targets, protocol="sampled", negatives=negatives)
    assert np.all(sampled.ranks <= 100)
