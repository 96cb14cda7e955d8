"""The local runner as a person sees it: one line per component, the Trainer's progress, the log's path.

`watch(command, log_path)` runs the pipeline in a child process whose
output (TensorFlow, absl, Beam, its workers) goes to `log_path`; the child
sends progress events over a pipe (`tfrec_dyn.console.EventChannel`):
`ComponentEvents` turns the LocalDagRunner's log records into component
events, the Trainer's `TrainingProgress` sends the training's.  A child
that fails (an exception, a crash, a kill) is reported with the component it
was running and the last lines the log got from it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, TextIO

from tfrec_dyn.console import EventChannel, ProgressBar, redraw

# What TFX 1.x's LocalDagRunner and Launcher log around each node (absl, INFO).
COMPONENT_RUNNING = "Component %s is running."
COMPONENT_FINISHED = "Component %s is finished."
CACHED_EXECUTION = "A cached execution %d is used."
TAIL_LINES = 25
NAME_WIDTH = 22


class ComponentEvents(logging.Handler):
    """A logging handler for the `absl` logger of the process running the
    pipeline: sends {"component", "state": running | done | cached} events."""

    def __init__(self, send):
        super().__init__(logging.INFO)
        self.send, self.cached = send, False

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == COMPONENT_RUNNING:
            self.cached = False
            self.send({"component": record.args[0], "state": "running"})
        elif record.msg == CACHED_EXECUTION:
            self.cached = True
        elif record.msg == COMPONENT_FINISHED:
            self.send({"component": record.args[0], "state": "cached" if self.cached else "done"})


def send_component_events(send) -> None:
    """In the child: TFX's component records reach `ComponentEvents` (absl
    logs them at INFO; everything else absl says goes on to the log file)."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    logging.getLogger("absl").addHandler(ComponentEvents(send))


def training_summary(event: Dict) -> str:
    """What a finished training did, from its last progress event."""
    text = f"{event.get('epoch', 0)} of at most {event.get('epochs')} epochs"
    if event.get("best_epoch"):
        text += f", best validation NDCG@10 {event['best']:.4f} at epoch {event['best_epoch']}"
    if event.get("resumed_after"):
        text += f"; resumed after epoch {event['resumed_after']}"
    return text


class PipelineView:
    """Draws the events on `stream`: a line per component (in place on a
    terminal), the Trainer's progress while it trains."""

    def __init__(self, stream: TextIO, log_path: str):
        self.stream, self.log_path = stream, log_path
        self.tty = stream.isatty()
        self.current: Optional[str] = None
        self.started = 0.0
        self.log_offset = 0  # where the running component's lines start in the log
        self.training: Optional[Dict] = None
        self.bar: Optional[ProgressBar] = None
        self.summary: Optional[str] = None
        self.finished = 0  # components done or cached

    def handle(self, event: Dict) -> None:
        if "summary" in event:
            self.summary = event["summary"]
        elif "component" in event and event["state"] == "running":
            self.current, self.started, self.training = event["component"], time.monotonic(), None
            self.log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            self.bar = ProgressBar(self.stream, prefix=f"{self.current:<{NAME_WIDTH}} ", tty=self.tty)
            self._line("running", final=False)
        elif "component" in event:  # its line replaces the progress line on a terminal
            self._line(f"{event['state']:<7} {time.monotonic() - self.started:7.1f} s"
                       + (f"   {training_summary(self.training)}" if self.training else ""))
            self.current = self.bar = None
            self.finished += 1
        elif "epoch" in event and self.bar:  # the Trainer's training
            self.training = event
            self.bar.update(event)

    def fail(self, returncode: int) -> None:
        where = self.current or ("the pipeline, after its last component" if self.finished
                                 else "the pipeline, before any component ran")
        if self.current:
            self._line(f"failed  {time.monotonic() - self.started:7.1f} s")
        status = (f"killed by {signal.Signals(-returncode).name}" if returncode < 0
                  else f"exit status {returncode}")
        self.stream.write(f"\n{where} failed ({status}); the last lines of its log:\n")
        for line in self.tail():
            self.stream.write(f"  | {line}\n")
        self.stream.write(f"full log: {self.log_path}\n")
        self.stream.flush()

    def tail(self, lines: int = TAIL_LINES) -> List[str]:
        """The last lines the log got since the failed component started."""
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path, errors="replace") as f:
            f.seek(min(self.log_offset, os.path.getsize(self.log_path)))
            return [line.rstrip("\n") for line in f.readlines()[-lines:]]

    def _line(self, text: str, final: bool = True) -> None:
        line = f"{self.current:<{NAME_WIDTH}} {text}"
        if self.tty:
            redraw(self.stream, line, final)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()


def _die_with_parent() -> None:
    """In the child, before it starts: killed when the runner dies, whatever kills it (Linux's
    PR_SET_PDEATHSIG), so a rerun never races a pipeline nobody watches; elsewhere the
    child ends at its next event (`EventChannel.send`)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def watch(command: List[str], log_path: str, stream: TextIO = sys.stdout) -> int:
    """Runs `command` (the runner itself, in child mode) with its output in
    `log_path`, draws its events on `stream`; returns its exit status."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    read_fd, write_fd = os.pipe()
    view = PipelineView(stream, log_path)
    stream.write(f"log: {log_path}\n")
    stream.flush()
    with open(log_path, "a") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 pass_fds=(write_fd,), env={**os.environ, **EventChannel.runner_environment(write_fd)},
                                 preexec_fn=_die_with_parent)
    os.close(write_fd)  # the child holds the only writing end: EOF when it exits
    try:
        with os.fdopen(read_fd) as events:
            for line in events:
                try:
                    view.handle(json.loads(line))
                except ValueError:  # not an event: never stops the run
                    continue
        returncode = child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait()
        stream.write("\ninterrupted\n")
        return 130
    if returncode:
        view.fail(returncode)
        return 128 - returncode if returncode < 0 else returncode  # a signal: the shell's convention
    if view.summary:
        stream.write(view.summary + "\n")
    return 0
