"""Beam: raw interaction logs -> per-user, leave-one-out `tf.train.Example`s.

The data step of the TFX pipeline (`pipelines/components.py` wraps
`RawLogsToSequenceExamples` in the `SequenceExampleGen` component), written as
plain Beam with no TFX import, so it can be reused and unit-tested on its own.

Graph
-----
::

    MatchFiles(file_pattern) -> ReadMatches -> ReadNumberedLines      one element per physical line:
                                                                      (file, line number, text, ...)
      -> ParseEvents ---------------------------> "quarantine"        malformed rows (dicts)
           |  (the parsers of tfrec_dyn.data.readers)
           v
      (user, event) -> CombinePerKey(NewestEvents) -> build_examples -> "train", "validation", "eval"
                                                             (serialized tf.train.Examples)

* Parsing is `tfrec_dyn.data.readers`' own code (`line_parser`,
  `delimited_parser`, `jsonl_parser`, `decode_line`, `parse_line`), so a line
  is valid here exactly when `read_movielens_100k`, `read_jd_sessions`,
  `read_log`, ... keep it, and is quarantined under the same reason they count
  it under.  Formats: ``"ml-100k"`` (u.data), ``"ml-1m"`` (ratings.dat),
  ``"user-item"``, ``"jd"`` (one session per line), ``"csv"`` / ``"tsv"`` (a
  header, or `header=False` and 0-based positions) and ``"jsonl"`` (alias
  ``"json"``) with a `columns` mapping as for `read_log`.
* Every file is read by one worker, in order, so each row keeps its file and
  line number (quarantine records point at them; the line number is also the
  order tie-break).  Reading parallelises over files: split a huge log into
  several files (gzip is fine: compression is detected from the extension).
  Lines are not reshuffled before parsing: shuffling raw lines would cost more
  than parsing them, and the per-user combine redistributes the events anyway.
* Each user keeps at most `max_events_per_user` events, the newest (default
  `MAX_EVENTS_PER_USER`): a combiner (`NewestEvents`) keeps a user's count
  and newest events, so no worker ever holds more of one user than that,
  however long the user's history (a crawler with 10^6 events).  Users cut
  so are counted (``truncated users``, ``truncated events``), never silent.
  Their held-out targets are the same; only the oldest training history
  goes, of which the Trainer reads the newest `max_len` items anyway.
* Each user's events are ordered by timestamp when the format has one, ties
  (and everything in formats without one) by (file, line, position in the
  line), which is `Interactions.from_events`' order for a single file.
* JD sessions: every line is one session and becomes one "user" keyed
  ``"<file name>:<line number>"`` (`jd_session_id`, as `read_jd_sessions`); its
  micro-behaviours are its events, in line order.  A malformed micro-behaviour
  is left out (one quarantine record for it), the rest of the session kept, as
  `read_jd_sessions` does.

Splits (the rule of `tfrec_dyn.data.splits.leave_one_out`; n = the user's
number of events, when no two consecutive events are on the same item: a run
of consecutive events on one item, as in a micro-behaviour log, counts as one
event, and a held-out target is the first event of such a run)
-----------------------------------------------------------------------------
Every example is one user: a history (`item_ids` plus aligned side fields,
oldest first) and one target item (`target_item_id`, `target_<field>`):

* ``train``: history + target = the training sequence.  n >= 3: history =
  the first n-3 events, target = event n-2 (the training sequence is all but
  the last two); n < 3: history = all but the last event, target = the last
  (the whole sequence; such users have no validation or eval example).  Having
  a target in every split gives all splits one schema (SchemaGen infers it
  from train; Transform and the Evaluator read `target_item_id`), and the
  Trainer (`pipelines/module.py`) trains on history + target.
* ``validation`` (n >= 3): history = the first n-2 events, target = event n-1.
* ``eval`` (n >= 3): history = the first n-1 events, target = the last event.

Example features (see `feature_spec`)
-------------------------------------
* `user_id` (bytes), `item_ids` (bytes list: raw ids, oldest first),
  `target_item_id` (bytes);
* for every side field the logs have, a list aligned with `item_ids` and a
  one-value `target_<field>`: `behavior`, `category` (bytes), `dwell_time`,
  `time_interval`, `rating` (float), `timestamp` (int64, whole seconds since
  the epoch); unmapped CSV/TSV/JSON columns are kept as bytes under the names
  `read_log` gives them (raw text; JSON values other than strings as JSON, a
  key a record lacks as ``b""``).

An empty history (a user with a single event, in train) has empty lists.

Counts (Beam counters, namespace ``"tfrec_dyn"``; `counters(result)` reads them)
-------------------------------------------------------------------------------
``files``, ``lines_read``, ``lines_kept``, ``dropped: blank line`` (blank lines
carry no data and are not quarantined), ``lines_quarantined`` and
``quarantined: <reason>`` (one per quarantine record: a malformed line, or a
malformed JD micro-behaviour inside a kept line), ``events``, ``users``,
``short users (train only)``, ``truncated users``, ``truncated events``,
``examples: <split>``.  Lines balance:
``lines_read == lines_kept + lines_quarantined + dropped: blank line``.

Running it
----------
Locally (what the tests do)::

    from tfrec_dyn.data.beam_sequences import run_sequence_job
    counts = run_sequence_job("logs/u.data", "out", "ml-100k",
                              beam_args=["--runner=DirectRunner",
                                         "--direct_running_mode=multi_processing",
                                         "--direct_num_workers=2"])

writes ``out/examples/Split-{train,validation,eval}/data_tfrecord-*.gz``
(GZIP TFRecords, the TFX `Examples` layout), ``out/quarantine/quarantine-*.jsonl``
(``{"file", "line", "reason", "detail", "text"}`` per record) and
``out/stats.json`` (the counts).

On Dataflow (or Flink / Spark: ``--runner=FlinkRunner`` / ``SparkRunner`` and
their options) only the paths and the Beam options change; the workers need
this package, e.g. with ``--setup_file=/path/to/repo/setup.py`` or an SDK
container image that has it installed (``--sdk_container_image=...``)::

    run_sequence_job("gs://BUCKET/logs/*.tsv", "gs://BUCKET/sequences", "tsv",
                     columns={"user": "uid", "item": "sku", "timestamp": "ts"},
                     beam_args=["--runner=DataflowRunner", "--project=PROJECT",
                                "--region=REGION", "--temp_location=gs://BUCKET/tmp",
                                "--setup_file=./setup.py"])

Nothing here depends on the local machine beyond the paths: files are matched
and opened through Beam's file systems (local, gs://, s3://, hdfs://), DoFns
hold only their settings (parsers are built in `setup`, on the worker) and
there is no global state.  A user's (newest, bounded) events are held in memory
on one worker while that user's examples are built.

On Beam's portable runner (the job API Flink, Spark and Dataflow speak), against
a job service and a pool of SDK worker processes started on this machine, as
`tests/test_beam_sequences.py` runs it::

    python -m apache_beam.runners.portability.local_job_service_main --port 8099 &
    python -m apache_beam.runners.worker.worker_pool_main --service_port 50000 &  # starts `python` workers:
                                                                                   # that env's on PATH
    run_sequence_job(..., beam_args=["--runner=PortableRunner", "--job_endpoint=127.0.0.1:8099",
                                     "--environment_type=EXTERNAL",
                                     "--environment_config=127.0.0.1:50000"])
"""

