"""The TFX pipeline (local runner) on a synthetic log of `scale.py`'s sizes, with the time of each component.

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/pipeline_scale.py --sizes S \\
        --out benchmarks/results/pipeline_S.md --json benchmarks/results/pipeline_S.json

For each size the `user item` log of `scale.py` (generated once into
`--work-dir`) is run through `pipelines/local_runner.py` from a fresh
pipeline root (no cache): SequenceExampleGen (Beam), StatisticsGen,
SchemaGen, ExampleValidator, Transform, Trainer (one epoch by default,
streaming its TFRecords), Evaluator (TFMA, the full protocol on every
held-out user), Pusher. Reported: each component's seconds and state, from
the run's ML Metadata store (an execution's creation to its last update),
the whole run's seconds, and the peak RSS of the runner process (Beam's
worker processes under `--beam-mode multi_processing` have their own).
"""

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale  # noqa: E402  (the sizes, the logs, a child's peak RSS)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def component_times(metadata_path: str) -> list:
    """[(component, state, seconds)] of the executions in `metadata_path`, in order."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(connection)
    rows = []
    for execution in sorted(store.get_executions(), key=lambda e: e.id):
        name = store.get_execution_types_by_id([execution.type_id])[0].name.rsplit(".", 1)[-1]
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        rows.append((name, metadata_store_pb2.Execution.State.Name(execution.last_known_state), seconds))
    return rows


def _summary(stdout: str) -> list:
    """The runner's closing summary (from "ML Metadata:" on) and the Trainer's epoch lines."""
    lines = stdout.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ML Metadata:")), 0)
    return [line for line in lines[:start] if "/epoch" in line] + lines[start:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["S"], choices=sorted(scale.SIZES))
    parser.add_argument("--work-dir", default=scale.DEFAULT_WORK_DIR)
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per size")
    parser.add_argument("--out")
    parser.add_argument("--json")
    parser.add_argument("pipeline_flags", nargs="*", metavar="FLAG",
                        help="after --: local_runner flags (default: --model sasrec --loss gbce --epochs 1 "
                             "--validate-every 0 --optimizer lazy_adam --beam-mode multi_processing)")
    args = parser.parse_args(argv)
    flags = args.pipeline_flags or ["--model", "sasrec", "--loss", "gbce", "--epochs", "1", "--validate-every", "0", "--optimizer",
                                    "lazy_adam", "--beam-mode", "multi_processing"]
    results = []
    for size in args.sizes:
        log = scale.log_path(args.work_dir, size, "user-item")
        root = os.path.join(args.work_dir, f"pipeline_{size}")
        shutil.rmtree(root, ignore_errors=True)
        data = os.path.join(root, "data")
        os.makedirs(data)
        os.symlink(log, os.path.join(data, os.path.basename(log)))
        command = [sys.executable, os.path.join(REPO, "pipelines", "local_runner.py"), "--data", data,
                   "--format", "user-item", "--pipeline-root", os.path.join(root, "root"),
                   "--serving-root", os.path.join(root, "serving"), "--hr-threshold", "0", "--max-hr-drop", "1",
                   "--no-cache", *flags]
        done = scale._timed(command, args.timeout)
        components = component_times(os.path.join(root, "root", "metadata.sqlite"))
        results.append({"size": size, "seconds": done["seconds"], "peak_rss": done["peak_rss"],
                        "components": components, "report": _summary(done["stdout"])})
        print(f"{size}: {done['seconds']:.0f} s, peak RSS {done['peak_rss'] / 1e9:.2f} GB")
        for name, state, seconds in components:
            print(f"  {name}: {state} {seconds:.0f} s")
    lines = [f"Command: `TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/pipeline_scale.py {' '.join(argv or sys.argv[1:])}`  ",
             f"{os.cpu_count()} CPU(s) ({platform.machine()}); pipeline flags: `{' '.join(flags)}`; "
             "peak RSS: the runner process (Beam's worker processes have their own).", ""]
    for result in results:
        lines += [f"#### {result['size']} ({scale.SIZES[result['size']]['num_users']:,} users, "
                  f"{scale.SIZES[result['size']]['num_items']:,} items): {result['seconds']:.0f} s in all, "
                  f"runner peak RSS {result['peak_rss'] / 1e9:.2f} GB", "",
                  "| component | state | seconds |", "|---|---|---:|"]
        lines += [f"| {name} | {state} | {seconds:.0f} |" for name, state, seconds in result["components"]]
        lines += ["", "```", *result["report"], "```", ""]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": lines[0], "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
