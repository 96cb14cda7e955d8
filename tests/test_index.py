"""The approximate index of served top-k lists: its clusters, its lists against the exact ones."""

import numpy as np
import pytest
import tensorflow as tf
from graphs import whole_table_reads

from tfrec_dyn.data import Vocabulary
from tfrec_dyn.models import RDRSR, AdaSplit, SASRec
from tfrec_dyn.serving.export import RecommenderModule, export_saved_model
from tfrec_dyn.serving.index import ClusterIndexConfig, ServingIndex, build_cluster_index, index_recall

MAX_LEN = 6
NUM_ITEMS = 300


def _model(cls=SASRec, **kwargs):
    model = cls(NUM_ITEMS + 2, MAX_LEN, embed_dim=8, **kwargs)
    model({"item_ids": np.full((1, MAX_LEN), 2, np.int32)})
    return model


def test_every_item_is_in_exactly_one_cluster_behind_its_representative():
    vectors = np.random.default_rng(0).normal(size=(NUM_ITEMS + 2, 8)).astype(np.float32)
    index = build_cluster_index(vectors, ClusterIndexConfig(num_clusters=17, probes=4))
    assert sorted(index.order.tolist()) == list(range(2, NUM_ITEMS + 2))
    assert index.offsets[0] == 0 and index.offsets[-1] == NUM_ITEMS and np.all(index.sizes() > 0)
    assert index.num_clusters <= 17 and index.probes == 4
    for cluster in range(index.num_clusters):
        members = index.members(cluster)
        assert index.representatives[cluster] == members[0]  # the member nearest the centroid comes first
        # Each member is nearer its own cluster's mean than any other cluster's mean.
        means = np.stack([vectors[index.members(c)].mean(0) for c in range(index.num_clusters)])
        distances = ((vectors[members][:, None] - means[None]) ** 2).sum(-1)
        assert np.mean(np.argmin(distances, 1) == cluster) > 0.8


def test_well_separated_groups_become_the_clusters():
    centres = np.array([[10, 0], [0, 10], [-10, 0]], np.float32)
    group = np.repeat(np.arange(3), 40)
    vectors = np.concatenate([np.zeros((2, 2), np.float32),
                              centres[group] + np.random.default_rng(1).normal(size=(120, 2)).astype(np.float32)])
    index = build_cluster_index(vectors, ClusterIndexConfig(num_clusters=3))
    assert sorted(sorted(group[index.members(c) - 2].tolist()) for c in range(3)) == \
        [[0] * 40, [1] * 40, [2] * 40]


def test_bad_settings_and_no_items_are_refused():
    with pytest.raises(ValueError, match="probes >= 1"):
        ClusterIndexConfig(probes=0)
    with pytest.raises(ValueError, match="no items to index"):
        build_cluster_index(np.zeros((2, 4), np.float32))


def _histories():
    rng = np.random.default_rng(2)
    histories = rng.integers(2, NUM_ITEMS + 2, size=(5, MAX_LEN)).astype(np.int32)
    histories[1, :3] = 0  # padding
    histories[2, :] = 0  # empty
    return histories


@pytest.mark.parametrize("cls, kwargs", [(SASRec, {}), (RDRSR, {"window_len": 4}),
                                         (AdaSplit, {"window_len": 4, "scoring": "max"})],
                         ids=["sasrec", "rdrsr", "adasplit"])
def test_probing_every_cluster_gives_the_exact_lists(cls, kwargs):
    model = _model(cls, **kwargs)
    vocab = Vocabulary([f"i{i}" for i in range(NUM_ITEMS)])
    index = build_cluster_index(model.output_embeddings().numpy(), ClusterIndexConfig(num_clusters=20, probes=20))
    exact = RecommenderModule(model, vocab, np.arange(vocab.size), MAX_LEN)
    indexed = RecommenderModule(model, vocab, np.arange(vocab.size), MAX_LEN, index=index)
    requests = tf.constant(np.reshape(vocab.decode(_histories().ravel()), _histories().shape))
    for exclude_seen in (True, False):
        for k in (10, NUM_ITEMS + 5):  # more than there are: clipped as the exact list clips it
            want = exact._serve(requests, tf.constant(k), tf.constant(exclude_seen))
            got = indexed._serve(requests, tf.constant(k), tf.constant(exclude_seen))
            np.testing.assert_array_equal(got["item_ids"].numpy(), want["item_ids"].numpy())
            np.testing.assert_allclose(got["scores"].numpy(), want["scores"].numpy(), rtol=1e-5, atol=1e-6)
    window, state = exact.user_state(tf.constant(_histories()))
    assert index_recall(exact, state, window, vocab.size, ServingIndex(index)) == 1.0


def _example(history, target):
    feature = {"item_ids": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode() for t in history])),
               "target_item_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[target.encode()]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_an_exported_index_lists_only_probed_clusters_and_keeps_exact_ranks(tmp_path):
    model = _model()
    vocab = Vocabulary([f"i{i}" for i in range(NUM_ITEMS)])
    counts = np.arange(vocab.size)
    index = build_cluster_index(model.output_embeddings().numpy(), ClusterIndexConfig(num_clusters=20, probes=2))
    export_saved_model(model, vocab, counts, MAX_LEN, str(tmp_path / "exact"))
    export_saved_model(model, vocab, counts, MAX_LEN, str(tmp_path / "indexed"), index=index)
    exact, indexed = (tf.saved_model.load(str(tmp_path / name)) for name in ("exact", "indexed"))
    assert not hasattr(exact, "index") and indexed.index.order.shape == (NUM_ITEMS,)
    history = [["i5", "i17", "i40"]]
    request = dict(item_ids=tf.constant(history), k=tf.constant(10), exclude_seen=tf.constant(True))
    listed = [t.decode() for t in indexed.signatures["serving_default"](**request)["item_ids"].numpy()[0]]
    # Ten unseen items, all from the two clusters whose representatives the model scores highest.
    module = RecommenderModule(model, vocab, counts, MAX_LEN)
    _, state = module.user_state(tf.constant([vocab.encode(history[0])]))
    coarse = module.score_items(state, tf.constant(index.representatives)).numpy()[0]
    probed = np.concatenate([index.members(c) for c in np.argsort(-coarse)[:2]])
    assert len(listed) == 10 and not set(listed) & set(history[0])
    assert set(vocab.encode(listed)) <= set(probed.tolist())
    # The index reads neither the item table nor its own order whole; the evaluation rank stays exact.
    for name in ("serving_default", "serving_tf_example"):
        assert whole_table_reads(indexed.signatures[name], vocab.size) == [], name
        assert whole_table_reads(indexed.signatures[name], NUM_ITEMS) == [], name
    examples = tf.constant([_example(["i5", "i17"], "i3"), _example(["i9"], "i200")])
    ranks = [m.signatures["serving_tf_example"](examples=examples)["target_rank"].numpy() for m in (exact, indexed)]
    np.testing.assert_array_equal(*ranks)