from __future__ import annotations

import heapq
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio

from tfrec_dyn.data.datasets import FORMAT_NAMES, canonical_format
from tfrec_dyn.data.splits import (EVAL_USERS_SEED, check_eval_users, collapse_repeats_default, leave_one_out_cuts,
                                   user_sample_keys)

from tfrec_dyn.data.readers import (
    BLANK_LINE,
    LINE_FORMATS,
    BadLine,
    DataFormatError,
    _check_columns,  # read_log's validation of a column mapping
    decode_line,
    delimited_parser,
    extra_field_names,
    jsonl_parser,
    jd_session_id,
    line_parser,
    parse_line,
)

__all__ = [
    "EVAL_SAMPLE", "FORMATS", "NAMESPACE", "QUARANTINE", "SPLITS", "EvalUserSample", "EventsToSequenceExamples",
    "ParseRawLogs",
    "RawLogsToSequenceExamples", "counters", "feature_spec", "run_sequence_job", "write_outputs",
]

SPLITS = ("train", "validation", "eval")
EVAL_SAMPLE = "eval_sample"  # the eval examples of a seeded sample of users (`EvalUserSample`)
QUARANTINE = "quarantine"
NAMESPACE = "tfrec_dyn"
DELIMITED_FORMATS = ("csv", "tsv")  # a column mapping; a header unless header=False
FORMATS = FORMAT_NAMES  # the names `tfrec-dyn train --format` takes (and "json" for "jsonl")

