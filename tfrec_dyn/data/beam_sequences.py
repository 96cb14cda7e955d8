"""Beam: raw interaction logs -> per-user, leave-one-out sequence examples.

This is the data step of the TFX pipeline (`pipelines/components.py` wraps
it), written as plain Beam so it runs unchanged on the DirectRunner
(`--direct_running_mode=multi_processing`), Dataflow, Flink or Spark: only the
pipeline options change, e.g.::

    run_sequence_job("gs://bucket/logs/*.tsv", "gs://bucket/out", "ml-100k",
                     beam_args=["--runner=DataflowRunner", "--project=P", "--region=R",
                                "--temp_location=gs://bucket/tmp"])

Formats: the line formats of `tfrec_dyn.data.readers.LINE_FORMATS` (MovieLens
`u.data` / `ratings.dat`, `user item`, JD sessions) and "csv" / "tsv" logs
with a header and a column mapping (as `read_log`).

Steps: match the files, read each with line numbers, parse every line with
the same parser as `tfrec_dyn.data.readers` (malformed lines go to a
quarantine output with file, line number and reason, and are counted), group
events by user, order them by timestamp (ties, and everything in files without
timestamps, by file and line order), and write one `tf.train.Example` per user
and split:

* `train`: history = all but the last three items, target = the third last
  (so history + target = the training sequence of `splits.leave_one_out`);
  users with fewer than 3 interactions: their whole sequence, last item as
  target, and no other split (the rule of `leave_one_out`);
* `validation`: history = all but the last two, target = the second last;
* `eval`: history = all but the last, target = the last (the test item).

Features: `user_id`, `item_ids` (history, raw ids, oldest first),
`target_item_id`, and for every side field the logs have, its values aligned
with the history (`behavior`, `category`: bytes; `dwell_time`,
`time_interval`, `rating`: float; `timestamp`: int64) plus `target_<field>`.
JD sessions are keyed `<file name>:<line number>`.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io import fileio

from tfrec_dyn.data.interactions import CATEGORICAL_SIDE_FIELDS
from tfrec_dyn.data.readers import BLANK_LINE, LINE_FORMATS, BadLine, delimited_parser, line_parser

SPLITS = ("train", "validation", "eval")
DELIMITED_FORMATS = ("csv", "tsv")  # logs with a header and a column mapping
QUARANTINE = "quarantine"
NAMESPACE = "tfrec_dyn"
_INT_FIELDS = ("timestamp",)


def _counter(name: str):
    return beam.metrics.Metrics.counter(NAMESPACE, name)


class ReadNumberedLines(beam.DoFn):
    """(file, line number, text, header) for every line of a matched file.

    With `header`, the file's first non-blank line names the columns: it is
    passed along with every other line (CSV/TSV logs are parsed by it) and is
    not itself a data line.
    """

    def __init__(self, header: bool = False):
        self._header = header

    def process(self, readable_file):
        path = readable_file.metadata.path
        header = None
        with readable_file.open() as f:
            for number, raw in enumerate(f, start=1):
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n").lstrip("\ufeff")
                if self._header and header is None and text.strip():
                    header = text
                    continue
                yield path, number, text, header


class ParseEvents(beam.DoFn):
    """Parses lines into `(user, event)`; malformed lines go to `quarantine`.

    Line formats use `readers.line_parser`; CSV/TSV logs use
    `readers.delimited_parser` built from each file's header and `columns`.
    """

    def __init__(self, format: str, columns: Optional[Dict[str, str]] = None):  # pylint: disable=redefined-builtin
        self._format = format
        self._columns = columns

    def setup(self):
        self._skips = []
        self._by_header = {}
        if self._format in LINE_FORMATS:
            self._by_header[None] = line_parser(self._format, on_skip=self._skipped)

    def _skipped(self, number, reason, detail):
        self._skips.append((reason, detail))

    def _parser(self, path, header):
        if header not in self._by_header:
            parse, names, _ = delimited_parser(header, self._columns, self._format, source=path)
            self._by_header[header] = parse, names
        return self._by_header[header]

    def process(self, element):
        path, number, text, header = element
        self._parse, self._names = self._parser(path, header)
        _counter("lines_read").inc()
        if not text.strip():
            _counter(f"dropped: {BLANK_LINE}").inc()
            return
        self._skips.clear()
        try:
            rows = self._parse(text, number)
        except BadLine as bad:
            _counter(f"quarantined: {bad.reason}").inc()
            yield beam.pvalue.TaggedOutput(QUARANTINE, {"file": path, "line": number, "reason": bad.reason,
                                                        "detail": bad.detail, "text": text[:1000]})
            return
        for reason, detail in self._skips:  # JD: one malformed micro-behaviour, rest of the line kept
            _counter(f"quarantined: {reason}").inc()
            yield beam.pvalue.TaggedOutput(QUARANTINE, {"file": path, "line": number, "reason": reason,
                                                        "detail": detail, "text": text[:1000]})
        _counter("lines_kept").inc()
        for position, row in enumerate(rows):
            user = f"{os.path.basename(path)}:{row[0]}" if self._format == "jd" else row[0]
            side = dict(zip(self._names[2:], row[2:]))
            order = (side.get("timestamp", 0.0), path, number, position)
            yield user, (order, row[1], side)


def _feature(name: str, values: Sequence):
    import tensorflow as tf

    if name in CATEGORICAL_SIDE_FIELDS or name in ("user_id", "item_ids", "target_item_id") \
            or (values and isinstance(values[0], str)):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(v).encode() for v in values]))
    if name.removeprefix("target_") in _INT_FIELDS:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _example(user: str, events: List, end: int) -> bytes:
    """History = events[:end], target = events[end]."""
    import tensorflow as tf

    history, target = events[:end], events[end]
    features = {"user_id": _feature("user_id", [user]),
                "item_ids": _feature("item_ids", [item for _, item, _ in history]),
                "target_item_id": _feature("target_item_id", [target[1]])}
    for name in target[2]:
        features[name] = _feature(name, [side[name] for _, _, side in history])
        features[f"target_{name}"] = _feature(f"target_{name}", [target[2][name]])
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def build_examples(element):
    """(user, events) -> tagged serialized examples per split (see module docstring)."""
    user, events = element
    events = sorted(events, key=lambda event: event[0])
    n = len(events)
    _counter("users").inc()
    if n < 3:
        _counter("short users (train only)").inc()
        yield beam.pvalue.TaggedOutput("train", _example(user, events, n - 1))
        return
    yield beam.pvalue.TaggedOutput("train", _example(user, events, n - 3))
    yield beam.pvalue.TaggedOutput("validation", _example(user, events, n - 2))
    yield beam.pvalue.TaggedOutput("eval", _example(user, events, n - 1))


class RawLogsToSequenceExamples(beam.PTransform):
    """file pattern -> {"train", "validation", "eval": serialized Examples, "quarantine": dicts}."""

    def __init__(self, file_pattern: str, format: str, columns: Optional[Dict[str, str]] = None):  # pylint: disable=redefined-builtin
        super().__init__()
        self._file_pattern = file_pattern
        self._format = format
        self._columns = columns
        # Fail now, on the submitting machine, for an unknown format or missing mapping.
        if format in DELIMITED_FORMATS:
            if not columns:
                raise ValueError(f"format {format!r} needs a column mapping, e.g. {{'user': 'uid', 'item': 'sku'}}")
        else:
            line_parser(format)

    def expand(self, pipeline):
        lines = (pipeline
                 | "Match" >> fileio.MatchFiles(self._file_pattern)
                 | "Open" >> fileio.ReadMatches()
                 | "Lines" >> beam.ParDo(ReadNumberedLines(header=self._format in DELIMITED_FORMATS))
                 # Reading is per file; spread the parsing over workers.
                 | "Spread" >> beam.Reshuffle())
        parsed = lines | "Parse" >> beam.ParDo(ParseEvents(self._format, self._columns)).with_outputs(
            QUARANTINE, main="events")
        examples = (parsed.events
                    | "GroupByUser" >> beam.GroupByKey()
                    | "Examples" >> beam.FlatMap(build_examples).with_outputs(*SPLITS))
        return {**{split: examples[split] for split in SPLITS}, QUARANTINE: parsed[QUARANTINE]}


def write_outputs(outputs: Dict, examples_dir: str, quarantine_dir: str) -> None:
    """TFX layout: `<examples_dir>/Split-<name>/data_tfrecord-*.gz`; quarantine as JSON lines."""
    for split in SPLITS:
        _ = outputs[split] | f"Write{split}" >> beam.io.WriteToTFRecord(
            os.path.join(examples_dir, f"Split-{split}", "data_tfrecord"), file_name_suffix=".gz")
    _ = (outputs[QUARANTINE]
         | "QuarantineJson" >> beam.Map(json.dumps, sort_keys=True)
         | "WriteQuarantine" >> beam.io.WriteToText(os.path.join(quarantine_dir, "quarantine"),
                                                    file_name_suffix=".jsonl"))


def counters(result) -> Dict[str, int]:
    """The job's counters (lines read/kept, quarantined per reason, users)."""
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
    totals: Dict[str, int] = {}
    for counter in query["counters"]:
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + counter.committed
    return totals


def run_sequence_job(file_pattern: str, output_dir: str, format: str,  # pylint: disable=redefined-builtin
                     beam_args: Optional[Iterable[str]] = None,
                     columns: Optional[Dict[str, str]] = None) -> Dict[str, int]:
    """Runs the whole step as one Beam job; returns (and writes to stats.json) its counters."""
    from apache_beam.options.pipeline_options import PipelineOptions

    pipeline = beam.Pipeline(options=PipelineOptions(list(beam_args or [])))
    outputs = pipeline | RawLogsToSequenceExamples(file_pattern, format, columns)
    write_outputs(outputs, os.path.join(output_dir, "examples"), os.path.join(output_dir, "quarantine"))
    result = pipeline.run()
    result.wait_until_finish()
    totals = counters(result)
    with beam.io.filesystems.FileSystems.create(os.path.join(output_dir, "stats.json")) as f:
        f.write(json.dumps(totals, indent=2, sort_keys=True).encode())
    return totals
