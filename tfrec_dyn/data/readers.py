"""Readers that turn interaction logs on disk into `Interactions`.

Formats:

* `read_movielens_100k` - MovieLens 100K `u.data` (`user<TAB>item<TAB>rating<TAB>time`).
* `read_movielens_1m` - MovieLens 1M `ratings.dat` (`user::item::rating::time`).
* `read_user_item` - plain `user item` text, one interaction per line, in time order.
* `read_jd_sessions` - JD micro-behaviour sessions, one session per line of
  `sku+behavior_type+category+time_interval+dwell_time` tokens.
* `read_log` - generic CSV / TSV / JSON-lines logs with a column mapping.

Every reader keeps every field the source has as a side field.  Numeric side
fields (`rating`, `timestamp`, `dwell_time`, `time_interval`) are float64
(timestamps in seconds since the epoch); categorical and unknown ones hold
strings (or raw JSON values).  When there is a `timestamp`, each user's events
are ordered by it, ties keeping file order; otherwise file order is kept.

Bad input (the same for every reader; see `Interactions.report`):

* Each physical line is counted once, so
  `report.lines_read == report.kept + report.dropped_total` (a CSV header is
  not counted as a data line).
* Blank (whitespace-only) lines carry no data: they are dropped under the
  reason ``"blank line"`` and never raise, even with ``strict=True``.
* A malformed line (wrong number of fields, an unparsable number, an empty id,
  invalid UTF-8 or JSON, ...) is dropped and counted under its reason, with its
  line number in `report.examples`; with ``strict=True`` it raises
  `DataFormatError` naming the file and the line instead.
* File-level problems always raise: a missing file raises `FileNotFoundError`
  naming it; an empty file, a missing column, or a file of which no line
  parses (typically a wrong delimiter) raises `DataFormatError` naming it.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import gc
import io
import json
import math
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from tfrec_dyn.data.interactions import (KNOWN_SIDE_FIELDS, MAX_EXAMPLES, NUMERIC_SIDE_FIELDS, Interactions,
                                        ReadReport)

__all__ = [
    "DataFormatError",
    "read_jd_sessions",
    "jd_session_id",
    "read_log",
    "read_movielens_100k",
    "read_movielens_1m",
    "read_user_item",
]

PathLike = Union[str, os.PathLike]
Row = Tuple[Any, ...]
# A line parser turns one non-blank line into zero or more event rows, or
# raises `BadLine`.
LineParser = Callable[[str, int], List[Row]]

BLANK_LINE = "blank line"
NOT_UTF8 = "not UTF-8"
WRONG_FIELD_COUNT = "wrong number of fields"
BAD_MICRO_BEHAVIOR = "malformed micro-behaviour"
NO_MICRO_BEHAVIOR = "no valid micro-behaviour"

_JD_FIELDS = ("user", "item", "behavior", "category", "time_interval", "dwell_time")
_MOVIELENS_FIELDS = ("user", "item", "rating", "timestamp")
_LOG_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


class DataFormatError(ValueError):
    """An interaction file that cannot be read as the expected format.

    The message always names the file, and the line when one line is at fault.
    """


class BadLine(Exception):
    """Raised by a line parser: `reason` is the key it is counted under in the
    report, `detail` the longer explanation used in error messages."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason


# ------------------------------------------------------------------ values
def _text(value: Any) -> str:
    """A non-empty id or category, as a string."""
    if value is None or isinstance(value, (dict, list)):
        raise ValueError("not a scalar")
    text = str(value).strip()
    if not text:
        raise ValueError("empty")
    return text


def _number(value: Any) -> float:
    """A finite number (a JSON number or its text)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def _timestamp(value: Any) -> float:
    """Seconds since the epoch, from a number or an ISO 8601 date-time
    (naive ones are taken as UTC)."""
    try:
        return _number(value)
    except (TypeError, ValueError):
        if not isinstance(value, str):
            raise
    moment = datetime.fromisoformat(value.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _converter(name: str) -> Callable[[Any], Any]:
    if name == "timestamp":
        return _timestamp
    return _number if name in NUMERIC_SIDE_FIELDS else _text


def _convert(name: str, convert: Callable[[Any], Any], value: Any) -> Any:
    try:
        return convert(value)
    except (TypeError, ValueError):
        raise BadLine(f"bad {name}", f"bad {name} {value!r}") from None


def _convert_all(
    names: Sequence[str], converters: Sequence[Callable[[Any], Any]], values: Sequence[Any]
) -> List[Any]:
    """`values` converted field by field; `BadLine` names the first bad one."""
    try:
        return [convert(value) for convert, value in zip(converters, values)]
    except (TypeError, ValueError):  # rare: find the culprit for the message
        return [_convert(name, convert, value) for name, convert, value in zip(names, converters, values)]


# ------------------------------------------------------------------- files
@contextlib.contextmanager
def _gc_paused():
    """Pauses the cyclic garbage collector.  Reading a big file makes millions
    of small, cycle-free tuples, which would otherwise trigger repeated full
    collections (about a third of the time for MovieLens-1M)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _existing_file(path: PathLike, default_name: Optional[str] = None) -> Path:
    """`path` itself, or when `path` is a folder `path / default_name`, or
    without a default name the one file the folder holds (the pipeline reads
    a folder of logs: its run directories name the folder)."""
    path = Path(path)
    if default_name is not None and path.is_dir():
        path = path / default_name
    elif path.is_dir():
        files = [entry for entry in sorted(path.iterdir()) if entry.is_file() and not entry.name.startswith(".")]
        if len(files) != 1:
            raise FileNotFoundError(errno.ENOENT, f"is a folder of {len(files)} files, not one file: name the file",
                                    str(path))
        path = files[0]
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "no such interaction file"
        raise FileNotFoundError(errno.ENOENT, what, str(path))
    return path


def _decode(raw: bytes) -> Tuple[str, bool]:
    """The line without its end-of-line, and whether it was valid UTF-8."""
    try:
        text, valid = raw.decode("utf-8"), True
    except UnicodeDecodeError:
        text, valid = raw.decode("utf-8", errors="replace"), False
    return text.rstrip("\r\n"), valid