USER_ID, ITEM_IDS, TARGET_ITEM_ID = "user_id", "item_ids", "target_item_id"
FLOAT_FIELDS = ("dwell_time", "time_interval", "rating")
INT_FIELDS = ("timestamp",)
_MAX_QUARANTINED_TEXT = 1000
MAX_EVENTS_PER_USER = 10_000  # newest events a user keeps (see the module docstring)

# An event: (order key, item, side fields).  The order key is
# (timestamp or 0.0, file, line number, position in the line).
Event = Tuple[Tuple[float, str, int, int], str, Dict[str, Any]]


def _count(name: str, value: int = 1) -> None:
    beam.metrics.Metrics.counter(NAMESPACE, name).inc(value)


# ------------------------------------------------------------------ parsing
class ReadNumberedLines(beam.DoFn):
    """`ReadableFile` -> `(file, line number, text, valid UTF-8, first line)` per physical line.

    `first_line` is None except for CSV/TSV logs, which are parsed by it: with
    `header`, the file's first non-blank line names the columns and is not
    itself a data line (nor counted); without, it fixes the number of columns
    and is a data line too.
    """

    def __init__(self, delimited: bool = False, header: bool = True):
        super().__init__()
        self._delimited = delimited
        self._header = header

    def process(self, readable_file):
        path = readable_file.metadata.path
        _count("files")
        first_line = None
        with readable_file.open() as f:  # decompressed by the file's extension (.gz, .bz2, ...)
            # readline, not iteration: compressed files (CompressedFile) are not iterable.
            for number, raw in enumerate(iter(f.readline, b""), start=1):
                text, valid = decode_line(raw, number)
                if self._delimited and first_line is None and text.strip():
                    first_line = text
                    if self._header:
                        continue
                yield path, number, text, valid, first_line


@beam.typehints.with_output_types(Tuple[str, Any])  # the main output; quarantine records are tagged
class ParseEvents(beam.DoFn):
    """Numbered lines -> `(user, Event)`; malformed rows -> the `quarantine` output.

    The parsers are `tfrec_dyn.data.readers`': `line_parser(format)` for the
    line formats, `delimited_parser` (built from each file's first line and
    `columns`) for CSV/TSV, `jsonl_parser(columns)` for JSON lines.  A CSV/TSV
    file whose header lacks a mapped column fails the job with
    `DataFormatError` naming it (a file-level error, as in `read_log`).
    """

    def __init__(self, format: str,  # pylint: disable=redefined-builtin
                 columns: Optional[Mapping[str, Union[str, int]]] = None,
                 delimiter: Optional[str] = None, header: bool = True):
        super().__init__()
        self._format = canonical_format(format)
        self._columns = dict(columns) if columns else None
        self._delimiter = delimiter
        self._header = header

    def setup(self):
        self._skipped: List[Tuple[str, str]] = []  # malformed JD micro-behaviours of the current line
        self._parsers: Dict[Optional[str], Tuple[Any, List[str]]] = {}  # first line -> (parse, names)
        if self._format in LINE_FORMATS:
            on_skip = lambda number, reason, detail: self._skipped.append((reason, detail))  # noqa: E731
            self._parsers[None] = line_parser(self._format, on_skip=on_skip)
        elif self._format == "jsonl":
            self._parsers[None] = jsonl_parser(self._columns)

    def _parser(self, path: str, first_line: Optional[str]):
        if first_line not in self._parsers:  # a CSV/TSV file with a header not seen yet
            parse, names, _ = delimited_parser(first_line, self._columns, self._format, self._delimiter,
                                               self._header, source=path)
            self._parsers[first_line] = parse, names
        return self._parsers[first_line]

    def process(self, element):
        path, number, text, valid, first_line = element
        _count("lines_read")
        if not text.strip():
            _count(f"dropped: {BLANK_LINE}")
            return
        parse, names = self._parser(path, first_line)
        self._skipped.clear()
        try:
            rows = parse_line(parse, text, valid, number)
        except BadLine as bad:
            _count("lines_quarantined")
            yield _quarantined(path, number, bad.reason, bad.detail, text)
            return
        for reason, detail in self._skipped:  # JD: a micro-behaviour left out, the rest of the line kept
            yield _quarantined(path, number, reason, detail, text)
        _count("lines_kept")
        _count("events", len(rows))
        jd = self._format == "jd"
        side_names = names[2:]
        for position, row in enumerate(rows):
            side = dict(zip(side_names, row[2:]))
            if self._format == "jsonl":  # the last value holds the record's unmapped keys
                extras = row[len(names)]
                side.update(zip(extra_field_names(extras), extras.values()))
            user = jd_session_id(path, row[0]) if jd else row[0]
            order = (side.get("timestamp", 0.0), path, number, position)
            yield user, (order, row[1], side)


