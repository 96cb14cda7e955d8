"""Reading speed: each vectorised reader against the line-by-line reader it replaces, same run.

For each format (`user item` lines, JD micro-behaviour sessions, a CSV event
log with a header, a timestamp and four side fields, the same log as JSON
lines) and size of
the synthetic log (`scale.py`'s sizes, generated once into `--work-dir`),
reads the file once with the vectorised reader and once line by line, each
in a fresh process, and reports seconds, lines/s, events/s, the process's
peak RSS and the ratio of the two speeds.  Both give the same interactions
(`tests/test_readers.py`).

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/read_speed.py --sizes M \\
        --out benchmarks/results/read_speed.md --json benchmarks/results/read_speed.json
"""

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale  # noqa: E402  (the sizes, the logs, a child's peak RSS)

FORMATS = ("user-item", "jd", "csv", "jsonl")
CSV_COLUMNS = {name: name for name in ("user", "item", "timestamp", "behavior", "category", "time_interval",
                                      "dwell_time")}  # `SyntheticLog.write`'s header (and JSON keys)
READERS = ("vectorised", "line by line")


def _read(format: str, reader: str, path: str) -> dict:  # pylint: disable=redefined-builtin
    """In the child: reads `path`, returns what was read."""
    import time

    from tfrec_dyn.data import readers

    path = Path(path)
    start = time.perf_counter()
    if format == "jsonl":
        data = (readers._read_jsonl_columns(path, readers._check_columns(CSV_COLUMNS, named=True))
                if reader == "vectorised" else readers._read_jsonl_lines(path, CSV_COLUMNS, False))
    elif format == "csv":
        first = readers._first_line(path)
        if reader == "vectorised":
            data = readers._read_delimited_columns(
                path, readers._delimited_layout(first, CSV_COLUMNS, "csv", None, True, str(path)), True)
        else:
            data = readers._read_delimited_lines(path, first, CSV_COLUMNS, "csv", None, True, False)
    elif reader == "vectorised":
        data = readers._read_user_item_columns(path, False) if format == "user-item" else readers._read_jd_columns(path)
    else:
        data = (readers._read_line_format(path, "user-item", False) if format == "user-item"
                else readers._read_jd_lines(path, False))
    if data is None:
        raise SystemExit(f"{path} did not take the vectorised path")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "lines": data.report.lines_read, "events": int(sum(len(s) for s in data.items))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["S"], choices=sorted(scale.SIZES))
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--work-dir", default=scale.DEFAULT_WORK_DIR)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out")
    parser.add_argument("--json")
    parser.add_argument("--child", nargs=3, metavar=("FORMAT", "READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_read(*args.child)))
        return 0
    rows = []
    for size in args.sizes:
        for format in args.formats:  # pylint: disable=redefined-builtin
            path = scale.log_path(args.work_dir, size, format)
            for reader in READERS:
                done = scale._timed([sys.executable, os.path.abspath(__file__), "--child", format, reader, path],
                                    args.timeout)
                row = json.loads(done["stdout"].strip().splitlines()[-1])
                row.update(size=size, format=format, reader=reader, peak_rss=done["peak_rss"])
                rows.append(row)
                print(f"{size} {format} {reader}: {row['seconds']:.1f} s, "
                      f"{row['lines'] / row['seconds']:,.0f} lines/s, peak RSS {row['peak_rss'] / 1e9:.2f} GB")
    lines = [f"Command: `TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/read_speed.py {' '.join(argv or sys.argv[1:])}`  ",
             f"{os.cpu_count()} CPU(s) ({platform.machine()}); one reader at a time, each in a fresh process "
             "(peak RSS includes importing TensorFlow).", "",
             "| size | format | reader | lines | events | seconds | lines/s | events/s | peak RSS GB | speed vs line by line |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        base = next(r for r in rows if (r["size"], r["format"], r["reader"]) == (row["size"], row["format"], READERS[1]))
        lines.append(f"| {row['size']} | {row['format']} | {row['reader']} | {row['lines']:,} | {row['events']:,} | "
                     f"{row['seconds']:.1f} | {row['lines'] / row['seconds']:,.0f} | "
                     f"{row['events'] / row['seconds']:,.0f} | {row['peak_rss'] / 1e9:.2f} | "
                     f"{base['seconds'] / row['seconds']:.2f}× |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": lines[0], "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