def decode_line(raw: bytes, number: int) -> Tuple[str, bool]:
    """Physical line `number` (1-based) as text, without its end-of-line (and,
    on line 1, without a UTF-8 byte-order mark), and whether it was valid UTF-8.

    With `parse_line`, the per-line logic every reader shares; exposed for code
    that reads lines itself (the Beam sequence step).
    """
    text, valid = _decode(raw)
    if number == 1:
        text = text.lstrip("\ufeff")
    return text, valid


def parse_line(parse: LineParser, text: str, valid: bool, number: int) -> List[Row]:
    """Runs a line parser on one non-blank line from `decode_line`: event rows,
    or `BadLine` (invalid UTF-8 is a malformed line too)."""
    if not valid:
        raise BadLine(NOT_UTF8, "invalid UTF-8 bytes")
    return parse(text, number)


def _first_line(path: Path) -> str:
    """The first non-blank line of `path` (a header, or a line to size a table)."""
    with path.open("rb") as lines:
        for raw in lines:
            text = _decode(raw)[0].lstrip("\ufeff")
            if text.strip():
                return text
    raise DataFormatError(f"{path}: the file is empty (no non-blank line)")


@_gc_paused()
def _read_lines(
    path: Path,
    parse: LineParser,
    report: ReadReport,
    *,
    strict: bool,
    layout: str,
    skip_header: bool = False,
) -> List[Row]:
    """Runs `parse` on every non-blank line of `path`; the one loop all readers share.

    Counts every line in `report` (blank and malformed lines as dropped),
    raises `DataFormatError` for a malformed line under `strict`, for an empty
    file, and for a file of which no line parses.  `layout` describes the
    expected line for messages.  With `skip_header`, the first non-blank line
    is skipped and not counted.
    """
    rows: List[Row] = []
    first_bad: Optional[Tuple[int, BadLine, str]] = None
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            text, valid = decode_line(raw, number)
            if not text.strip():
                report.lines_read += 1
                report.drop(number, BLANK_LINE, text)
                continue
            if skip_header:
                skip_header = False
                continue
            report.lines_read += 1
            try:
                parsed = parse_line(parse, text, valid, number)
            except BadLine as bad:
                if strict:
                    raise _bad_line_error(path, number, bad, layout, text) from None
                report.drop(number, bad.reason, text)
                first_bad = first_bad or (number, bad, text)
                continue
            rows.extend(parsed)
            report.kept += 1
    if first_bad is not None and not rows:
        raise _no_line_error(path, report.lines_read, *first_bad, layout)
    if not rows:
        raise DataFormatError(f"{path}: the file is empty (no data line)")
    return rows


def _bad_line_error(path: Path, number: int, bad: BadLine, layout: str, text: str) -> DataFormatError:
    """What `strict` raises for malformed line `number`."""
    return DataFormatError(f"{path}, line {number}: {bad.detail} (expected {layout}): {text[:200]!r}")


def _no_line_error(path: Path, lines_read: int, number: int, bad: BadLine, text: str, layout: str) -> DataFormatError:
    """What a file of which no line parses raises, citing the first bad line."""
    hint = " Is the delimiter right?" if bad.reason == WRONG_FIELD_COUNT else ""
    return DataFormatError(f"{path}: none of its {lines_read} line(s) could be read as {layout}.{hint} "
                           f"First bad line {number}: {bad.detail}: {text[:200]!r}")


def _wrong_field_count(found: int, expected: int) -> BadLine:
    return BadLine(WRONG_FIELD_COUNT, f"{found} field(s), expected {expected}")


def _side_array(name: str, values: Sequence[Any]) -> np.ndarray:
    if name in NUMERIC_SIDE_FIELDS:
        return np.asarray(values, dtype=np.float64)
    array = np.empty(len(values), dtype=object)  # also keeps JSON lists 1-D
    array[:] = values
    return array


@_gc_paused()
def _build(rows: List[Row], names: Sequence[str], report: ReadReport) -> Interactions:
    """Groups event rows (`user, item, *side` in the order of `names`) by user."""
    columns = list(zip(*rows))
    side = {name: _side_array(name, values) for name, values in zip(names[2:], columns[2:])}
    return Interactions.from_events(columns[0], columns[1], side, order_by="timestamp", report=report)


def _fixed_fields_parser(split: Callable[[str], List[str]], names: Sequence[str]) -> LineParser:
    """A parser for lines of exactly `len(names)` fields named `names`."""
    converters = [_converter(name) for name in names]

    def parse(text: str, number: int) -> List[Row]:
        fields = split(text)
        if len(fields) != len(names):
            raise _wrong_field_count(len(fields), len(names))
        return [tuple(_convert_all(names, converters, fields))]

    return parse


def _read_line_format(path: Path, format: str, strict: bool) -> Interactions:  # pylint: disable=redefined-builtin
    split, names, layout = LINE_FORMATS[format]
    report = ReadReport(source=str(path))
    rows = _read_lines(path, _fixed_fields_parser(split, names), report, strict=strict, layout=layout)
    return _build(rows, names, report)


def jd_session_id(path: PathLike, line_number) -> str:
    """A JD session's user id: its file's name and line number (`"JD_sample:3"`),
    unique over several files; the reader and the Beam step both name sessions so."""
    return f"{os.path.basename(str(path))}:{line_number}"


