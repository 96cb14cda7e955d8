"""The exported SavedModel: raw ids in and out, defaults, robustness, both signatures."""

import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from graphs import whole_table_reads

from tfrec_dyn.data import Vocabulary, pad_left
from tfrec_dyn.models import RDRSR, RETR, AdaSplit, SASRec
from tfrec_dyn.serving.export import WARMUP_FILE, export_saved_model

MAX_LEN = 6


@pytest.fixture(scope="module", params=[SASRec, RETR, functools.partial(RDRSR, window_len=4),
                                        functools.partial(AdaSplit, window_len=4)],
                ids=["sasrec", "retr", "rdrsr", "adasplit"])
def exported(request, tmp_path_factory):
    """Every model exports through the same code and serves the same request format."""
    vocab = Vocabulary([f"item{i}" for i in range(20)])
    model = request.param(vocab.size, MAX_LEN, embed_dim=8)
    counts = np.zeros(vocab.size, np.int64)
    counts[vocab.encode(["item7", "item3", "item11"])] = [30, 20, 10]
    path = str(tmp_path_factory.mktemp("export") / "1")
    export_saved_model(model, vocab, counts, MAX_LEN, path)
    return model, vocab, path


def _expected(model, vocab, history, k):
    ids, _ = model.recommend({"item_ids": pad_left([vocab.encode(history)], MAX_LEN)}, k=k)
    return vocab.decode(ids[0].numpy())


def _serve(path, item_ids, **kwargs):
    signature = tf.saved_model.load(path).signatures["serving_default"]
    kwargs = {"k": tf.constant(kwargs.get("k", 10)), "exclude_seen": tf.constant(kwargs.get("exclude_seen", True))}
    out = signature(item_ids=tf.constant(item_ids), **kwargs)
    return [[t.decode() for t in row] for row in out["item_ids"].numpy()], out["scores"].numpy()


def test_loads_in_a_fresh_process_without_tfrec_dyn(exported):
    model, vocab, path = exported
    code = (
        "import json, sys, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['serving_default'](item_ids=tf.constant([['item1', 'item2', 'item5']]),"
        " k=tf.constant(5), exclude_seen=tf.constant(True))\n"
        "print(json.dumps([t.decode() for t in out['item_ids'].numpy()[0]]))\n"
        "print(json.dumps('tfrec_dyn' in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, env=env, timeout=300,
                         cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    served, imported = [json.loads(line) for line in out.stdout.strip().splitlines()[-2:]]
    assert served == _expected(model, vocab, ["item1", "item2", "item5"], 5)
    assert imported is False


def test_served_ranking_never_reads_the_item_table_whole(exported):
    # A whole read copies the table once per chunk (copy-on-read after the first lookup): a
    # request over 300k items took 330 ms instead of 20 ms.  Saving traces `tf.cast(table)` as one.
    _, vocab, path = exported
    loaded = tf.saved_model.load(path)
    for name in ("serving_default", "serving_tf_example"):
        assert whole_table_reads(loaded.signatures[name], vocab.size) == [], name


def test_k_and_exclude_seen_are_inputs_with_defaults(exported):
    from tensorflow.python.tools import saved_model_utils

    _, _, path = exported
    signature = saved_model_utils.get_meta_graph_def(path, "serve").signature_def["serving_default"]
    assert set(signature.inputs) == {"item_ids", "k", "exclude_seen"}
    assert set(signature.defaults) == {"k", "exclude_seen"}
    assert tf.make_ndarray(signature.defaults["k"]) == 10
    # The restored tf.function keeps the Python defaults too.
    loaded = tf.saved_model.load(path)
    out = loaded.serve(tf.constant([["item1"]]))
    assert out["item_ids"].shape == (1, 10)


def test_seen_items_excluded_unless_asked(exported):
    _, _, path = exported
    history = ["item1", "item2", "item5"]
    served, scores = _serve(path, [history], k=20)
    assert not set(served[0]) & set(history)
    # 20 items, 3 seen: the last 3 slots are empty.
    assert served[0][-3:] == ["", "", ""] and np.all(np.isneginf(scores[0, -3:]))
    served, _ = _serve(path, [history], k=20, exclude_seen=False)
    assert set(history) <= set(served[0])


def test_unknown_empty_and_over_long_histories(exported):
    model, vocab, path = exported
    # Unknown ids are dropped; "" is padding anywhere in the row.
    served, _ = _serve(path, [["nope", "item1", "", "item2"], ["item1", "item2", "", ""]], k=5)
    assert served[0] == served[1] == _expected(model, vocab, ["item1", "item2"], 5)
    # Empty (or only unknown) histories get the most popular items.
    served, _ = _serve(path, [["", ""], ["nope", "zzz"]], k=3)
    assert served == [["item7", "item3", "item11"]] * 2
    # Over-long histories keep the most recent max_len items.
    long_history = [f"item{i}" for i in range(15)]
    served, _ = _serve(path, [long_history], k=4)
    assert served[0] == _expected(model, vocab, long_history[-MAX_LEN:], 4)
    # k is clipped to the number of items instead of failing.
    served, _ = _serve(path, [["item1"]], k=1000, exclude_seen=False)
    assert len(served[0]) == 20


def test_tf_example_signature_matches_serving_default(exported):
    _, _, path = exported
    example = tf.train.Example(features=tf.train.Features(feature={
        "item_ids": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"item4", b"item9"]))}))
    signature = tf.saved_model.load(path).signatures["serving_tf_example"]
    out = signature(examples=tf.constant([example.SerializeToString()]))
    served = [t.decode() for t in out["item_ids"].numpy()[0]]
    assert served[:5] == _serve(path, [["item4", "item9"]], k=5)[0][0]
    assert len(served) == 20  # EXAMPLE_K (50) clipped to the 20 items; the 2 seen ones are ""
    assert served[-2:] == ["", ""]


