"""The TFX native extensions load and work, and tools/glibc_compat only acts on glibc < 2.39."""

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "glibc_compat", REPO / "tools" / "glibc_compat" / "glibc_compat.py")
glibc_compat = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(glibc_compat)


@pytest.mark.parametrize("version, expected", [
    ("2.36", True),   # Debian 12
    ("2.38", True),
    ("2.39", False),  # Ubuntu 24.04: the manylinux_2_39 wheels load as they are
    ("2.40", False),
    ("3.0", False),
    (None, False),    # not glibc (musl, macOS): nothing to patch
    ("", False),
])
def test_is_needed_only_below_glibc_2_39(version, expected):
    assert glibc_compat.is_needed(version) is expected


def test_commands_do_nothing_on_glibc_2_39(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(glibc_compat, "glibc_version", lambda: "2.39")
    monkeypatch.setattr(glibc_compat, "patch", lambda: pytest.fail("patched on glibc 2.39"))
    monkeypatch.setattr(glibc_compat, "fetch_wheels", lambda _: pytest.fail("fetched"))
    wheels = tmp_path / "wheels"
    for command, status in ((["needed"], 1), (["patch"], 0), (["fetch-wheels", str(wheels)], 0)):
        monkeypatch.setattr(sys, "argv", ["glibc_compat.py", *command])
        assert glibc_compat.main() == status
    assert capsys.readouterr().out.startswith("no\n")
    assert list(wheels.iterdir()) == []  # still created, so `pip --find-links` works unchanged


def test_glibc_version_reads_this_machine():
    version = glibc_compat.glibc_version()
    assert version is None or version.replace(".", "").isdigit()


def test_pinned_versions_come_from_constraints():
    assert glibc_compat.pinned_versions() == {
        "ml-metadata": "1.21.0", "tensorflow-data-validation": "1.21.0"}


def test_extensions_import_in_a_fresh_interpreter():
    # `import ml_metadata` swallows its extension's ImportError, so check the .so modules.
    assert glibc_compat.check()


def test_ml_metadata_sqlite_store_round_trip(tmp_path):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "mlmd.sqlite")
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    store = metadata_store.MetadataStore(config)

    model_type = metadata_store_pb2.ArtifactType(name="Model")
    model_type.properties["version"] = metadata_store_pb2.INT
    type_id = store.put_artifact_type(model_type)
    model = metadata_store_pb2.Artifact(type_id=type_id, uri="/models/1")
    model.properties["version"].int_value = 1
    [artifact_id] = store.put_artifacts([model])

    [stored] = store.get_artifacts_by_id([artifact_id])
    assert store.get_artifact_type("Model").id == type_id
    assert stored.uri == "/models/1"
    assert stored.properties["version"].int_value == 1
    assert (tmp_path / "mlmd.sqlite").exists()


def test_tfdv_statistics_from_dataframe():
    import tensorflow_data_validation as tfdv

    frame = pd.DataFrame({"item_id": [3, 1, 2], "rating": [4.0, 5.0, 3.0]})
    stats = tfdv.generate_statistics_from_dataframe(frame)

    [dataset] = stats.datasets
    assert dataset.num_examples == 3
    rating = next(f for f in dataset.features if f.path.step == ["rating"])
    assert rating.num_stats.mean == pytest.approx(4.0)  # (4 + 5 + 3) / 3