def _jd_parser(strict: bool, on_skip: Callable[[int, str, str], None], source: Optional[PathLike] = None) -> LineParser:
    """Parser of one JD session line; `on_skip(line, reason, detail)` hears of
    each malformed micro-behaviour that was left out.  The session is named
    `jd_session_id(source, line)`, or by its line number alone when `source`
    is not known (the Beam step names it once it knows the file)."""
    names = _JD_FIELDS[1:]
    converters = [_converter(name) for name in names]

    def parse(text: str, number: int) -> List[Row]:
        session = str(number) if source is None else jd_session_id(source, number)
        rows, bad_tokens = [], []
        for position, token in enumerate(text.split(), start=1):
            parts = token.split("+")
            try:
                if len(parts) != len(names):
                    raise BadLine(BAD_MICRO_BEHAVIOR, f"{len(parts)} '+'-separated part(s), expected 5")
                fields = _convert_all(names, converters, parts)
            except BadLine as bad:
                detail = f"micro-behaviour {position} {token!r}: {bad.detail}"
                if strict:
                    raise BadLine(BAD_MICRO_BEHAVIOR, detail) from None
                bad_tokens.append(detail)
                continue
            rows.append((session, *fields))
        if not rows:
            raise BadLine(NO_MICRO_BEHAVIOR, bad_tokens[0])
        for detail in bad_tokens:
            on_skip(number, BAD_MICRO_BEHAVIOR, detail)
        return rows

    return parse


# Line-based formats: (field splitter or None for JD, field names, layout).
LINE_FORMATS = {
    "ml-100k": (lambda text: text.split("\t"), _MOVIELENS_FIELDS,
                "4 tab-separated fields 'user item rating timestamp'"),
    "ml-1m": (lambda text: text.split("::"), _MOVIELENS_FIELDS,
              "4 '::'-separated fields 'user::item::rating::timestamp'"),
    "user-item": (str.split, ("user", "item"), "2 whitespace-separated fields 'user item'"),
    "jd": (None, _JD_FIELDS, "space-separated 'sku+behavior_type+category+time_interval+dwell_time' tokens"),
}


def line_parser(format: str, on_skip: Optional[Callable[[int, str, str], None]] = None):  # pylint: disable=redefined-builtin
    """`(parse, field_names)` for a line-based format, for code that reads lines
    itself (the Beam sequence step): `parse(text, line_number)` returns event
    rows `(user, item, *side)` in the order of `field_names`, and raises
    `BadLine` (with `.reason` and `.detail`) for a malformed line."""
    if format not in LINE_FORMATS:
        raise ValueError(f"unknown line format {format!r}; choose one of {sorted(LINE_FORMATS)}")
    split, names, _ = LINE_FORMATS[format]
    if split is None:
        return _jd_parser(False, on_skip or (lambda *_: None)), names
    return _fixed_fields_parser(split, names), names


# ----------------------------------------------------------------- readers
def read_movielens_100k(path: PathLike, strict: bool = False) -> Interactions:
    """Reads MovieLens 100K ratings: the `ml-100k` folder or its `u.data`.

    Lines are `user<TAB>item<TAB>rating<TAB>unix_time`.  `rating` and
    `timestamp` are kept as side fields; each user's ratings are ordered by
    time, ties in file order.

    Example:
    >>> data = read_movielens_100k("ml-100k")  # doctest: +SKIP
    >>> data.num_users, data.num_interactions, data.side_fields  # doctest: +SKIP
    (943, 100000, ('rating', 'timestamp'))
    """
    return _read_line_format(_existing_file(path, "u.data"), "ml-100k", strict)


def read_movielens_1m(path: PathLike, strict: bool = False) -> Interactions:
    """Reads MovieLens 1M ratings: the `ml-1m` folder or its `ratings.dat`.

    Lines are `user::item::rating::unix_time`.  `rating` and `timestamp` are
    kept as side fields; each user's ratings are ordered by time, ties in file
    order.

    Example:
    >>> data = read_movielens_1m("ml-1m")  # doctest: +SKIP
    >>> data.num_users, data.num_interactions  # doctest: +SKIP
    (6040, 1000209)
    """
    return _read_line_format(_existing_file(path, "ratings.dat"), "ml-1m", strict)


def read_user_item(path: PathLike, strict: bool = False) -> Interactions:
    """Reads `user item` lines (whitespace-separated), already in time order.

    Each user's items keep file order; there are no side fields.  A file of
    printable ASCII (and whitespace) is read whole and vectorised, with no
    Python object per line (`_read_user_item_columns`); any other byte (UTF-8
    ids, a byte-order mark) sends it through the line-by-line reader, with
    the same result.

    Example:
    >>> data = read_user_item("Beauty.txt")  # doctest: +SKIP
    >>> data.items[0][:3].tolist()  # doctest: +SKIP
    ['17', '4', '98']
    """
    path = _existing_file(path)
    data = _read_user_item_columns(path, strict)
    return data if data is not None else _read_line_format(path, "user-item", strict)


# Bytes `str.split()` splits on, and bytes the vectorised `user item` reader
# leaves to the line reader: non-ASCII (UTF-8 ids, a byte-order mark, invalid
# UTF-8) and the control characters `str.split` also treats as whitespace.
_ASCII_WHITESPACE = np.zeros(256, bool)
_ASCII_WHITESPACE[list(b" \t\n\r\x0b\x0c")] = True
_PLAIN_BYTES = bytes(range(32, 127)) + b"\t\n\r\x0b\x0c"
# `bytes.translate` tables: whitespace to 1, every other byte to 0.
_WHITESPACE_FLAGS = _ASCII_WHITESPACE.astype(np.uint8).tobytes()
# A JD file as CSV: one micro-behaviour a row, its five '+'-separated parts as columns.
_JD_TO_CSV = bytes.maketrans(b"+ \t\r\x0b\x0c", b",\n\n\n\n\n")


def _plain_text_layout(data: bytes):
    """The vectorised readers' first pass over a file's bytes: None when any
    byte is not plain ASCII (the line reader takes such files), else (codes,
    whitespace mask, token-start mask, line starts, tokens per line).

    Memory: about three bytes per byte of the file besides the file itself.
    Byte classes come from `bytes.translate` (one byte out per byte in), not
    from indexing a lookup table with the codes, which numpy does through an
    8-byte index per byte (ten times the file at its peak)."""
    if data.translate(None, _PLAIN_BYTES):  # the bytes left are not plain ASCII
        return None
    codes = np.frombuffer(data, np.uint8)
    space = np.frombuffer(data.translate(_WHITESPACE_FLAGS), np.bool_)
    token_start = ~space
    token_start[1:] &= space[:-1]
    line_starts = np.r_[0, np.flatnonzero(codes == ord("\n")) + 1]
    line_starts = line_starts[line_starts < len(codes)]  # no line after a final newline
    return codes, space, token_start, line_starts, _counts_from(token_start, line_starts)