def _example(history, target=None):
    feature = {"item_ids": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode() for t in history]))}
    if target is not None:
        feature["target_item_id"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[target.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_tf_example_target_rank_is_the_full_protocol_rank(exported):
    """The Evaluator's ranks are `evaluate`'s: a seen target ranked last among the
    unseen items, an unknown or missing target a miss at every cut-off."""
    from tfrec_dyn.metrics import evaluate

    model, vocab, path = exported
    cases = [(["item4", "item9"], "item3"), (["item1", "item2", "item5"], "item2"),  # item2: seen
             (["item8"] * 3 + ["item0", "item19", "item6", "item12", "item13"], "item0")]  # over-long, seen
    signature = tf.saved_model.load(path).signatures["serving_tf_example"]
    out = signature(examples=tf.constant([_example(h, t) for h, t in cases] + [_example(["item4"], "nope"),
                                                                               _example(["item4"])]))
    histories = pad_left([vocab.encode(h) for h, _ in cases], MAX_LEN)
    expected = evaluate(lambda batch: model.score(batch), histories, vocab.encode([t for _, t in cases])).ranks
    np.testing.assert_array_equal(out["target_rank"].numpy(), list(expected) + [20, 20])
    assert expected[1] == 20 - 3  # a seen target is a miss: after the 17 unseen items (protocols, "repeat targets")


def test_hstu_serves_and_evaluates_with_the_timestamps_it_trained_on(tmp_path):
    """HSTU's time bias reads `timestamp` in both signatures (int64 in the pipeline's
    examples, float seconds in requests): the served lists and the Evaluator's ranks
    are the model's with those timestamps, and left out they fall back to position only."""
    from tfrec_dyn.metrics import evaluate
    from tfrec_dyn.models import HSTU

    vocab = Vocabulary([f"item{i}" for i in range(20)])
    model = HSTU(vocab.size, MAX_LEN, embed_dim=8)
    model({"item_ids": tf.zeros([1, MAX_LEN], tf.int32)})
    for block in model.blocks:  # time buckets that matter
        block.relative_bias.time_bias.assign(tf.range(129, dtype=tf.float32) / 5.0)
    path = str(tmp_path / "1")
    export_saved_model(model, vocab, np.ones(vocab.size, np.int64), MAX_LEN, path)
    cases = [(["item4", "item9", "item1"], [0, 60, 86400], "item3"), (["item2", "item5"], [100, 100000], "item7")]
    examples = [tf.train.Example(features=tf.train.Features(feature={
        "item_ids": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode() for t in history])),
        "timestamp": tf.train.Feature(int64_list=tf.train.Int64List(value=stamps)),
        "target_item_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[target.encode()]))}))
        .SerializeToString() for history, stamps, target in cases]
    loaded = tf.saved_model.load(path)
    ranks = loaded.signatures["serving_tf_example"](examples=tf.constant(examples))["target_rank"].numpy()
    histories = pad_left([vocab.encode(h) for h, _, _ in cases], MAX_LEN)
    stamps = pad_left([np.array(s, np.float32) for _, s, _ in cases], MAX_LEN, np.float32)
    targets = vocab.encode([t for _, _, t in cases])
    np.testing.assert_array_equal(ranks, evaluate(model, histories, targets, features={"timestamp": stamps}).ranks)

    # A Python call of a signature passes every input; TF Serving and `tfrec-dyn serve` fill in the defaults.
    unknown = dict(k=tf.constant(5), exclude_seen=tf.constant(True), timestamp=tf.constant([[-1.0]]))
    serve = loaded.signatures["serving_default"]
    served = serve(item_ids=tf.constant([cases[0][0]]),
                   **{**unknown, "timestamp": tf.constant([cases[0][1]], tf.float32)})
    with_time = model.recommend({"item_ids": histories[:1], "timestamp": stamps[:1]}, k=5)[0][0].numpy()
    assert [t.decode() for t in served["item_ids"].numpy()[0]] == vocab.decode(with_time)
    without = serve(item_ids=tf.constant([cases[0][0]]), **unknown)
    position_only = model.recommend({"item_ids": histories[:1]}, k=5)[0][0].numpy()
    assert [t.decode() for t in without["item_ids"].numpy()[0]] == vocab.decode(position_only)


def test_tfma_metrics_average_the_ranking_functions():
    """HR@10 / NDCG@10 / MRR from the signature's ranks, hand-computed."""
    import types

    from tensorflow_model_analysis.metrics import metric_types

    from tfrec_dyn.metrics.tfma_metrics import TopKHitRate, TopKMRR, TopKNDCG

    ranks = [0, 3, 12, 1]
    expected = {"HR@10": 3 / 4, "NDCG@10": (1 + 1 / np.log2(5) + 1 / np.log2(3)) / 4,
                "MRR": (1 + 1 / 4 + 1 / 13 + 1 / 2) / 4, "MRR@10": (1 + 1 / 4 + 1 / 2) / 4}
    for metric in (TopKHitRate(10), TopKNDCG(10), TopKMRR(), TopKMRR(10)):
        combiner = metric.computations(model_names=[""], output_names=[""])[0].combiner
        accumulators = []
        for part in (ranks[:1], ranks[1:]):  # two workers, merged
            accumulator = combiner.create_accumulator()
            for rank in part:
                accumulator = combiner.add_input(accumulator, types.SimpleNamespace(
                    prediction={"item_ids": np.array([b"x"]), "target_rank": np.array([rank], np.int32)}))
            accumulators.append(accumulator)
        (key, value), = combiner.extract_output(combiner.merge_accumulators(accumulators)).items()
        assert isinstance(key, metric_types.MetricKey)
        assert value == pytest.approx(expected[key.name], abs=1e-12), key.name


def test_warmup_requests_are_prediction_logs(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    _, _, path = exported
    records = list(tf.data.TFRecordDataset(os.path.join(path, WARMUP_FILE)))
    assert records
    log = prediction_log_pb2.PredictionLog.FromString(records[0].numpy())
    assert log.predict_log.request.model_spec.signature_name == "serving_default"
    assert "item_ids" in log.predict_log.request.inputs


def test_category_table_keeps_each_items_last_category():
    from tfrec_dyn.serving.export import category_table

    table = category_table([np.array([2, 3, 2]), np.array([4, 2])], [np.array([5, 6, 7]), np.array([8, 9])], 6)
    assert table.tolist() == [0, 0, 9, 6, 8, 0]  # item 2 last seen with 9, 3 with 6, 4 with 8; 5 never


def test_the_export_holds_the_model_not_its_optimizer(tmp_path):
    import tf_keras as keras

    vocab = Vocabulary([f"item{i}" for i in range(20)])
    model = SASRec(vocab.size, MAX_LEN, embed_dim=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    batch = {"item_ids": tf.constant([[0, 2, 3, 4, 5, 6]]), "targets": tf.constant([[0, 3, 4, 5, 6, 7]]),
             "negatives": tf.constant([[[0], [8], [9], [10], [11], [12]]])}
    data = tf.data.Dataset.from_tensors(batch)
    model.fit(data, verbose=0)
    path = export_saved_model(model, vocab, np.ones(vocab.size), MAX_LEN, str(tmp_path / "1"))
    saved = {name: shape for name, shape in tf.train.list_variables(os.path.join(path, "variables", "variables"))}
    tables = [name for name, shape in saved.items() if shape == [vocab.size, 8]]
    assert len(tables) == 1, saved  # the item table once; Adam's two slots of it stay behind
    assert not [name for name in saved if "optimizer" in name], saved
    model.fit(data, verbose=0)
    assert model.optimizer.iterations.numpy() == 2  # it still trains with its own optimizer
