"""Run the pipeline locally: `python pipelines/local_runner.py [--model sasrec] [--data FOLDER] ...`

Uses TFX's LocalDagRunner, a SQLite ML Metadata store under the pipeline root
and Beam's DirectRunner in multi-processing mode.  Shows one line per
component (running / cached / done / failed, seconds) and the Trainer's
progress; everything else (TensorFlow, absl, Beam) goes to
`<pipeline root>/logs/run-<time>.log` (`--verbose`: all of it on the terminal).
Ends by printing where the model was pushed, the evaluation figures and a
ready-to-paste `curl` for the REST API (`tfrec-dyn serve` here, or TF Serving).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tfrec_dyn  # noqa: E402,F401  (Keras 2 before TensorFlow; imports no TensorFlow itself)


def parse_args(argv=None, with_flags: bool = False):
    """The `PipelineConfig` (and with `with_flags`, the parsed flags too)."""
    from pipelines.configs import add_pipeline_flags, pipeline_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pipeline_flags(parser)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--verbose", action="store_true",
                        help="everything TFX, TensorFlow and Beam say on the terminal (default: in a log file)")
    args = parser.parse_args(argv)
    try:
        config = pipeline_config(args, enable_cache=not args.no_cache)
    except ValueError as error:  # an unknown or unguessable format: one line, exit 2
        parser.error(str(error))
    return (config, args) if with_flags else config


def main(argv=None) -> int:
    from tfrec_dyn.console import EventChannel, redirected

    argv = sys.argv[1:] if argv is None else list(argv)
    with tempfile.TemporaryFile("w+") as startup:
        with redirected(startup):  # TensorFlow's start-up output: this process only draws the child's progress
            import pipelines.configs  # noqa: F401
            import pipelines.progress  # noqa: F401
        startup.seek(0)
        startup_output = startup.read()
    config, args = parse_args(argv, with_flags=True)
    channel = EventChannel.from_environment()
    if args.verbose or channel is not None:  # all on the terminal, or the child of a quiet run
        sys.stderr.write(startup_output)
        return run_pipeline(config, channel)
    from pipelines.progress import watch

    log = os.path.join(config.pipeline_root, "logs", f"run-{time.strftime('%Y%m%d-%H%M%S')}.log")
    return watch([sys.executable, os.path.abspath(__file__), *argv], log)


def run_pipeline(config, channel=None) -> int:
    """Runs the pipeline in this process; prints (or with `channel` sends)
    the summary of what it pushed."""
    from tfx import v1 as tfx

    from pipelines.pipeline import create_pipeline
    from pipelines.progress import send_component_events
    from pipelines.report import pipeline_report

    if channel is not None:
        send_component_events(channel.send)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    summary = pipeline_report(config)
    if channel is None:
        print(summary)
    else:
        channel.send({"summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