def _counts_from(mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """How many of `mask` are set from each of the ascending `starts` up to
    the next (the last up to the end).  Eight bytes per set element: an
    `np.add.reduceat` that sums in int64 first casts the whole mask to it."""
    positions = np.flatnonzero(mask)
    return np.diff(np.searchsorted(positions, starts), append=len(positions))


def _line_text(data: bytes, line_starts: np.ndarray, line: int) -> str:
    """Line `line` (0-based) of `data` without its end-of-line, for a report."""
    end = line_starts[line + 1] if line + 1 < len(line_starts) else len(data)
    return data[line_starts[line]:end].decode().rstrip("\r\n")


@_gc_paused()
def _read_user_item_columns(path: Path, strict: bool) -> Optional[Interactions]:
    """`read_user_item` of a plain-ASCII file, whole-file and vectorised; None
    for any other file.

    The fields of every line are counted at once (token starts per line, from
    the bytes); lines of exactly two are kept, the others dropped and counted
    as the line reader does (blank, wrong number of fields; the first few
    cited with their line numbers).  Ids are numbered by first appearance
    (`pandas.factorize`) and each user's items point at one shared string per
    distinct id, so memory is a pointer per interaction.
    """
    import pandas as pd

    data = path.read_bytes()
    found = _plain_text_layout(data)
    if found is None:
        return None
    codes, space, token_start, line_starts, fields = found
    good = fields == 2
    report = ReadReport(source=str(path), lines_read=len(fields), kept=int(good.sum()))
    layout = LINE_FORMATS["user-item"][2]
    bad = np.flatnonzero(~good)
    if len(bad):
        text = lambda line: _line_text(data, line_starts, line)  # noqa: E731
        wrong = bad[fields[bad] > 0]
        if len(wrong) and (strict or not report.kept):
            first = int(wrong[0])
            bad_line = _wrong_field_count(int(fields[first]), 2)
            if strict:
                raise _bad_line_error(path, first + 1, bad_line, layout, text(first))
            raise _no_line_error(path, report.lines_read, first + 1, bad_line, text(first), layout)
        cited = bad[:MAX_EXAMPLES]
        for line in cited:
            report.drop(int(line) + 1, BLANK_LINE if fields[line] == 0 else WRONG_FIELD_COUNT, text(line))
        uncited_blank = int(np.sum(fields[bad[MAX_EXAMPLES:]] == 0))
        report.drop_uncited(BLANK_LINE, uncited_blank)
        report.drop_uncited(WRONG_FIELD_COUNT, len(bad) - len(cited) - uncited_blank)
    if not report.kept:
        raise DataFormatError(f"{path}: the file is empty (no data line)")
    tokens = np.array(data.split(), dtype=object)
    if len(bad):
        tokens = tokens[np.repeat(good, fields)]  # the tokens of the kept lines
    del found, data, codes, space, token_start
    user_codes, user_names = pd.factorize(tokens[0::2])
    item_codes, item_names = pd.factorize(tokens[1::2])
    del tokens
    item_names = np.array([name.decode() for name in item_names], dtype=object)  # one string per distinct id
    order = np.argsort(user_codes, kind="stable")  # users by first appearance, file order within each
    bounds = np.flatnonzero(np.diff(user_codes[order])) + 1
    return Interactions(user_ids=[name.decode() for name in user_names],
                        items=np.split(item_names[item_codes[order]], bounds), report=report)


def read_jd_sessions(path: PathLike, strict: bool = False) -> Interactions:
    """Reads JD micro-behaviour sessions: one session per line.

    A line is space-separated micro-behaviours
    `sku+behavior_type+category+time_interval+dwell_time`.  Each line becomes
    one sequence whose user id is the file's name and the line number
    (`"JD_sample:1"`, `"JD_sample:2"`, ...; `jd_session_id`), so a sequence can
    be traced back to the file, and the Beam step names it the same.  Items are SKUs; side fields are
    `behavior` and `category` (strings) and `time_interval` and `dwell_time`
    (floats), in file order.

    Malformed micro-behaviours (not five `+`-separated parts, an empty id, a
    non-numeric time): the token is left out and the rest of the session kept;
    each such token is counted in `report.skipped` (with its line number and
    position in `report.examples`), outside the line balance.  A line with no
    valid micro-behaviour at all is dropped as a line under
    ``"no valid micro-behaviour"``.  With ``strict=True`` the first malformed
    token raises `DataFormatError` naming file, line and token.

    Example:
    >>> data = read_jd_sessions("jd-micro/JD_Computers_sample")  # doctest: +SKIP
    >>> data.num_users, data.side_fields  # doctest: +SKIP
    (1000, ('behavior', 'category', 'time_interval', 'dwell_time'))
    """
    path = _existing_file(path)
    data = _read_jd_columns(path)
    return data if data is not None else _read_jd_lines(path, strict)


def _read_jd_lines(path: Path, strict: bool) -> Interactions:
    """`read_jd_sessions` line by line: any file, each malformed token named."""
    report = ReadReport(source=str(path))
    parse = _jd_parser(strict, report.skip, source=path)
    rows = _read_lines(path, parse, report, strict=strict, layout=LINE_FORMATS["jd"][2])
    return _build(rows, _JD_FIELDS, report)


@_gc_paused()
def _read_jd_columns(path: Path) -> Optional[Interactions]:
    """`read_jd_sessions` of a plain-ASCII file whose every micro-behaviour is
    well formed, whole-file and vectorised; None for any other file (the line
    reader then reads it, names what is wrong and keeps the rest).

    Tokens and lines are found from the bytes (as `_read_user_item_columns`
    does); a token must have exactly four '+' and no empty part.  The file,
    with '+' as ',' and whitespace as newlines, is then one CSV row per
    micro-behaviour for pandas' C parser: ids and behaviours as categoricals
    (one string per distinct value), times parsed exactly as `float` does
    (`round_trip`), a non-number or a non-finite time sending the file back
    to the line reader.
    """
    import pandas as pd

    data = path.read_bytes()
    found = _plain_text_layout(data)
    if found is None:
        return None
    codes, space, token_start, line_starts, tokens_per_line = found
    plus = codes == ord("+")
    token_starts = np.flatnonzero(token_start)
    num_tokens = len(token_starts)
    # '+' only occur inside tokens, so the ones from a token's start to the next token's are its own.
    if not num_tokens or np.any(_counts_from(plus, token_starts) != len(_JD_FIELDS) - 2):
        return None
    separator = space | plus  # a '+' beside a separator or an end leaves an empty part
    if np.any(plus & (np.r_[True, separator[:-1]] | np.r_[separator[1:], True])):
        return None
    names = _JD_FIELDS[1:]
    del found, space, plus, token_start, token_starts, separator
    try:
        frame = pd.read_csv(
            io.BytesIO(data.translate(_JD_TO_CSV)), header=None, names=names, engine="c", quoting=csv.QUOTE_NONE,
            na_filter=False, float_precision="round_trip", skip_blank_lines=True, low_memory=False,
            dtype={name: np.float64 if name in NUMERIC_SIDE_FIELDS else "category" for name in names})
    except ValueError:  # a time that is not a number
        return None
    if len(frame) != num_tokens or not all(np.isfinite(frame[name].to_numpy()).all()
                                           for name in names if name in NUMERIC_SIDE_FIELDS):
        return None
    report = ReadReport(source=str(path), lines_read=len(tokens_per_line))
    blank = np.flatnonzero(tokens_per_line == 0)
    for line in blank[:MAX_EXAMPLES]:
        report.drop(int(line) + 1, BLANK_LINE, _line_text(data, line_starts, int(line)))
    report.drop_uncited(BLANK_LINE, len(blank) - len(blank[:MAX_EXAMPLES]))
    del data, codes
    sessions = np.flatnonzero(tokens_per_line > 0)
    report.kept = len(sessions)
    ends = np.cumsum(tokens_per_line[sessions])
    starts = ends - tokens_per_line[sessions]

    def column(name):
        values = frame[name]
        if name in NUMERIC_SIDE_FIELDS:
            values = values.to_numpy(np.float64)
        else:  # one string per distinct value: a pointer per micro-behaviour
            values = np.asarray(values.cat.categories, dtype=object)[values.cat.codes.to_numpy()]
        return [values[start:end] for start, end in zip(starts.tolist(), ends.tolist())]

    columns = {name: column(name) for name in names}
    return Interactions(user_ids=[jd_session_id(path, int(line) + 1) for line in sessions],
                        items=columns.pop("item"), side=columns, report=report)


def read_log(
    path: PathLike,
    columns: Mapping[str, Union[str, int]],
    format: Optional[str] = None,  # pylint: disable=redefined-builtin
    delimiter: Optional[str] = None,
    header: bool = True,
    strict: bool = False,
) -> Interactions:
    """Reads a CSV, TSV or JSON-lines interaction log.

    Args:
      path: the log file.
      columns: canonical name -> source column.  `user` and `item` are
        required; the known side fields (`behavior`, `category`, `dwell_time`,
        `time_interval`, `timestamp`, `rating`) are optional and parsed to their
        type (`timestamp` from seconds or an ISO 8601 date-time, naive = UTC).
        Source columns are header names, JSON keys, or 0-based positions when
        `header=False`.
      format: "csv", "tsv" or "jsonl" ("json" is taken as JSON lines); by
        default from the extension (.csv, .tsv, .jsonl, .json).
      delimiter: the CSV/TSV field separator (default "," / tab).  CSV fields
        may be quoted; TSV lines are split on the delimiter as they are.
      header: whether the first non-blank CSV/TSV line names the columns.
        Without one, the first line fixes the number of columns.
      strict: raise on the first malformed line instead of dropping it.

    Unmapped source columns are kept as side fields with their raw values
    (strings, or JSON values with `None` where a record lacks the key) under
    their own names, or, where that name is `user`, `item` or a known side
    field, under that name plus ``"_raw"`` (raw values never pose as typed
    fields: map the column to have it parsed).  Unmapped positions of a
    headerless file are named ``"column_<i>"``.  A line whose field count
    differs from the header's, or a JSON record missing a mapped key, is a
    malformed line.  Events are ordered by `timestamp` when it is mapped.

    Example:
    >>> data = read_log("events.csv",  # doctest: +SKIP
    ...                 {"user": "uid", "item": "sku", "timestamp": "ts"})
    >>> data.side_fields  # the unmapped "price" column is kept  # doctest: +SKIP
    ('timestamp', 'price')
    """
    path = _existing_file(path)
    fmt = _log_format(path, format)
    if fmt == "jsonl":
        if delimiter is not None:
            raise ValueError("delimiter applies to CSV/TSV logs, not JSON lines")
        return _read_jsonl(path, columns, strict)
    return _read_delimited(path, columns, fmt, delimiter, header, strict)


def _check_columns(columns: Mapping[str, Union[str, int]], named: bool) -> List[Tuple[str, Union[str, int]]]:
    """Validates `columns`; returns its `(name, source)` pairs, user and item first."""
    columns = dict(columns)
    missing = [name for name in ("user", "item") if name not in columns]
    if missing:
        raise ValueError(f"columns must map {missing}; got {sorted(columns)}")
    unknown = sorted(set(columns) - {"user", "item", *KNOWN_SIDE_FIELDS})
    if unknown:
        raise ValueError(
            f"unknown canonical field(s) {unknown} in columns; known: user, item, "
            f"{', '.join(KNOWN_SIDE_FIELDS)} (other columns are kept under their own names)"
        )
    if not named and not all(isinstance(source, int) for source in columns.values()):
        raise ValueError(f"without a header, columns must map to 0-based positions; got {columns}")
    return [(name, columns.pop(name)) for name in ("user", "item")] + list(columns.items())


def _log_format(path: Path, format: Optional[str]) -> str:  # pylint: disable=redefined-builtin
    if format is None:
        suffix = path.suffix.lower()
        if suffix not in _LOG_FORMATS:
            raise DataFormatError(
                f"{path}: cannot infer the log format from the extension {suffix!r}; "
                "pass format='csv', 'tsv' or 'jsonl'"
            )
        return _LOG_FORMATS[suffix]
    if format.lower() not in ("csv", "tsv", "jsonl", "json"):
        raise ValueError(f"format must be 'csv', 'tsv' or 'jsonl', not {format!r}")
    return "jsonl" if format.lower() == "json" else format.lower()


def extra_field_names(sources: Iterable[Any]) -> List[str]:
    """Side-field names for unmapped source columns: their own, with "_raw"
    appended while the name is canonical or already used."""
    taken = {"user", "item", *KNOWN_SIDE_FIELDS}
    names = []
    for source in sources:
        name = str(source)
        while name in taken:
            name += "_raw"
        taken.add(name)
        names.append(name)
    return names


@dataclasses.dataclass(frozen=True)
class _DelimitedLayout:
    """What a CSV/TSV file's first line fixes: how a line splits, and each output
    field's name, source position and converter (the mapped fields, then the rest raw)."""

    split: Callable[[str], List[str]]
    delimiter: str
    quoted: bool  # CSV: fields may be quoted; TSV lines are split as they are
    width: int
    names: List[str]
    positions: List[int]
    converters: List[Callable[[Any], Any]]
    layout: str  # the expected line, for messages


def _delimited_layout(first_line: str, columns: Mapping[str, Union[str, int]], fmt: str, delimiter: Optional[str],
                      header: bool, source: str) -> _DelimitedLayout:
    columns = _check_columns(columns, named=header)
    delimiter = delimiter or ("," if fmt == "csv" else "\t")
    if fmt == "csv":
        def split(text: str) -> List[str]:
            try:
                return next(csv.reader([text], delimiter=delimiter))
            except csv.Error as error:  # such as a lone carriage return outside quotes
                raise BadLine("malformed CSV", f"malformed CSV ({error})") from None
    else:
        def split(text: str) -> List[str]:
            return text.split(delimiter)

    try:
        first = [field.strip() for field in split(first_line)]
    except BadLine as error:
        raise DataFormatError(f"{source}: the first line {first_line!r} is {error.detail}") from None
    sources: List[Union[str, int]] = first if header else list(range(len(first)))
    absent = [source_ for _, source_ in columns if source_ not in sources]
    if absent:
        hint = ""
        if len(first) == 1:
            hint = f"; it splits into a single field on {delimiter!r}: is the delimiter right?"
        where = f"the header {first}" if header else f"the first line's {len(first)} field(s)"
        raise DataFormatError(f"{source}: column(s) {absent} not found in {where}{hint}")
    if header and len(set(first)) != len(first):
        raise DataFormatError(f"{source}: the header {first} repeats a column name")

    positions = [sources.index(source_) for _, source_ in columns]
    unmapped = [position for position in range(len(sources)) if position not in positions]
    names = [name for name, _ in columns]
    names += extra_field_names(sources[position] if header else f"column_{position}" for position in unmapped)
    converters = [_converter(name) for name, _ in columns] + [str] * len(unmapped)
    kind = "comma" if delimiter == "," else repr(delimiter)
    layout = f"{len(sources)} {kind}-separated fields" + (f" {first}" if header else "")
    return _DelimitedLayout(split, delimiter, fmt == "csv", len(sources), names, positions + unmapped, converters,
                            layout)


def delimited_parser(first_line: str, columns: Mapping[str, Union[str, int]], fmt: str = "csv",
                     delimiter: Optional[str] = None, header: bool = True, source: str = "log"):
    """`(parse, field_names, layout)` for CSV/TSV lines whose first line is
    `first_line` (the header, or with `header=False` a line fixing the width).

    Shared by `read_log` and the Beam sequence step, which reads the header of
    each file itself.  Raises `DataFormatError` naming `source` when a mapped
    column is missing.
    """
    fields = _delimited_layout(first_line, columns, fmt, delimiter, header, source)

    def parse(text: str, number: int) -> List[Row]:
        values = fields.split(text)
        if len(values) != fields.width:
            raise _wrong_field_count(len(values), fields.width)
        return [tuple(_convert_all(fields.names, fields.converters,
                                   [values[position] for position in fields.positions]))]

    return parse, fields.names, fields.layout


def _read_delimited(path: Path, columns, fmt: str, delimiter: str, header: bool, strict: bool) -> Interactions:
    first_line = _first_line(path)
    data = _read_delimited_columns(path, _delimited_layout(first_line, columns, fmt, delimiter, header, str(path)),
                                   header)
    return data if data is not None else _read_delimited_lines(path, first_line, columns, fmt, delimiter, header, strict)


def _read_delimited_lines(path: Path, first_line: str, columns, fmt: str, delimiter: str, header: bool,
                          strict: bool) -> Interactions:
    parse, names, layout = delimited_parser(first_line, columns, fmt, delimiter, header, source=str(path))
    report = ReadReport(source=str(path))
    rows = _read_lines(path, parse, report, strict=strict, layout=layout, skip_header=header)
    return _build(rows, names, report)


def _field_delimiters(codes: np.ndarray, delimiter: str, quoted: bool) -> Optional[np.ndarray]:
    """The bytes of a CSV/TSV file that are field delimiters (in CSV, those
    outside quotes); None when a quote is anywhere Python's csv and pandas
    might read apart: a quote that neither opens a field, closes one nor is
    doubled inside one (`ab"c` is text to both, and would flip every
    count after it), or a quoted field that runs past its line."""
    delimiters = codes == ord(delimiter)
    quotes = codes == ord('"')
    if not quoted or not quotes.any():
        return delimiters
    inside = np.cumsum(quotes, dtype=np.uint8)  # quotes up to each byte, mod 256: the parity holds
    np.bitwise_and(inside, 1, out=inside)
    inside = inside.view(bool)  # inside a quoted field after this byte
    where = np.flatnonzero(quotes)
    del quotes
    before = np.r_[ord("\n"), codes][where]
    after = np.r_[codes, ord("\n")][where + 1]
    opening = inside[where]
    starts_field = np.isin(before, [ord(delimiter), ord("\n"), ord('"')])
    ends_field = np.isin(after, [ord(delimiter), ord("\n"), ord("\r"), ord('"')])
    if not (starts_field[opening].all() and ends_field[~opening].all()) or inside[codes == ord("\n")].any():
        return None
    np.logical_not(inside, out=inside)
    delimiters &= inside
    return delimiters


# ISO 8601 date-times that Python's `datetime.fromisoformat` and pandas read alike: years
# well inside pandas' nanosecond range (1677-2262), an offset only after a time.
_ISO_DATE_TIME = r"(?:1[7-9]|2[01])\d{2}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?"


def _column_values(convert: Callable[[Any], Any], column) -> Optional[np.ndarray]:
    """A CSV column as pandas parsed it (float64 or categorical strings)
    converted as `convert` does value by value and held as `_side_array` holds
    it; None when a value would not convert (or might convert otherwise), so
    that the line reader, which quarantines it, takes the file."""
    import pandas as pd

    if column.dtype == np.float64:  # parsed by Python's own float (`float_precision="round_trip"`)
        numbers = column.to_numpy()
        return numbers if np.isfinite(numbers).all() else None
    # Categorical: each distinct spelling is converted once (ids and side values repeat).
    codes, spellings = column.cat.codes.to_numpy(), column.cat.categories
    if convert is str:
        return spellings.to_numpy(dtype=object)[codes]
    if convert is _text:
        stripped = spellings.str.strip()
        if (stripped == "").any():
            return None
        ids, distinct = pd.factorize(stripped)  # " a" and "a" are one id: one string, shared by its events
        return distinct.to_numpy(dtype=object)[ids[codes]]
    if convert is not _timestamp:
        return None  # a number column read as strings (it shares its source column with a text field)
    stripped = spellings.str.strip()  # timestamps that are not all numbers: ISO 8601 date-times?
    if not stripped.str.fullmatch(_ISO_DATE_TIME).all():
        return None
    seconds = np.empty(len(stripped))
    with_offset = np.asarray(stripped.str.contains(r"(?:Z|[+-]\d{2}:\d{2})$"), bool)
    # Apart: pandas reads a naive date-time after one with an offset in that offset.
    for group in (with_offset, ~with_offset):
        if not group.any():
            continue
        try:
            moments = pd.to_datetime(stripped[group], format="ISO8601", utc=True)  # naive ones as UTC
        except ValueError:  # such as 2024-02-30 or a leap second: the line reader quarantines the line
            return None
        # Whole microseconds since the epoch over 10^6, as `datetime.timestamp` computes it.
        micros = (moments - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)
        seconds[group] = micros.to_numpy(np.int64) / 1e6
    return seconds[codes]


@_gc_paused()
def _read_delimited_columns(path: Path, fields: _DelimitedLayout, header: bool) -> Optional[Interactions]:
    """`read_log` of a clean plain-ASCII CSV/TSV file, whole-file and vectorised;
    None for any other file, which the line reader then reads with the same
    result: a file with a blank, malformed or unconvertible line (quarantined
    line by line, with its number), a quoted field across lines, or a byte
    that is not plain ASCII.

    pandas' C parser reads numbers straight into float64 (with Python's float
    parsing; a spelling it does not take, such as `1_0`, sends the file to the
    line reader) and every other column as categorical strings (one string per
    distinct value), so memory stays near the data's; a timestamp column
    that is not all numbers is read again as strings (ISO 8601)."""
    import pandas as pd

    if len(fields.delimiter) != 1:
        return None
    data = path.read_bytes()
    found = _plain_text_layout(data)
    if found is None or len(found[4]) <= header or (found[4] == 0).any():
        return None
    codes, line_starts = found[0], found[3]
    del found
    num_rows = len(line_starts) - header
    # Fields per line from the bytes: pandas would fill a short line with empty
    # strings and cut a long one to the header's width.
    delimiters = _field_delimiters(codes, fields.delimiter, fields.quoted)
    if delimiters is None or (_counts_from(delimiters, line_starts)
                              != fields.width - 1).any():
        return None
    del codes, delimiters, line_starts
    numeric = {position for position, convert in zip(fields.positions, fields.converters)
               if convert in (_number, _timestamp)}
    numeric -= {position for position, convert in zip(fields.positions, fields.converters)
                if convert not in (_number, _timestamp)}  # a column mapped to a text field too stays text
    timestamps = {position for position, convert in zip(fields.positions, fields.converters) if convert is _timestamp}
    frame = None
    for strings in (set(), timestamps):
        try:
            with warnings.catch_warnings():
                # (A line too long for the names is cut with only a warning: never expected after the
                # count above, but a cut line must not pass.)
                warnings.simplefilter("error", pd.errors.ParserWarning)
                frame = pd.read_csv(io.BytesIO(data), sep=fields.delimiter, header=None, names=range(fields.width),
                                    index_col=False, skiprows=1 if header else 0, na_filter=False,
                                    skip_blank_lines=False, float_precision="round_trip",
                                    dtype={p: np.float64 if p in numeric - strings else "category"
                                           for p in range(fields.width)},
                                    quoting=csv.QUOTE_MINIMAL if fields.quoted else csv.QUOTE_NONE, engine="c",
                                    on_bad_lines="error")
            break
        except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError):  # a value that is not a number
            if not timestamps:
                return None
    if frame is None:
        return None
    del data
    if len(frame) != num_rows or frame.isna().to_numpy().any():
        return None  # a quoted field across lines
    columns = {}
    for name, position, convert in zip(fields.names, fields.positions, fields.converters):
        columns[name] = _column_values(convert, frame[position])
        if columns[name] is None:
            return None
    del frame
    report = ReadReport(source=str(path), lines_read=num_rows, kept=num_rows)
    users, items = columns.pop("user"), columns.pop("item")
    return Interactions.from_events(users, items, columns, order_by="timestamp", report=report)


