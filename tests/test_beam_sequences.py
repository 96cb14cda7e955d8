"""The Beam sequence step (`tfrec_dyn.data.beam_sequences`): parsing shared with
the readers, time order with ties in line order, side fields, leave-one-out,
quarantine and counts, and agreement with `leave_one_out(read_movielens_100k())`."""

import glob
import gzip
import json
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from tfrec_dyn.data import DataFormatError, leave_one_out, read_jd_sessions, read_movielens_100k
from tfrec_dyn.data.splits import sample_users
from tfrec_dyn.data.beam_sequences import (
    EVAL_SAMPLE,
    EventsToSequenceExamples,
    RawLogsToSequenceExamples,
    feature_spec,
    run_sequence_job,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_MEMORY = ["--direct_running_mode=in_memory"]
SPLITS = ("train", "validation", "eval")


def _decode(serialized):
    """A serialized Example as {feature: list of values (bytes decoded)}."""
    example = tf.train.Example.FromString(serialized)
    features = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        features[name] = [v.decode() for v in values] if kind == "bytes_list" else values
    return features


def _items(serialized):
    """(user, history items, target item) of a serialized Example."""
    features = _decode(serialized)
    return features["user_id"][0], features["item_ids"], features["target_item_id"][0]


def _run(tmp_path, name, text, format, columns=None, **kwargs):  # pylint: disable=redefined-builtin
    """Runs the job in memory on one file; (counts, {split: {user: features}}, quarantine records)."""
    logs = tmp_path / name
    logs.write_bytes(text.encode() if isinstance(text, str) else text)
    out = tmp_path / "out"
    counts = run_sequence_job(str(logs), str(out), format, columns, IN_MEMORY, **kwargs)
    quarantine = [json.loads(line) for f in glob.glob(str(out / "quarantine" / "*.jsonl")) for line in open(f)]
    assert json.loads((out / "stats.json").read_text()) == counts
    return counts, _read_splits(out), sorted(quarantine, key=lambda q: (q["line"], q["detail"]))


def _read_splits(out):
    """{split: {user: features}} of a job's output folder."""
    splits = {}
    for split in SPLITS:
        files = glob.glob(str(out / "examples" / f"Split-{split}" / "*.gz"))
        records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
        splits[split] = {f["user_id"][0]: f for f in map(_decode, records)}
    return splits


def _assert_lines_balance(counts):
    assert counts["lines_read"] == (counts["lines_kept"] + counts["lines_quarantined"]
                                    + counts.get("dropped: blank line", 0))


# ------------------------------------------------------------------ ordering
def test_orders_by_time_with_ties_in_line_order(tmp_path):
    """TestPipeline + assert_that on the transform itself."""
    logs = tmp_path / "u.data"
    logs.write_text("1\ta\t5\t300\n"
                    "2\tq\t1\t10\n"
                    "1\tb\t4\t100\n"
                    "1\tc\t3\t200\n"
                    "1\td\t2\t200\n"   # tie with c at t=200: line order keeps c before d
                    "1\te\t2\t200\n"   # and d before e
                    "2\tr\t1\t5\n"
                    "2\ts\t1\t5\n")    # tie with r at t=5
    with test_pipeline.TestPipeline() as pipeline:
        outputs = pipeline | RawLogsToSequenceExamples(str(logs), "ml-100k")
        assert_that(outputs["eval"] | "DecodeEval" >> beam.Map(_items),
                    equal_to([("1", ["b", "c", "d", "e"], "a"), ("2", ["r", "s"], "q")]), label="Eval")
        assert_that(outputs["train"] | "DecodeTrain" >> beam.Map(_items),
                    equal_to([("1", ["b", "c"], "d"), ("2", [], "r")]), label="Train")
        assert_that(outputs["quarantine"], equal_to([]), label="NothingQuarantined")


def test_without_timestamps_keeps_line_order(tmp_path):
    counts, splits, _ = _run(tmp_path, "pairs.txt", "u 3\nv 9\nu 1\nu 2\nv 8\nu 0\n", "user-item")
    assert splits["eval"]["u"]["item_ids"] == ["3", "1", "2"] and splits["eval"]["u"]["target_item_id"] == ["0"]
    assert splits["train"]["v"]["item_ids"] == ["9"] and splits["train"]["v"]["target_item_id"] == ["8"]
    assert set(splits["eval"]["u"]) == {"user_id", "item_ids", "target_item_id"}  # no side fields to keep
    assert counts["users"] == 2 and counts["events"] == 6


def test_several_files_some_gzipped(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "part-0.data").write_text("1\ta\t1\t100\n1\tb\t1\t300\n")
    with gzip.open(logs / "part-1.data.gz", "wt") as f:
        f.write("1\tc\t1\t200\n1\td\t1\t300\nbad\n")
    counts = run_sequence_job(str(logs / "part-*"), str(tmp_path / "out"), "ml-100k", beam_args=IN_MEMORY)
    test = _read_splits(tmp_path / "out")["eval"]["1"]
    # Time order across files; the tie at t=300 goes by (file, line): part-0 before part-1.
    assert test["item_ids"] == ["a", "c", "b"] and test["target_item_id"] == ["d"]
    assert counts["files"] == 2 and counts["lines_read"] == 5 and counts["quarantined: wrong number of fields"] == 1


# ------------------------------------------------------------- leave-one-out
@pytest.mark.parametrize("collapse_repeats", [True, False])
def test_leave_one_out_and_the_short_user_rule(collapse_repeats):
    """Users with 1, 2, 3 and 5 events, and with runs of events on one item,
    straight from events (no files); runs count once with `collapse_repeats`
    (micro-behaviour logs), every event without (this log's default: it has
    no behaviour field)."""
    def events(user, items):
        return [(user, ((0.0, "f", line, 0), item, {"category": f"c{item}"})) for line, item in enumerate(items)]

    data = events("one", ["a"]) + events("two", ["a", "b"]) + events("three", ["a", "b", "c"]) \
        + events("five", ["a", "b", "c", "d", "e"]) \
        + events("runs", ["a", "b", "b", "c", "c"]) + events("two runs", ["a", "a", "b"])
    if collapse_repeats:
        train = [("runs", ["a"]), ("two runs", ["a", "a", "b"])]
        validation = [("runs", ["a"], ["b"])]
        evaluation = [("runs", ["a", "b", "b"], ["c"], ["ca", "cb", "cb"], ["cc"])]
    else:
        train = [("runs", ["a", "b", "b"]), ("two runs", ["a"])]
        validation = [("runs", ["a", "b", "b"], ["c"]), ("two runs", ["a"], ["a"])]
        evaluation = [("runs", ["a", "b", "b", "c"], ["c"], ["ca", "cb", "cb", "cc"], ["cc"]),
                      ("two runs", ["a", "a"], ["b"], ["ca", "ca"], ["cb"])]
    with test_pipeline.TestPipeline() as pipeline:
        splits = pipeline | beam.Create(data) | EventsToSequenceExamples(
            collapse_repeats=True if collapse_repeats else None)
        decoded = {split: splits[split] | f"Decode-{split}" >> beam.Map(_decode) for split in SPLITS}
        # Train: history + target = all but the last two (short users: everything).
        assert_that(decoded["train"] | beam.Map(lambda f: (f["user_id"][0], f["item_ids"] + f["target_item_id"])),
                    equal_to([("one", ["a"]), ("two", ["a", "b"]), ("three", ["a"]), ("five", ["a", "b", "c"])]
                             + train),
                    label="Train")
        assert_that(decoded["validation"] | beam.Map(lambda f: (f["user_id"][0], f["item_ids"], f["target_item_id"])),
                    equal_to([("three", ["a"], ["b"]), ("five", ["a", "b", "c"], ["d"])] + validation),
                    label="Validation")
        assert_that(decoded["eval"] | beam.Map(lambda f: (f["user_id"][0], f["item_ids"], f["target_item_id"],
                                                          f["category"], f["target_category"])),
                    equal_to([("three", ["a", "b"], ["c"], ["ca", "cb"], ["cc"]),
                              ("five", ["a", "b", "c", "d"], ["e"], ["ca", "cb", "cc", "cd"], ["ce"])] + evaluation),
                    label="Eval")


# -------------------------------------------------------------- side fields
JD_SAMPLE = (
    "11+5+672+2+74 11+7+672+294+74 12+5+672+4+79 13+9+870+1+15\n"
    "21+1+100+3+5 22+2+101+4+6 broken-token 23+3+102+5+7 24+1+100+1+2\n"
    "\n"
    "31+1+100+x+5 nothing-valid\n"
    "41+1+100+3+5 42+2+101+4+6\n"
)


def test_jd_sessions_keep_every_side_field_aligned(tmp_path):
    counts, splits, quarantine = _run(tmp_path, "JD_sample", JD_SAMPLE, "jd")
    train, validation, test = (splits[s] for s in SPLITS)
    first = test["JD_sample:1"]
    assert first["item_ids"] == ["11", "11", "12"] and first["target_item_id"] == ["13"]
    assert first["behavior"] == ["5", "7", "5"] and first["target_behavior"] == ["9"]
    assert first["category"] == ["672", "672", "672"] and first["target_category"] == ["870"]
    assert first["time_interval"] == [2.0, 294.0, 4.0] and first["target_time_interval"] == [1.0]
    assert first["dwell_time"] == [74.0, 74.0, 79.0] and first["target_dwell_time"] == [15.0]
    # Every split carries every field, aligned with item_ids.
    for split in (train, validation, test):
        for features in split.values():
            n = len(features["item_ids"])
            for field in ("behavior", "category", "time_interval", "dwell_time"):
                assert len(features[field]) == n and len(features[f"target_{field}"]) == 1
    assert validation["JD_sample:1"]["item_ids"] == ["11", "11"] and train["JD_sample:1"]["item_ids"] == ["11"]
    # The broken token is left out (and quarantined), the rest of session 2 kept.
    assert test["JD_sample:2"]["item_ids"] == ["21", "22", "23"] and test["JD_sample:2"]["target_item_id"] == ["24"]
    assert test["JD_sample:2"]["category"] == ["100", "101", "102"]
    assert "JD_sample:5" not in test and train["JD_sample:5"]["item_ids"] == ["41"]  # 2 events: train only
    assert [(q["line"], q["reason"]) for q in quarantine] == [
        (2, "malformed micro-behaviour"), (4, "no valid micro-behaviour")]
    assert "broken-token" in quarantine[0]["detail"] and quarantine[0]["file"].endswith("JD_sample")
    # The same lines and reasons as read_jd_sessions.
    report = read_jd_sessions(tmp_path / "JD_sample").report
    assert counts["lines_read"] == report.lines_read and counts["lines_kept"] == report.kept
    assert counts["quarantined: no valid micro-behaviour"] == report.dropped["no valid micro-behaviour"]
    assert counts["quarantined: malformed micro-behaviour"] == report.skipped["malformed micro-behaviour"]
    assert counts["dropped: blank line"] == 1 and counts["users"] == 3
    _assert_lines_balance(counts)

    # The examples parse with the published feature spec.
    records = [r.numpy() for r in tf.data.TFRecordDataset(
        glob.glob(str(tmp_path / "out" / "examples" / "Split-eval" / "*.gz")), compression_type="GZIP")]
    parsed = tf.io.parse_example(records, feature_spec(["behavior", "category", "time_interval", "dwell_time"]))
    assert parsed["target_dwell_time"].dtype == tf.float32 and parsed["behavior"].dtype == tf.string


# --------------------------------------------------------------- quarantine
def test_malformed_rows_are_counted_per_reason_and_quarantined(tmp_path):
    text = (b"1\ta\t5\t300\n"
            b"1\tb\t4\t100\n"
            b"bad line\n"                 # 3: wrong number of fields
            b"\n"                         # 4: blank: counted, not quarantined
            b"2\tz\tnot-a-number\t5\n"    # 5: bad rating
            b"1\tc\t3\t200\n"
            b"2\t\t3\t200\n"              # 7: empty item
            b"2\ty\t3\t\xff\xfe\n"        # 8: not UTF-8
            b"2\tx\t3\tnan\n"             # 9: bad timestamp
            b"1\td\t3\t400\t7\n")         # 10: wrong number of fields
    counts, splits, quarantine = _run(tmp_path, "u.data", text, "ml-100k")
    assert [(q["line"], q["reason"]) for q in quarantine] == [
        (3, "wrong number of fields"), (5, "bad rating"), (7, "bad item"), (8, "not UTF-8"),
        (9, "bad timestamp"), (10, "wrong number of fields")]
    assert quarantine[0]["text"] == "bad line" and quarantine[0]["file"].endswith("u.data")
    assert quarantine[1]["detail"] == "bad rating 'not-a-number'"
    # Counts per reason: exactly what read_movielens_100k reports.
    report = read_movielens_100k(tmp_path / "u.data").report
    quarantined = {k.split(": ", 1)[1]: v for k, v in counts.items() if k.startswith("quarantined: ")}
    dropped = {k: v for k, v in report.dropped.items() if k != "blank line"}
    assert quarantined == dropped and counts["dropped: blank line"] == report.dropped["blank line"] == 1
    assert (counts["lines_read"], counts["lines_kept"]) == (report.lines_read, report.kept) == (10, 3)
    assert counts["lines_quarantined"] == 6
    _assert_lines_balance(counts)
    assert splits["eval"]["1"]["item_ids"] == ["b", "c"] and splits["eval"]["1"]["target_item_id"] == ["a"]
    assert counts["examples: train"] == counts["examples: eval"] == counts["examples: validation"] == 1


def test_no_readable_line_raises_after_writing_the_counts(tmp_path):
    with pytest.raises(DataFormatError, match=r"no line could be read as 'ml-1m'.*wrong number of fields"):
        _run(tmp_path, "ratings.dat", "1\t2\t3\t4\n5\t6\t7\t8\n", "ml-1m")  # a u.data file read as ml-1m
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["lines_read"] == 2 and stats["quarantined: wrong number of fields"] == 2


def test_mistakes_fail_before_running(tmp_path):
    with pytest.raises(ValueError, match="needs a column mapping"):
        run_sequence_job(str(tmp_path / "x.csv"), str(tmp_path / "out"), "csv", beam_args=IN_MEMORY)
    with pytest.raises(ValueError, match="unknown format 'parquet'"):
        run_sequence_job(str(tmp_path / "x"), str(tmp_path / "out"), "parquet")
    with pytest.raises(ValueError, match="unknown canonical field"):
        run_sequence_job(str(tmp_path / "x.jsonl"), str(tmp_path / "out"), "jsonl", {"user": "u", "item": "i",
                                                                                      "colour": "c"})
    with pytest.raises(TypeError, match="columns must be a mapping"):
        run_sequence_job(str(tmp_path / "x.csv"), str(tmp_path / "out"), "csv", ["--runner=DirectRunner"])
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ log files
def test_csv_log_with_a_column_mapping(tmp_path):
    text = ("uid,sku,ts,price\n"
            "u1,a,3,9.5\n"
            "u1,b,1,1.0\n"
            "u1,c,2,\"2,5\"\n"
            "u1,d,2021-01-01T00:00:00,3\n"
            "u1,e\n")  # wrong number of fields: quarantined
    counts, splits, quarantine = _run(tmp_path, "events.csv", text, "csv",
                                      {"user": "uid", "item": "sku", "timestamp": "ts"})
    assert counts["lines_read"] == 5 and counts["lines_kept"] == 4  # the header is not a data line
    assert [(q["line"], q["reason"]) for q in quarantine] == [(6, "wrong number of fields")]
    test = splits["eval"]["u1"]
    assert test["item_ids"] == ["b", "c", "a"] and test["target_item_id"] == ["d"]
    assert test["timestamp"] == [1, 2, 3] and test["target_timestamp"] == [1609459200]  # int64 seconds
    assert test["price"] == ["1.0", "2,5", "9.5"]  # unmapped columns are kept, raw


def test_headerless_tsv_uses_positions(tmp_path):
    _, splits, _ = _run(tmp_path, "log.tsv", "u\ta\t1\nu\tb\t2\nu\tc\t3\n", "tsv",
                        {"user": 0, "item": 1, "rating": 2}, header=False)
    assert splits["eval"]["u"]["item_ids"] == ["a", "b"] and splits["eval"]["u"]["rating"] == [1.0, 2.0]


def test_jsonl_log_keeps_every_key(tmp_path):
    text = ('{"u": "x", "i": "a", "t": 2, "price": 1.5, "tags": ["p"]}\n'
            '{"u": "x", "i": "b", "t": 1, "device": "ios"}\n'
            '{"u": "x", "i": "c", "t": 3}\n'
            '{"u": "x", "t": 4}\n'          # missing the item key
            'not json\n'
            '[1, 2]\n')
    counts, splits, quarantine = _run(tmp_path, "log.jsonl", text, "jsonl", {"user": "u", "item": "i",
                                                                             "timestamp": "t"})
    test = splits["eval"]["x"]
    assert test["item_ids"] == ["b", "a"] and test["target_item_id"] == ["c"]
    assert test["price"] == ["", "1.5"] and test["tags"] == ["", '["p"]'] and test["device"] == ["ios", ""]
    assert test["target_price"] == [""]
    assert [(q["line"], q["reason"]) for q in quarantine] == [
        (4, "missing 'i'"), (5, "invalid JSON"), (6, "not a JSON object")]
    assert counts["lines_kept"] == 3


# ----------------------------------------------- agreement with the data layer
@pytest.mark.slow
def test_matches_leave_one_out_on_movielens_with_multi_processing(tmp_path):
    """One multi-process run on the first 2000 lines of ml-100k: the examples are
    `leave_one_out(read_movielens_100k(...))`, user by user."""
    source = os.path.join(REPO, "tfrec_dyn", "data", "resources", "ml-100k", "u.data")
    with open(source) as f:
        head = [next(f) for _ in range(2000)]
    logs = tmp_path / "u.data"
    logs.write_text("".join(head))
    out = tmp_path / "out"
    counts = run_sequence_job(str(logs), str(out), "ml-100k", beam_args=[
        "--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        eval_users=7)

    data = read_movielens_100k(str(logs))
    split = leave_one_out(data)
    examples = {}
    for name in (*SPLITS, EVAL_SAMPLE):
        files = glob.glob(str(out / "examples" / f"Split-{name}" / "*.gz"))
        examples[name] = {f["user_id"][0]: f for f in (
            _decode(r.numpy()) for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))}
    assert counts["lines_read"] == counts["lines_kept"] == 2000 and counts["users"] == data.num_users
    assert counts["examples: train"] == len(examples["train"]) == split.train.num_users
    assert counts["examples: eval"] == len(examples["eval"]) == split.test.num_users
    assert counts["short users (train only)"] == split.num_short_users
    # The eval examples of the users `sample_users` draws (what `tfrec-dyn evaluate --eval-users 7` scores).
    sampled = [split.test.inputs.user_ids[row] for row in sample_users(split.test.inputs.user_ids, 7)]
    assert counts[f"examples: {EVAL_SAMPLE}"] == 7 and sorted(examples[EVAL_SAMPLE]) == sorted(sampled)
    assert all(examples[EVAL_SAMPLE][user] == examples["eval"][user] for user in sampled)

    train = examples["train"]
    for user, items, ratings in zip(split.train.user_ids, split.train.items, split.train.side["rating"]):
        assert train[user]["item_ids"] + train[user]["target_item_id"] == items.tolist()
        assert np.allclose(train[user]["rating"] + train[user]["target_rating"], ratings)
    for name, eval_split in (("validation", split.validation), ("eval", split.test)):
        got = examples[name]
        for user, history, stamps, target in zip(eval_split.inputs.user_ids, eval_split.inputs.items,
                                                 eval_split.inputs.side["timestamp"], eval_split.target_items()):
            assert got[user]["item_ids"] == history.tolist() and got[user]["target_item_id"] == [target]
            assert got[user]["timestamp"] == stamps.astype(np.int64).tolist()


def test_matches_leave_one_out_on_jd_sessions_with_item_repeats(tmp_path):
    """Micro-behaviour sessions repeat an item on consecutive events: the Beam
    examples are still `leave_one_out(read_jd_sessions(...))` (one rule,
    `splits.leave_one_out_cuts`), targets at the starts of item runs."""
    from test_hup import write_jd_sessions

    text = write_jd_sessions(tmp_path / "JD_source", num_sessions=80).read_text()
    counts, splits, _ = _run(tmp_path, "JD_sample", text, "jd")
    split = leave_one_out(read_jd_sessions(tmp_path / "JD_sample"))
    assert any(len(set(s)) < len(s) for s in split.train.items)  # the data has repeats
    assert set(splits["train"]) == set(split.train.user_ids) and counts["users"] == split.train.num_users
    for user, items, behaviors in zip(split.train.user_ids, split.train.items, split.train.side["behavior"]):
        example = splits["train"][user]
        assert example["item_ids"] + example["target_item_id"] == items.tolist()
        assert example["behavior"] + example["target_behavior"] == behaviors.tolist()
    for name, eval_split in (("validation", split.validation), ("eval", split.test)):
        assert set(splits[name]) == set(eval_split.inputs.user_ids), name
        for user, history, target in zip(eval_split.inputs.user_ids, eval_split.inputs.items,
                                         eval_split.target_items()):
            assert splits[name][user]["item_ids"] == history.tolist()
            assert splits[name][user]["target_item_id"] == [target]


# ---------------------------------------------------------- bounded users
def test_a_user_keeps_only_its_newest_events_and_the_cut_is_counted(tmp_path):
    """30 events for user 1 (out of order in the file), 4 for user 2, at most 10 kept
    per user: user 1's examples are leave-one-out of its newest 10, counted as truncated."""
    rng = np.random.default_rng(0)
    stamps = rng.permutation(30) + 100
    lines = [f"1\ti{t}\t5\t{t}" for t in stamps] + [f"2\tj{t}\t5\t{t}" for t in range(4)]
    counts, splits, _ = _run(tmp_path, "u.data", "\n".join(lines) + "\n", "ml-100k", max_events_per_user=10)
    assert (counts["truncated users"], counts["truncated events"]) == (1, 20)
    newest = [f"i{t}" for t in range(120, 130)]
    assert splits["eval"]["1"]["item_ids"] + splits["eval"]["1"]["target_item_id"] == newest
    assert splits["train"]["1"]["item_ids"] + splits["train"]["1"]["target_item_id"] == newest[:-2]
    assert splits["eval"]["2"]["item_ids"] == ["j0", "j1", "j2"]  # under the limit: untouched
    assert counts["events"] == 34 and counts["users"] == 2


# ---------------------------------------------------------- portable runner
def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port, process, seconds=90):
    import socket
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args[2]} exited with {process.returncode}: {process.stderr.read()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"{process.args[2]} did not listen on port {port} within {seconds} s")


