"""What a person sees on a terminal: one progress line; the frameworks' output in a log file.

    with quiet_output("runs/sasrec/logs/train.log") as terminal:
        bar = ProgressBar(terminal)
        ...  # train with `tfrec_dyn.training.progress.TrainingProgress(bar.update)`
        bar.close()

`ProgressBar` draws progress events (dicts, see `TrainingProgress`): in
place on a terminal, a line every `interval` seconds elsewhere (a CI log).
The events can cross a process boundary as JSON lines (`EventChannel`): the
TFX Trainer runs in the pipeline's process, whose output goes to its log, and
sends them to the runner that draws the pipeline's progress.

This module imports no TensorFlow: a command redirects TensorFlow's start-up
output before TensorFlow is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import warnings
from typing import Dict, Iterator, Optional, Sequence, TextIO

# The environment variable naming the runner ("<its pid>:<file descriptor>") that reads events.
EVENTS_FD = "TFREC_DYN_PROGRESS_FD"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_text(event: Dict, width: int = 20) -> str:
    """One line for a `TrainingProgress` event: bar over the maximum epochs,
    epoch, step, loss, validation figure with the best so far, time."""
    epochs = event.get("epochs") or 1
    done = (event.get("epoch", 0) - 1 + (event.get("step", 0) / event["steps"] if event.get("steps") else 1))
    filled = int(round(width * min(1.0, max(0.0, done / epochs))))
    parts = [f"[{'#' * filled}{'.' * (width - filled)}] epoch {event.get('epoch', 0)}/{epochs}"]
    if event.get("steps") and not event.get("done"):
        parts.append(f"step {event.get('step', 0)}/{event['steps']}")
    if "loss" in event:
        parts.append(f"loss {event['loss']:.4f}")
    if "val" in event:
        parts.append(f"val NDCG@10 {event['val']:.4f} @ {event['val_epoch']}"
                     + (f" (best {event['best']:.4f} @ {event['best_epoch']})" if event.get("best_epoch") else ""))
    if event.get("resumed_after"):
        parts.append(f"resumed after epoch {event['resumed_after']}")
    parts.append(_duration(event.get("seconds", 0)))
    return "  ".join(parts)


def redraw(stream: TextIO, line: str, final: bool = False) -> None:
    """Draws `line` over the terminal's current line; `final` ends it.  A line
    still to be drawn over is cut to the terminal's width (a wrapped one could not be)."""
    if not final:
        line = line[:max(20, shutil.get_terminal_size().columns - 1)]
    stream.write("\r\033[K" + line + ("\n" if final else ""))
    stream.flush()


class ProgressBar:
    """Draws progress events on `stream`: redrawn in place when it is a
    terminal, otherwise a line every `interval` seconds and the last one.

    `prefix` starts every line (e.g. the component's name)."""

    def __init__(self, stream: TextIO = sys.stdout, prefix: str = "", interval: float = 30.0,
                 tty: Optional[bool] = None):
        self.stream, self.prefix, self.interval = stream, prefix, interval
        self.tty = stream.isatty() if tty is None else tty
        self._last_time, self._drawn = -float("inf"), False

    def update(self, event: Dict) -> None:
        line = self.prefix + progress_text(event)
        if self.tty:
            redraw(self.stream, line)
            self._drawn = True
        elif event.get("done") or time.monotonic() - self._last_time >= self.interval:
            self.stream.write(line + "\n")
            self._last_time = time.monotonic()
        self.stream.flush()

    def close(self) -> None:
        """Ends the line (on a terminal)."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class EventChannel:
    """Progress events as JSON lines over a pipe, from the process that
    trains to the one that draws.  `EventChannel.from_environment()` is the
    sending end a runner opened for this process (None: nobody listens)."""

    def __init__(self, fd: int):
        self._file = os.fdopen(fd, "w", buffering=1, closefd=False)

    @classmethod
    def from_environment(cls) -> Optional["EventChannel"]:
        """The channel `runner_environment` opened for this process: only in
        the runner's own child (a grandchild inherits the variable, not the pipe)."""
        runner, _, fd = os.environ.get(EVENTS_FD, "").partition(":")
        if not (runner.isdigit() and fd.isdigit()) or int(runner) != os.getppid():
            return None
        os.set_inheritable(int(fd), False)  # the pipe is this process's: its children never hold it open
        return cls(int(fd))

    @staticmethod
    def runner_environment(fd: int) -> Dict[str, str]:
        """The environment variable that gives this process's child the writing end `fd`."""
        return {EVENTS_FD: f"{os.getpid()}:{fd}"}

    def send(self, event: Dict) -> None:
        """Sends `event`; if the runner is gone (the pipe is broken), this
        process ends too: nobody would see its result, and a rerun must not race it."""
        try:
            self._file.write(json.dumps(event, default=str) + "\n")
        except BrokenPipeError:
            os._exit(1)


def _show_warning_from(terminal: TextIO, log: TextIO):
    """`warnings.showwarning`: the library's own warnings reach the person, the frameworks' go to the log."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        ours = os.path.abspath(filename).startswith(PACKAGE_DIR + os.sep)
        original(message, category, filename, lineno, file=terminal if ours else log, line=line)
    return show


@contextlib.contextmanager
def redirected(file: TextIO, fds: Sequence[int] = (2,)) -> Iterator[None]:
    """Points the file descriptors `fds` (2: stderr, 1: stdout) at `file`
    while inside: TensorFlow's C++ log, absl, Python warnings and child
    processes' output included."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    for fd in fds:
        os.dup2(file.fileno(), fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


@contextlib.contextmanager
def quiet_output(log_path: str, preamble: str = "", stdout: bool = False) -> Iterator[TextIO]:
    """Sends this process's stderr (and with `stdout` its stdout) to
    `log_path` (appended, after `preamble`), and yields a text stream on the
    real terminal (the real stderr, or stdout with `stdout`); the library's
    own warnings go there too."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    fds = (1, 2) if stdout else (2,)
    with open(log_path, "a", buffering=1) as log, os.fdopen(os.dup(fds[0]), "w", buffering=1) as terminal:
        log.write(preamble)
        with redirected(log, fds), warnings.catch_warnings():
            warnings.showwarning = _show_warning_from(terminal, log)
            yield terminal
