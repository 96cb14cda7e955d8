"""pipelines/module.py `preprocessing_fn` under tf.Transform: vocabularies and id layout."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_item_and_side_vocabularies(tmp_path):
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import schema_utils

    sys.path.insert(0, REPO)
    from pipelines.module import preprocessing_fn

    raw = [
        {"item_ids": [b"a", b"b"], "target_item_id": [b"a"], "behavior": [b"5", b"7"], "target_behavior": [b"5"],
         "category": [b"c1", b"c1"], "target_category": [b"c2"]},
        {"item_ids": [b"a"], "target_item_id": [b"b"], "behavior": [b"5"], "target_behavior": [b"9"],
         "category": [b"c1"], "target_category": [b"c1"]},
        {"item_ids": [], "target_item_id": [b"a"], "behavior": [], "target_behavior": [b"9"],
         "category": [], "target_category": [b"c1"]},
    ]
    spec = {"item_ids": tf.io.VarLenFeature(tf.string), "target_item_id": tf.io.FixedLenFeature([1], tf.string),
            "behavior": tf.io.VarLenFeature(tf.string), "target_behavior": tf.io.FixedLenFeature([1], tf.string),
            "category": tf.io.VarLenFeature(tf.string), "target_category": tf.io.FixedLenFeature([1], tf.string)}
    metadata = tft.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with tft_beam.Context(temp_dir=str(tmp_path)):
        (transformed, _), transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / "transform"))
    output = tft.TFTransformOutput(str(tmp_path / "transform"))
    items = [line.strip() for line in open(output.vocabulary_file_by_name("items"))]
    behaviors = [line.strip() for line in open(output.vocabulary_file_by_name("behavior"))]
    assert sorted(items) == ["a", "b"] and items[0] == "a"  # "a" 4 times, "b" twice
    assert behaviors[0] == "5" and sorted(behaviors) == ["5", "7", "9"]
    first = transformed[0]
    # Library layout: vocabulary index + 2 (0 = padding, 1 = OOV).
    assert list(first["item_ids"]) == [items.index("a") + 2, items.index("b") + 2]
    assert list(first["behavior_ids"]) == [behaviors.index("5") + 2, behaviors.index("7") + 2]
    assert int(first["target_category_id"]) >= 2
    assert list(transformed[2]["item_ids"]) == []
