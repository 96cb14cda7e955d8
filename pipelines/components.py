"""`SequenceExampleGen`: the pipeline's ExampleGen, a custom Beam component.

Why a custom component and not CsvExampleGen + Transform: the raw formats
(MovieLens `u.data`, `ratings.dat`, JD sessions) are not header-CSV, and the
split is leave-one-out *within* each user's time-ordered sequence, which
ExampleGen's hash-bucket splits cannot express.  One Beam step reads the raw
logs, quarantines malformed rows and writes per-user examples in the standard
`Examples` artifact layout (`Split-train`, `Split-validation`, `Split-eval`),
so every standard component downstream (StatisticsGen, Transform, Evaluator)
consumes it unchanged.  The Beam code lives in `tfrec_dyn.data.beam_sequences`.
"""

# No `from __future__ import annotations`: the TFX component decorator reads the
# type hints as objects.
import hashlib
import json
import os

import apache_beam as beam
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact

from tfrec_dyn.data import beam_sequences


class QuarantinedRows(artifact.Artifact):
    """Malformed input rows (JSON lines: file, line, reason, detail, text) and counts."""

    # KFP requires "namespace.Name" type names for custom artifacts.
    TYPE_NAME = "tfrec_dyn.QuarantinedRows"
    PROPERTIES = {}


class RunReport(artifact.Artifact):
    """The trained model's `tfrec-dyn report`: one self-contained HTML page, `report.html`."""

    TYPE_NAME = "tfrec_dyn.RunReport"
    PROPERTIES = {}


def input_fingerprint(data_root: str) -> str:
    """Names, sizes and modification times of the input files (local or GCS).

    Passed as a parameter so a rerun with unchanged data hits the cache and a
    changed file invalidates it (what FileBasedExampleGen's driver does).
    Remote data (a URI such as gs://...) is not read at compile time: the
    fingerprint is empty and the Kubeflow runner turns caching off instead.
    """
    if "://" in data_root:
        return ""
    paths = [data_root] if not tf.io.gfile.isdir(data_root) else sorted(
        os.path.join(folder, name) for folder, _, files in tf.io.gfile.walk(data_root) for name in files)
    entries = []
    for path in paths:
        stat = tf.io.gfile.stat(path)
        entries.append(f"{path}:{stat.length}:{stat.mtime_nsec}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


DATA_FILES = {"ml-100k": "u.data", "ml-1m": "ratings.dat"}


def _file_pattern(input_base: str, data_format: str) -> str:
    if not tf.io.gfile.isdir(input_base):
        return input_base
    return os.path.join(input_base, DATA_FILES.get(data_format, "*"))


@tfx.dsl.components.component(use_beam=True)
def SequenceExampleGen(  # pylint: disable=invalid-name
    examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    quarantine: tfx.dsl.components.OutputArtifact[QuarantinedRows],
    input_base: tfx.dsl.components.Parameter[str],
    data_format: tfx.dsl.components.Parameter[str],
    columns: tfx.dsl.components.Parameter[str] = "{}",
    input_fingerprint: tfx.dsl.components.Parameter[str] = "",  # pylint: disable=redefined-outer-name
    max_events_per_user: tfx.dsl.components.Parameter[int] = beam_sequences.MAX_EVENTS_PER_USER,
    eval_users: tfx.dsl.components.Parameter[int] = 0,
    collapse_repeats: tfx.dsl.components.Parameter[int] = -1,
    beam_pipeline: tfx.dsl.components.BeamComponentParameter[beam.Pipeline] = None,
):
    """Raw interaction logs -> leave-one-out sequence examples + quarantined rows.

    `columns` (JSON) maps canonical names to the columns of "csv"/"tsv" logs;
    each user keeps its newest `max_events_per_user` events (the others are
    counted as truncated in the quarantine artifact's `counts`); `eval_users`
    > 0 adds the split `eval_sample`, the eval examples of the seeded sample
    of that many users that `tfrec-dyn evaluate --eval-users` scores;
    `collapse_repeats` 1 / 0: leave-one-out does / does not count runs of
    events on one item as one (-1: the default for the log's fields).
    """
    del input_fingerprint  # only part of the cache key
    outputs = beam_pipeline | beam_sequences.RawLogsToSequenceExamples(
        _file_pattern(input_base, data_format), data_format, json.loads(columns) or None,
        max_events_per_user=max_events_per_user, eval_users=eval_users or None,
        collapse_repeats=None if collapse_repeats < 0 else bool(collapse_repeats))
    beam_sequences.write_outputs(outputs, examples.uri, quarantine.uri)
    result = beam_pipeline.run()
    result.wait_until_finish()
    counts = beam_sequences.counters(result)

    examples.split_names = json.dumps([name for name in outputs if name != beam_sequences.QUARANTINE])
    examples.set_string_custom_property("payload_format", "FORMAT_TF_EXAMPLE")
    quarantined = sum(v for k, v in counts.items() if k.startswith("quarantined"))
    for name, artifact_ in (("lines_read", examples), ("lines_kept", examples), ("users", examples)):
        artifact_.set_int_custom_property(name, counts.get(name, 0))
    quarantine.set_int_custom_property("quarantined", quarantined)
    quarantine.set_string_custom_property("counts", json.dumps(counts, sort_keys=True))
    with tf.io.gfile.GFile(os.path.join(quarantine.uri, "stats.json"), "w") as f:
        json.dump(counts, f, indent=2, sort_keys=True)
    if not counts.get("users"):  # nothing to train on: say why here, not as a missing feature in Transform
        reasons = {k: v for k, v in counts.items() if k.startswith("quarantined") and v}
        raise ValueError(f"no user in {input_base} has a sequence to learn from: {counts.get('lines_read', 0)} "
                         f"lines read, {counts.get('lines_kept', 0)} kept, quarantined {reasons or 'none'} "
                         f"(see {quarantine.uri}); is --format {data_format!r} the log's format?")


@tfx.dsl.components.component
def ReportWriter(  # pylint: disable=invalid-name
    model_run: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelRun],
    pushed_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.PushedModel],
    report: tfx.dsl.components.OutputArtifact[RunReport],
):
    """The report of the Trainer's model (`tfrec_dyn.report`, as `tfrec-dyn report` writes it) in
    its artifact and, when the model was pushed, next to it: `<serving dir>/<version>/report.html`
    (TF Serving reads only the SavedModel's own files there)."""
    from pipelines.module import RUN_DIR
    from tfrec_dyn.report import write_report
    from tfrec_dyn.training.run import REPORT

    path = write_report(os.path.join(model_run.uri, RUN_DIR), os.path.join(report.uri, REPORT))
    if pushed_model.get_int_custom_property("pushed") == 1:
        destination = pushed_model.get_string_custom_property("pushed_destination")
        tf.io.gfile.copy(path, os.path.join(destination, REPORT), overwrite=True)
        report.set_string_custom_property("pushed_report", os.path.join(destination, REPORT))