@pytest.mark.slow
def test_portable_runner_with_an_external_worker_pool_counts_like_the_direct_runner(tmp_path):
    """The job API of Flink, Spark and Dataflow, locally: Beam's Python job service and a pool of
    SDK worker processes on 127.0.0.1. Same examples, same quarantine counts as the DirectRunner."""
    import subprocess
    import sys

    source = os.path.join(REPO, "tfrec_dyn", "data", "resources", "ml-100k", "u.data")
    with open(source) as f:
        head = [next(f) for _ in range(1500)]
    head[10], head[20], head[30] = "bad line\n", "\n", "7\t8\tnot-a-number\t5\n"
    logs = tmp_path / "u.data"
    logs.write_text("".join(head))
    job_port, pool_port = _free_port(), _free_port()
    # The pool starts each SDK worker as `python` from PATH: this environment's, as an activated venv.
    env = dict(os.environ, PYTHONPATH=REPO, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    services = [subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env, text=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for module, args in (
                    ("apache_beam.runners.portability.local_job_service_main", ["--port", str(job_port)]),
                    ("apache_beam.runners.worker.worker_pool_main", ["--service_port", str(pool_port)]))]
    try:
        for process, port in zip(services, (job_port, pool_port)):
            _wait_for_port(port, process)
        portable = run_sequence_job(str(logs), str(tmp_path / "portable"), "ml-100k", beam_args=[
            "--runner=PortableRunner", f"--job_endpoint=127.0.0.1:{job_port}", "--environment_type=EXTERNAL",
            f"--environment_config=127.0.0.1:{pool_port}"])
    finally:
        for process in services:
            process.kill()
            process.communicate(timeout=30)
    direct = run_sequence_job(str(logs), str(tmp_path / "direct"), "ml-100k", beam_args=IN_MEMORY)
    assert portable == direct
    assert portable["quarantined: wrong number of fields"] == 1 and portable["quarantined: bad rating"] == 1
    assert portable["dropped: blank line"] == 1 and portable["lines_kept"] == 1497
    assert _read_splits(tmp_path / "portable") == _read_splits(tmp_path / "direct")