def _quarantined(path: str, number: int, reason: str, detail: str, text: str):
    _count(f"quarantined: {reason}")
    record = {"file": path, "line": number, "reason": reason, "detail": detail,
              "text": text[:_MAX_QUARANTINED_TEXT]}
    return beam.pvalue.TaggedOutput(QUARANTINE, record)


class ParseRawLogs(beam.PTransform):
    """Pipeline root -> `{"events": (user, Event), "quarantine": dicts}`.

    Checks the format and the column mapping when it is built, so a mistake
    fails on the submitting machine, before any worker starts.
    """

    def __init__(self, file_pattern: str, format: str,  # pylint: disable=redefined-builtin
                 columns: Optional[Mapping[str, Union[str, int]]] = None,
                 delimiter: Optional[str] = None, header: bool = True):
        super().__init__()
        self._format = canonical_format(format)
        if columns is not None and not isinstance(columns, Mapping):
            raise TypeError(f"columns must be a mapping, not {type(columns).__name__}")
        if self._format in DELIMITED_FORMATS + ("jsonl",):
            if not columns:
                raise ValueError(f"format {format!r} needs a column mapping, e.g. {{'user': 'uid', 'item': 'sku'}}")
            _check_columns(columns, named=header or self._format == "jsonl")  # read_log's own checks
        elif columns:
            raise ValueError(f"format {format!r} has fixed fields; `columns` applies to csv, tsv and jsonl")
        self._file_pattern = file_pattern
        self._columns = dict(columns) if columns else None
        self._delimiter = delimiter
        self._header = header

    def expand(self, pbegin):
        parsed = (pbegin
                  | "MatchFiles" >> fileio.MatchFiles(self._file_pattern)
                  | "OpenFiles" >> fileio.ReadMatches()
                  | "ReadNumberedLines" >> beam.ParDo(
                      ReadNumberedLines(self._format in DELIMITED_FORMATS, self._header))
                  | "ParseEvents" >> beam.ParDo(
                      ParseEvents(self._format, self._columns, self._delimiter, self._header)
                  ).with_outputs(QUARANTINE, main="events"))
        return {"events": parsed.events, QUARANTINE: parsed[QUARANTINE]}


# ----------------------------------------------------------------- examples
def _kind(field: str) -> str:
    """The tf.train.Feature list kind of a side field."""
    if field in INT_FIELDS:
        return "int64"
    if field in FLOAT_FIELDS:
        return "float"
    return "bytes"  # categorical fields, ids, and raw (unmapped) columns


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, sort_keys=True).encode("utf-8")  # a raw JSON value


def _feature(kind: str, values: Sequence[Any]):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (workers import it once)

    if kind == "int64":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[_bytes(v) for v in values]))


