"""The Beam sequence step: ordering, side fields, leave-one-out, quarantine."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfrec_dyn.data import leave_one_out, read_movielens_100k
from tfrec_dyn.data.beam_sequences import run_sequence_job

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_MEMORY = ["--direct_running_mode=in_memory"]


def _examples(output_dir, split):
    files = glob.glob(os.path.join(output_dir, "examples", f"Split-{split}", "*.gz"))
    by_user = {}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        features = {}
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value)
            features[name] = [v.decode() for v in values] if kind == "bytes_list" else values
        by_user[features["user_id"][0]] = features
    return by_user


def test_order_side_fields_leave_one_out_and_quarantine(tmp_path):
    logs = tmp_path / "u.data"
    logs.write_text(
        "1\ta\t5\t300\n"
        "1\tb\t4\t100\n"
        "1\tc\t3\t200\n"
        "1\td\t2\t200\n"      # tie with c at t=200: file order keeps c before d
        "2\tx\t1\t50\n"
        "2\ty\t1\t60\n"       # user 2 has 2 items: training only
        "bad line\n"
        "\n"
        "3\tz\tnot-a-number\t5\n")
    counts = run_sequence_job(str(logs), str(tmp_path / "out"), "ml-100k", IN_MEMORY)
    assert counts["lines_read"] == 9 and counts["lines_kept"] == 6
    assert counts["quarantined: wrong number of fields"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("quarantined")) == 2
    assert counts["users"] == 2 and counts["short users (train only)"] == 1

    train, validation, test = (_examples(tmp_path / "out", s) for s in ("train", "validation", "eval"))
    # Time order b(100) c(200) d(200) a(300).
    assert train["1"]["item_ids"] == ["b"] and train["1"]["target_item_id"] == ["c"]
    assert validation["1"]["item_ids"] == ["b", "c"] and validation["1"]["target_item_id"] == ["d"]
    assert test["1"]["item_ids"] == ["b", "c", "d"] and test["1"]["target_item_id"] == ["a"]
    assert test["1"]["timestamp"] == [100, 200, 200] and test["1"]["target_timestamp"] == [300]
    assert test["1"]["rating"] == [4.0, 3.0, 2.0] and test["1"]["target_rating"] == [5.0]
    assert train["2"]["item_ids"] == ["x"] and train["2"]["target_item_id"] == ["y"]
    assert "2" not in test

    quarantined = [json.loads(line) for f in glob.glob(str(tmp_path / "out" / "quarantine" / "*.jsonl"))
                   for line in open(f)]
    assert sorted(q["line"] for q in quarantined) == [7, 9]
    assert {q["reason"] for q in quarantined} == {"wrong number of fields", "bad rating"}
    assert counts["quarantined: bad rating"] == 1


def test_jd_sessions_keep_all_five_fields(tmp_path):
    logs = tmp_path / "JD_sample"
    logs.write_text("11+5+672+2+74 11+7+672+294+74 12+5+672+4+79 13+9+870+1+15\n"
                    "21+1+100+3+5 22+2+101+4+6 broken-token 23+3+102+5+7\n")
    run_sequence_job(str(logs), str(tmp_path / "out"), "jd", IN_MEMORY)
    test = _examples(tmp_path / "out", "eval")
    first = test["JD_sample:1"]
    assert first["item_ids"] == ["11", "11", "12"] and first["target_item_id"] == ["13"]
    assert first["behavior"] == ["5", "7", "5"] and first["category"] == ["672", "672", "672"]
    assert first["time_interval"] == [2.0, 294.0, 4.0] and first["dwell_time"] == [74.0, 74.0, 79.0]
    assert first["target_behavior"] == ["9"] and first["target_category"] == ["870"]
    assert test["JD_sample:2"]["item_ids"] == ["21", "22"]  # the broken token is left out, the rest kept


@pytest.mark.slow
def test_matches_the_data_layer_on_movielens_multi_processing(tmp_path):
    source = os.path.join(REPO, "tfrec_dyn", "data", "resources", "ml-100k", "u.data")
    with open(source) as f:
        head = [next(f) for _ in range(3000)]
    logs = tmp_path / "u.data"
    logs.write_text("".join(head))
    run_sequence_job(str(logs), str(tmp_path / "out"), "ml-100k",
                     ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    split = leave_one_out(read_movielens_100k(str(logs)))
    train, test = _examples(tmp_path / "out", "train"), _examples(tmp_path / "out", "eval")
    assert len(train) == split.train.num_users and len(test) == split.test.num_users
    for user, items in zip(split.train.user_ids, split.train.items):
        assert train[user]["item_ids"] + train[user]["target_item_id"] == items.tolist()
    for user, inputs, target in zip(split.test.inputs.user_ids, split.test.inputs.items, split.test.target_items()):
        assert test[user]["item_ids"] == inputs.tolist() and test[user]["target_item_id"] == [target]


def test_csv_logs_with_a_column_mapping(tmp_path):
    logs = tmp_path / "events.csv"
    logs.write_text("uid,sku,ts,price\n"
                    "u1,a,3,9.5\n"
                    "u1,b,1,1.0\n"
                    "u1,c,2,\"2,5\"\n"
                    "u1,d,4,3\n"
                    "u1,e\n")  # wrong number of fields: quarantined
    counts = run_sequence_job(str(logs), str(tmp_path / "out"), "csv", IN_MEMORY,
                              columns={"user": "uid", "item": "sku", "timestamp": "ts"})
    assert counts["lines_read"] == 5 and counts["lines_kept"] == 4  # the header is not a data line
    assert counts["quarantined: wrong number of fields"] == 1
    test = _examples(tmp_path / "out", "eval")["u1"]
    assert test["item_ids"] == ["b", "c", "a"] and test["target_item_id"] == ["d"]
    assert test["price"] == ["1.0", "2,5", "9.5"]  # unmapped columns are kept, raw


def test_csv_without_a_mapping_fails_before_running(tmp_path):
    with pytest.raises(ValueError, match="needs a column mapping"):
        run_sequence_job(str(tmp_path / "x.csv"), str(tmp_path / "out"), "csv", IN_MEMORY)
