"""Named data sets: the embedded default (MovieLens-100K) and files by format.

`load_dataset("ml-100k")` reads the copy shipped inside the package
(`tfrec_dyn/data/resources/ml-100k`, with its GroupLens licence README), so a
fresh clone needs nothing else.  Any other argument is a path; its format is
taken from `format=` or recognised from the file name.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

from tfrec_dyn.data import readers
from tfrec_dyn.data.interactions import Interactions

RESOURCES = os.path.join(os.path.dirname(__file__), "resources")

BUILTIN = {
    "ml-100k": {
        "path": os.path.join(RESOURCES, "ml-100k"),
        "format": "ml-100k",
        "description": "MovieLens-100K (GroupLens): 943 users, 1,682 movies, 100,000 ratings "
                       "with timestamps; embedded in the package.",
    },
}

FORMATS = {
    "ml-100k": readers.read_movielens_100k,
    "ml-1m": readers.read_movielens_1m,
    "user-item": readers.read_user_item,
    "jd": readers.read_jd_sessions,
}


# Logs with a column mapping (`columns`); "json" is accepted for "jsonl".
LOG_FORMATS = ("csv", "tsv", "jsonl")
# Every format name, the same in `tfrec-dyn train --format`, the pipeline's
# `--format` and the Beam step.
FORMAT_NAMES = tuple(FORMATS) + LOG_FORMATS


def canonical_format(format: str) -> str:  # pylint: disable=redefined-builtin
    """`format` checked against `FORMAT_NAMES` ("json" -> "jsonl")."""
    format = "jsonl" if format == "json" else format
    if format not in FORMAT_NAMES:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMAT_NAMES)}")
    return format


def guess_format(path: str) -> str:
    """Recognises a format from a path (folder or file name; a remote URI by its name only).

    Raises `DataFormatError` when the path does not say: a folder without
    u.data / ratings.dat, or a remote path with no telling name."""
    name = os.path.basename(os.path.normpath(path))
    remote = "://" in path
    if not remote and os.path.isdir(path):
        if os.path.exists(os.path.join(path, "u.data")):
            return "ml-100k"
        if os.path.exists(os.path.join(path, "ratings.dat")):
            return "ml-1m"
        raise readers.DataFormatError(f"{path}: cannot tell the format of this folder (it has neither u.data "
                                      f"nor ratings.dat); pass --format (one of {', '.join(FORMAT_NAMES)})")
    if name == "u.data":
        return "ml-100k"
    if name == "ratings.dat":
        return "ml-1m"
    if name.startswith("JD_"):
        return "jd"
    for suffix in (".csv", ".tsv", ".jsonl", ".json"):
        if name.endswith(suffix):
            return canonical_format(suffix[1:])
    if remote:
        raise readers.DataFormatError(f"{path}: cannot tell the format from a remote path's name; pass --format "
                                      f"(one of {', '.join(FORMAT_NAMES)})")
    return "user-item"


def load_dataset(name_or_path: str, format: Optional[str] = None, columns: Optional[Dict[str, str]] = None,
                 strict: bool = False) -> Interactions:
    """Reads a built-in data set by name or a file/folder by path.

    Args:
      name_or_path: "ml-100k", or a path.
      format: one of `FORMAT_NAMES` (csv / tsv / jsonl need `columns`);
        guessed from the path when None.
      columns: column mapping for csv / tsv / jsonl logs, e.g. {"user": "uid", "item": "sku"}.
      strict: raise on the first malformed line instead of counting it.
    """
    if name_or_path in BUILTIN:
        spec = BUILTIN[name_or_path]
        return FORMATS[spec["format"]](spec["path"], strict=strict)
    if not os.path.exists(name_or_path):
        raise FileNotFoundError(
            f"{name_or_path}: no such file or folder, and not a built-in data set ({', '.join(BUILTIN)})")
    format = canonical_format(format) if format else guess_format(name_or_path)
    if format in LOG_FORMATS:
        if not columns:
            raise ValueError(f"{name_or_path}: reading a {format} log needs a column mapping "
                             "(e.g. columns={'user': 'user_id', 'item': 'item_id'})")
        return readers.read_log(name_or_path, columns=columns, format=format, strict=strict)
    return FORMATS[format](name_or_path, strict=strict)


def item_titles(name_or_path: str) -> Dict[str, str]:
    """Raw item id -> title, where the data set has titles (MovieLens `u.item`)."""
    folder = BUILTIN[name_or_path]["path"] if name_or_path in BUILTIN else name_or_path
    folder = folder if os.path.isdir(folder) else os.path.dirname(folder)
    path = os.path.join(folder, "u.item")
    if not os.path.exists(path):
        return {}
    titles = {}
    with open(path, encoding="latin-1") as f:
        for line in f:
            fields = line.split("|")
            if len(fields) > 1:
                titles[fields[0]] = fields[1]
    return titles