def _example(user: str, history: Sequence[Event], target: Event, fields: Sequence[str]) -> bytes:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    features = {
        USER_ID: _feature("bytes", [user]),
        ITEM_IDS: _feature("bytes", [item for _, item, _ in history]),
        TARGET_ITEM_ID: _feature("bytes", [target[1]]),
    }
    for field in fields:
        kind = _kind(field)
        features[field] = _feature(kind, [side.get(field) for _, _, side in history])
        features[f"target_{field}"] = _feature(kind, [target[2].get(field)])
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


class NewestEvents(beam.CombineFn):
    """A user's events -> (how many there were, the newest `limit`, oldest first).

    The accumulator is a min-heap of at most `limit` events on their order key
    (unique per event: timestamp, file, line, position), so memory per user
    and worker is bounded whatever the history's length; Beam combines on
    the workers before the shuffle, so no worker receives more than `limit`
    events of a user from each other worker either.
    """

    def __init__(self, limit: int = MAX_EVENTS_PER_USER):
        super().__init__()
        if int(limit) < 1:
            raise ValueError(f"`max_events_per_user` must be positive, got {limit}")
        self.limit = int(limit)

    def create_accumulator(self):
        return 0, []

    def add_input(self, accumulator, event):
        count, heap = accumulator
        entry = (event[0], event)  # the key alone decides: events never compare their side dicts
        if len(heap) < self.limit:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            heapq.heapreplace(heap, entry)
        return count + 1, heap

    def merge_accumulators(self, accumulators):
        accumulators = list(accumulators)
        entries = heapq.nlargest(self.limit, (e for _, heap in accumulators for e in heap), key=lambda e: e[0])
        heapq.heapify(entries)
        return sum(count for count, _ in accumulators), entries

    def extract_output(self, accumulator):
        count, heap = accumulator
        return count, [event for _, event in sorted(heap, key=lambda e: e[0])]


def build_examples(element: Tuple[str, Tuple[int, List[Event]]], collapse_repeats: Optional[bool] = None):
    """`(user, (count, newest events in order))` -> serialized examples tagged with
    their split (see the module docstring); `collapse_repeats`: leave-one-out's
    (None: `collapse_repeats_default` of the user's side fields)."""
    user, (count, events) = element
    if count > len(events):
        _count("truncated users")
        _count("truncated events", count - len(events))
    fields: Dict[str, None] = {}  # side fields in order of first appearance
    for _, _, side in events:
        for name in side:
            fields.setdefault(name, None)
    _count("users")
    # The Python path's rule: history + target of the train example = the training sequence.
    if collapse_repeats is None:
        collapse_repeats = collapse_repeats_default(fields)
    train_end, validation, test = leave_one_out_cuts(np.array([item for _, item, _ in events], dtype=object),
                                                     collapse_repeats)
    ends = {"train": train_end - 1}
    if validation is None:
        _count("short users (train only)")
    else:
        ends.update(validation=validation, eval=test)
    for split, end in ends.items():
        _count(f"examples: {split}")
        yield beam.pvalue.TaggedOutput(split, _example(user, events[:end], events[end], list(fields)))


def _keyed_by_sample_key(example: bytes, seed: int) -> Tuple[int, str, bytes]:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    user = tf.train.Example.FromString(example).features.feature[USER_ID].bytes_list.value[0].decode()
    return int(user_sample_keys([user], seed)[0]), user, example


def _sampled(keyed: List[Tuple[int, str, bytes]]):
    _count(f"examples: {EVAL_SAMPLE}", len(keyed))
    return [example for _, _, example in keyed]


class EvalUserSample(beam.PTransform):
    """Serialized examples -> those of the `eval_users` users that
    `tfrec_dyn.data.splits.sample_users` draws (the smallest
    `user_sample_keys`, ties by id), so the Evaluator scores the users that
    `tfrec-dyn evaluate --eval-users N` does.  One global `Top` combine:
    memory is `eval_users` examples."""

    def __init__(self, eval_users: int, seed: int = EVAL_USERS_SEED):
        super().__init__()
        check_eval_users(eval_users)
        self.eval_users, self.seed = int(eval_users), seed

    def expand(self, examples):
        return (examples
                | "KeyByUserSampleKey" >> beam.Map(_keyed_by_sample_key, self.seed)
                | "SmallestKeys" >> beam.combiners.Top.Smallest(self.eval_users)
                | "Examples" >> beam.FlatMap(_sampled))