def jsonl_parser(columns: Mapping[str, Union[str, int]]) -> Tuple[LineParser, List[str]]:
    """`(parse, field_names)` for JSON-lines logs, shared by `read_log` and the
    Beam sequence step: `parse(text, line_number)` returns one row
    `(user, item, *mapped side fields, extras)` with the values of
    `field_names` followed by a dict of the record's unmapped keys and their raw
    JSON values; it raises `BadLine` for a malformed line."""
    columns = _check_columns(columns, named=True)
    names = [name for name, _ in columns]
    converters = [_converter(name) for name in names]
    sources = {source for _, source in columns}

    def parse(text: str, number: int) -> List[Row]:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise BadLine("invalid JSON", f"invalid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise BadLine("not a JSON object", f"a JSON {type(record).__name__}, not an object")
        for name, source in columns:
            if source not in record:
                detail = f"no key {source!r} (mapped to {name!r}); keys: {sorted(record)}"
                raise BadLine(f"missing {source!r}", detail)
        values = _convert_all(names, converters, [record[source] for _, source in columns])
        extras = {key: value for key, value in record.items() if key not in sources}
        return [(*values, extras)]

    return parse, names


def _read_jsonl(path: Path, columns: Mapping[str, Union[str, int]], strict: bool) -> Interactions:
    if _first_line(path).lstrip().startswith("["):
        raise DataFormatError(
            f"{path}: looks like a JSON array; read_log reads JSON lines (one object per line)"
        )
    data = _read_jsonl_columns(path, _check_columns(columns, named=True))
    return data if data is not None else _read_jsonl_lines(path, columns, strict)


def _read_jsonl_lines(path: Path, columns: Mapping[str, Union[str, int]], strict: bool) -> Interactions:
    parse, names = jsonl_parser(columns)
    report = ReadReport(source=str(path))
    rows = _read_lines(path, parse, report, strict=strict, layout="JSON objects, one per line")
    extra_keys: Dict[str, None] = {}  # unmapped keys, in order of first appearance
    for row in rows:
        for key in row[-1]:
            extra_keys.setdefault(key, None)
    rows = [(*row[:-1], *(row[-1].get(key) for key in extra_keys)) for row in rows]
    return _build(rows, names + extra_field_names(extra_keys), report)


def _arrow_categorical(column):
    """An Arrow string or integer column as a pandas categorical of its text
    (one string per distinct value); None for another type or a null."""
    import pandas as pd
    import pyarrow as pa

    if column.null_count:
        return None
    if pa.types.is_integer(column.type):
        codes, distinct = pd.factorize(column.to_numpy())
        return pd.Series(pd.Categorical.from_codes(codes, distinct.astype(str)))
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.combine_chunks().dictionary_encode().to_pandas()
    return None


def _json_mapped_values(column, convert: Callable[[Any], Any]) -> Optional[np.ndarray]:
    """A mapped JSON key's values as `convert` gives them record by record
    (`_column_values` of Arrow's column); None where they might not be."""
    import pandas as pd
    import pyarrow as pa

    if convert in (_number, _timestamp) and (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        if column.null_count:
            return None
        return _column_values(convert, pd.Series(column.to_numpy().astype(np.float64)))
    if pa.types.is_floating(column.type):
        return None  # an id that JSON wrote as a float, or an int too big for int64: Python's text differs
    categorical = _arrow_categorical(column)
    return None if categorical is None else _column_values(convert, categorical)


def _json_raw_values(column) -> Optional[np.ndarray]:
    """An unmapped JSON key's values as `json.loads` gives them (None where a
    record lacks the key or has null); None for lists, objects, date-times
    Arrow inferred, and floats that might have been written as ints."""
    import pyarrow as pa

    kind, missing = column.type, column.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_null(kind):
        return np.full(len(column), None, dtype=object)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values = _column_values(str, column.fill_null("").combine_chunks().dictionary_encode().to_pandas())
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        values = column.fill_null(pa.scalar(0).cast(kind)).to_numpy().astype(object)  # Python ints, bools
    elif pa.types.is_floating(kind):
        numbers = column.fill_null(0.5).to_numpy()
        if (numbers == np.round(numbers)).any():  # `1` in a column with `2.5`: Python keeps the int
            return None
        values = numbers.astype(object)
    else:
        return None
    values[missing] = None
    return values


@_gc_paused()
def _read_jsonl_columns(path: Path, columns: List[Tuple[str, Union[str, int]]]) -> Optional[Interactions]:
    """`read_log` of a clean plain-ASCII JSON-lines file, whole-file and
    vectorised with Arrow's JSON reader; None for any other file, which the
    line reader then reads with the same result: a blank, malformed or
    non-object line, a mapped key a record lacks or has null, a value that
    would not convert, a column whose types vary, or a value `json.loads` and
    Arrow might read apart (see `_json_mapped_values`, `_json_raw_values`)."""
    import pyarrow as pa
    import pyarrow.json as pa_json

    data = path.read_bytes()
    found = _plain_text_layout(data)
    if found is None or not len(found[4]) or (found[4] == 0).any():
        return None
    line_starts = found[3]
    del found
    longest = int(np.diff(np.r_[line_starts, len(data)]).max())
    try:
        # Blocks larger than any line: a record never straddles two.
        table = pa_json.read_json(io.BytesIO(data), read_options=pa_json.ReadOptions(block_size=max(1 << 20,
                                                                                                   4 * longest)))
    except pa.ArrowInvalid:
        return None
    del data
    if table.num_rows != len(line_starts) or any(source not in table.column_names for _, source in columns):
        return None
    values = {}
    for name, source in columns:
        values[name] = _json_mapped_values(table.column(source), _converter(name))
        if values[name] is None:
            return None
    sources = {source for _, source in columns}
    extra_keys = [key for key in table.column_names if key not in sources]
    for name, key in zip(extra_field_names(extra_keys), extra_keys):
        values[name] = _json_raw_values(table.column(key))
        if values[name] is None:
            return None
    del table
    report = ReadReport(source=str(path), lines_read=len(line_starts), kept=len(line_starts))
    users, items = values.pop("user"), values.pop("item")
    return Interactions.from_events(users, items, values, order_by="timestamp", report=report)