class EventsToSequenceExamples(beam.PTransform):
    """`(user, Event)` -> `{split: serialized tf.train.Examples}` for the splits `SPLITS`
    (and `EVAL_SAMPLE`, the eval examples of a seeded sample of `eval_users`
    users, when that is given); each user keeps its newest `max_events_per_user` events;
    `collapse_repeats`: leave-one-out's (`build_examples`)."""

    def __init__(self, max_events_per_user: int = MAX_EVENTS_PER_USER, eval_users: Optional[int] = None,
                 collapse_repeats: Optional[bool] = None):
        super().__init__()
        self._collapse_repeats = collapse_repeats
        self._newest = NewestEvents(max_events_per_user)
        self._sample = EvalUserSample(eval_users) if eval_users is not None else None

    def expand(self, events):
        examples = (events
                    | "NewestEventsPerUser" >> beam.CombinePerKey(self._newest)
                    | "BuildExamples" >> beam.FlatMap(build_examples, self._collapse_repeats).with_outputs(*SPLITS))
        splits = {split: examples[split] for split in SPLITS}
        if self._sample is not None:
            splits[EVAL_SAMPLE] = splits["eval"] | "EvalUserSample" >> self._sample
        return splits


class RawLogsToSequenceExamples(beam.PTransform):
    """Raw log files -> `{"train", "validation", "eval": serialized Examples, "quarantine": dicts}`.

    Args:
      file_pattern: a file or glob (local or any Beam file system, e.g. gs://).
      format: one of `FORMATS` (see the module docstring).
      columns: for "csv", "tsv", "jsonl": canonical name -> source column, as
        for `tfrec_dyn.data.read_log` (`user` and `item` required).
      delimiter, header: CSV/TSV options, as for `read_log`.
      max_events_per_user: the newest events a user keeps (the others are
        counted as truncated).
      eval_users: also output `EVAL_SAMPLE`, the eval examples of a seeded
        sample of this many users (`EvalUserSample`); None: not.
      collapse_repeats: leave-one-out's rule (`tfrec_dyn.data.splits.Split`;
        None: the default for the log's fields).

    Apply it to the pipeline (`pipeline | RawLogsToSequenceExamples(...)`).
    """

    def __init__(self, file_pattern: str, format: str,  # pylint: disable=redefined-builtin
                 columns: Optional[Mapping[str, Union[str, int]]] = None,
                 delimiter: Optional[str] = None, header: bool = True,
                 max_events_per_user: int = MAX_EVENTS_PER_USER, eval_users: Optional[int] = None,
                 collapse_repeats: Optional[bool] = None):
        super().__init__()
        self._parse = ParseRawLogs(file_pattern, format, columns, delimiter, header)
        self._examples = EventsToSequenceExamples(max_events_per_user, eval_users, collapse_repeats)

    def expand(self, pbegin):
        parsed = pbegin | "ParseRawLogs" >> self._parse
        examples = parsed["events"] | "SequenceExamples" >> self._examples
        return {**examples, QUARANTINE: parsed[QUARANTINE]}


def feature_spec(side_fields: Sequence[str] = (), target: bool = True) -> Dict[str, Any]:
    """The `tf.io.parse_example` spec of the examples, for the given side fields.

    >>> sorted(feature_spec(["category"]))  # doctest: +SKIP
    ['category', 'item_ids', 'target_category', 'target_item_id', 'user_id']
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    dtypes = {"int64": tf.int64, "float": tf.float32, "bytes": tf.string}
    spec = {USER_ID: tf.io.FixedLenFeature([], tf.string), ITEM_IDS: tf.io.VarLenFeature(tf.string)}
    if target:
        spec[TARGET_ITEM_ID] = tf.io.FixedLenFeature([], tf.string)
    for field in side_fields:
        dtype = dtypes[_kind(field)]
        spec[field] = tf.io.VarLenFeature(dtype)
        if target:
            spec[f"target_{field}"] = tf.io.FixedLenFeature([], dtype)
    return spec


# ------------------------------------------------------------ outputs, runs
def write_outputs(outputs: Mapping[str, Any], examples_dir: str, quarantine_dir: str) -> None:
    """Writes the splits (every output but the quarantine) in the TFX `Examples` layout
    (`<examples_dir>/Split-<split>/data_tfrecord-*.gz`, GZIP TFRecords) and the
    quarantine as JSON lines (`<quarantine_dir>/quarantine-*.jsonl`)."""
    for split in (name for name in outputs if name != QUARANTINE):
        _ = outputs[split] | f"Write-{split}" >> beam.io.WriteToTFRecord(
            os.path.join(examples_dir, f"Split-{split}", "data_tfrecord"), file_name_suffix=".gz")
    _ = (outputs[QUARANTINE]
         | "QuarantineToJson" >> beam.Map(json.dumps, sort_keys=True)
         | "WriteQuarantine" >> beam.io.WriteToText(os.path.join(quarantine_dir, QUARANTINE),
                                                    file_name_suffix=".jsonl"))


def counters(result) -> Dict[str, int]:
    """The job's counters (namespace `NAMESPACE`), summed over steps: committed
    values where the runner reports them, else attempted ones."""
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
    totals: Dict[str, int] = {}
    for counter in query["counters"]:
        try:
            value = counter.committed
        except Exception:  # pylint: disable=broad-except  (some runners only report attempted)
            value = None
        value = counter.attempted if value is None else value
        name = counter.key.metric.name
        totals[name] = totals.get(name, 0) + int(value or 0)
    return totals


def run_sequence_job(input_pattern: str, output_dir: str, format: str,  # pylint: disable=redefined-builtin
                     columns: Optional[Mapping[str, Union[str, int]]] = None,
                     beam_args: Optional[Iterable[str]] = None,
                     *, delimiter: Optional[str] = None, header: bool = True,
                     max_events_per_user: int = MAX_EVENTS_PER_USER,
                     eval_users: Optional[int] = None) -> Dict[str, int]:
    """Runs the whole step as one Beam job and returns its counts.

    Writes `<output_dir>/examples/Split-<split>/` (with `eval_users`, a
    `Split-eval_sample` too: see `EvalUserSample`), `<output_dir>/quarantine/` and
    `<output_dir>/stats.json` (the counts).  `beam_args` are Beam pipeline
    options (the runner and its settings); by default the DirectRunner.
    Raises `DataFormatError` (after writing stats.json) when no line could be
    read, like the readers do for a file of which no line parses.
    """
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel

    if isinstance(beam_args, str):
        raise TypeError("beam_args must be a list of arguments, not one string")
    transform = RawLogsToSequenceExamples(input_pattern, format, columns, delimiter, header, max_events_per_user,
                                          eval_users)
    pipeline = beam.Pipeline(options=PipelineOptions(list(beam_args or [])))
    outputs = pipeline | "RawLogsToSequenceExamples" >> transform
    write_outputs(outputs, os.path.join(output_dir, "examples"), os.path.join(output_dir, QUARANTINE))
    result = pipeline.run()
    result.wait_until_finish()

    counts = {name: 0 for name in ("files", "lines_read", "lines_kept", "lines_quarantined", "events", "users")}
    counts.update({f"examples: {split}": 0 for split in SPLITS})
    counts.update(counters(result))
    with beam.io.filesystems.FileSystems.create(os.path.join(output_dir, "stats.json")) as f:
        f.write(json.dumps(counts, indent=2, sort_keys=True).encode("utf-8"))
    if not counts["lines_kept"]:
        reasons = {k: v for k, v in counts.items() if k.startswith(("quarantined: ", "dropped: "))}
        raise DataFormatError(
            f"{input_pattern}: no line could be read as {format!r} "
            f"({counts['files']} file(s), {counts['lines_read']} line(s); {reasons or 'no data'}); "
            f"see {os.path.join(output_dir, QUARANTINE)}")
    return counts
