"""Model versions on disk, loaded in the background: TF Serving's model manager for one process.

Layout, as TF Serving: `BASE/<model_name>/<version>/saved_model.pb`, versions
compared as numbers (10 is newer than 9).  The policy is TF Serving's default
("latest"): the newest version is served.  What TF Serving leaves to retries,
this manager makes explicit, so that no fault on disk ever fails a request:

* a new version is loaded (and warmed up with its
  `assets.extra/tf_serving_warmup_requests`, as TF Serving does) by a
  background thread; the current version keeps answering until the new one is
  ready, and is then swapped out in one reference assignment;
* a version that fails to load (garbage `saved_model.pb`, a half-written
  folder, missing variables, a failing warm-up) stays in the status list in
  state `END` with TF Serving's `error_code` / `error_message`, the version
  before it keeps serving, and it is tried again only when its files change
  (a copy that was still being written finishes), so a broken folder is not
  reloaded every poll;
* the newest version that loads is served: at start-up a broken newest
  version falls back to the one before it, and if the served version's folder
  is deleted the newest remaining one takes over.

    manager = VersionManager({"rec": "saved_models/rec"}, poll_seconds=1.0)
    manager.load_initial()          # raises if no version of a model loads
    manager.start()                 # background polling
    manager.models["rec"].current   # the LoadedVersion answering requests
    manager.stop()
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import threading
import time
from typing import Dict, List, Optional

import tensorflow as tf
from google.protobuf import json_format
from tensorflow.python.tools import saved_model_utils

logger = logging.getLogger(__name__)

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")

# TF's error classes -> (canonical code name, HTTP status), the mapping TF Serving's REST
# layer uses (google.rpc codes to HTTP).  Anything else is UNKNOWN / 500.
OP_ERRORS = {
    tf.errors.CancelledError: ("CANCELLED", 499),
    tf.errors.InvalidArgumentError: ("INVALID_ARGUMENT", 400),
    tf.errors.DeadlineExceededError: ("DEADLINE_EXCEEDED", 504),
    tf.errors.NotFoundError: ("NOT_FOUND", 404),
    tf.errors.AlreadyExistsError: ("ALREADY_EXISTS", 409),
    tf.errors.PermissionDeniedError: ("PERMISSION_DENIED", 403),
    tf.errors.ResourceExhaustedError: ("RESOURCE_EXHAUSTED", 429),
    tf.errors.FailedPreconditionError: ("FAILED_PRECONDITION", 400),
    tf.errors.AbortedError: ("ABORTED", 409),
    tf.errors.OutOfRangeError: ("OUT_OF_RANGE", 400),
    tf.errors.UnimplementedError: ("UNIMPLEMENTED", 501),
    tf.errors.InternalError: ("INTERNAL", 500),
    tf.errors.UnavailableError: ("UNAVAILABLE", 503),
    tf.errors.DataLossError: ("DATA_LOSS", 500),
    tf.errors.UnauthenticatedError: ("UNAUTHENTICATED", 401),
}


# Transient load failures are retried (with backoff, at most `MAX_LOAD_RETRIES` times, as TF
# Serving's --max_num_load_retries); any other failure waits for the version's files to change.
TRANSIENT_CODES = ("RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED")
MAX_LOAD_RETRIES = 5
RETRY_SECONDS = 5.0


def parse_version(text: str) -> Optional[int]:
    """A version folder or URL segment as a number; None unless it is 1 to 18 ASCII digits
    (`str.isdigit` also accepts "²" and other digits `int` refuses or reads as another number)."""
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None


def error_code(error: BaseException) -> str:
    """The canonical error code name TF Serving reports for `error`."""
    for cls, (code, _) in OP_ERRORS.items():
        if isinstance(error, cls):
            return code
    # TF's Python SavedModel reader raises OSError for both a missing and an unparseable graph.
    if isinstance(error, OSError) and "Cannot parse" in str(error):
        return "DATA_LOSS"
    if isinstance(error, FileNotFoundError) or (isinstance(error, OSError) and "does not exist" in str(error)):
        return "NOT_FOUND"
    return "UNKNOWN"


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


@dataclasses.dataclass
class VersionStatus:
    """One entry of `GET /v1/models/NAME`: state START, LOADING, AVAILABLE or END."""

    version: int
    state: str = "START"
    error_code: str = "OK"
    error_message: str = ""
    fingerprint: tuple = ()  # the files as they were when a load failed (retried when they change)
    retries: int = 0  # transient failures so far
    retry_at: float = 0.0  # time.monotonic() after which a transient failure is retried

    def as_json(self) -> dict:
        return {"version": str(self.version), "state": self.state,
                "status": {"error_code": self.error_code, "error_message": self.error_message}}


@dataclasses.dataclass
class LoadedVersion:
    """A loaded SavedModel: its functions, SignatureDefs and their JSON metadata."""

    version: int
    path: str
    loaded: object  # what tf.saved_model.load returned (kept alive for its functions)
    signature_defs: Dict[str, object]  # name -> SignatureDef proto
    signature_json: Dict[str, dict]  # name -> SignatureDef as TF Serving's metadata JSON

    @classmethod
    def load(cls, path: str, version: int) -> "LoadedVersion":
        meta_graph = saved_model_utils.get_meta_graph_def(path, "serve")
        signature_defs = {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
        signature_json = {name: json.loads(json_format.MessageToJson(sig, preserving_proto_field_name=True))
                          for name, sig in signature_defs.items()}
        loaded = cls(version, path, tf.saved_model.load(path), signature_defs, signature_json)
        loaded.warm_up()
        return loaded

    def defaults(self, signature_name: str) -> Dict[str, tf.Tensor]:
        """The inputs of a signature that have a default (`SignatureDef.defaults`), as tensors."""
        function = self.loaded.signatures[signature_name]
        specs = function.structured_input_signature[1]
        return {name: tf.constant(tf.make_ndarray(proto), dtype=specs[name].dtype)
                for name, proto in self.signature_defs[signature_name].defaults.items()}

    def warm_up(self) -> None:
        """Replays the SavedModel's warm-up PredictRequests, as TF Serving does before
        a version takes traffic: the first real request then pays no first-call cost,
        and a model whose functions fail never becomes AVAILABLE."""
        path = os.path.join(self.path, WARMUP_FILE)
        if not tf.io.gfile.exists(path):
            return
        from tensorflow_serving.apis import prediction_log_pb2

        for record in tf.data.TFRecordDataset(path):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            request = log.predict_log.request
            name = request.model_spec.signature_name or "serving_default"
            given = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()}
            self.loaded.signatures[name](**{**self.defaults(name), **given})


def _fingerprint(path: str) -> tuple:
    """Names, sizes and modification times of every file under `path`."""
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:  # removed while walking
                continue
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns, stat.st_ino,
                            stat.st_ctime_ns))
    return tuple(sorted(entries))


class ServedModel:
    """All versions of one model under its base path; `current` answers requests."""

    def __init__(self, name: str, base_path: str, loader=LoadedVersion.load):
        self.name = name
        self.base_path = base_path
        self.current: Optional[LoadedVersion] = None
        self._loader = loader
        self._statuses: Dict[int, VersionStatus] = {}
        self._last_seen: Dict[int, tuple] = {}  # each version's files at the previous poll
        self._lock = threading.Lock()  # guards _statuses and the swap of `current` (read by request threads)

    def version_dirs(self) -> Dict[int, str]:
        if not os.path.isdir(self.base_path):
            return {}
        versions = {parse_version(entry): entry for entry in os.listdir(self.base_path)}
        return {version: os.path.join(self.base_path, entry) for version, entry in versions.items()
                if version is not None and os.path.isdir(os.path.join(self.base_path, entry))}

    def statuses(self, version: Optional[int] = None) -> List[dict]:
        """TF Serving's `model_version_status` entries, newest first."""
        with self._lock:
            entries = [s.as_json() for v, s in sorted(self._statuses.items(), reverse=True)
                       if version is None or v == version]
        return entries

    def _set(self, version: int, **fields) -> None:
        with self._lock:
            status = self._statuses.setdefault(version, VersionStatus(version))
            for key, value in fields.items():
                setattr(status, key, value)

    def poll(self, settle: bool = True) -> None:
        """Serves the newest version that loads; called by one thread at a time.

        Versions are tried newest first.  One that failed is skipped while its
        files are unchanged (a transient failure is retried after a backoff);
        with `settle`, a version is loaded only once its files are the same as
        at the previous poll, so a folder still being copied into place is not
        loaded half-written.  Loading happens here, while `current` goes on
        answering requests."""
        dirs = self.version_dirs()
        seen, self._last_seen = self._last_seen, {}
        for version in sorted(dirs, reverse=True):
            if self.current is not None and self.current.version == version:
                return
            with self._lock:
                status = self._statuses.get(version)
            fingerprint = self._last_seen[version] = _fingerprint(dirs[version])
            if status is not None and status.error_code != "OK" and status.fingerprint == fingerprint and not (
                    status.error_code in TRANSIENT_CODES and status.retries < MAX_LOAD_RETRIES
                    and time.monotonic() >= status.retry_at):
                continue  # failed as it is now: wait for its files to change (or the retry time)
            if settle and seen.get(version) != fingerprint:
                return  # new or still changing: look again at the next poll
            retries = status.retries if status is not None and status.fingerprint == fingerprint else 0
            self._set(version, state="LOADING", error_code="OK", error_message="", fingerprint=())
            try:
                loaded = self._loader(dirs[version], version)
            except Exception as error:  # any fault of the files: reported in the status, never raised
                message = f"Failed to load version {version} of {self.name} from {dirs[version]}: {one_line(error)}"
                logger.warning(message)
                self._set(version, state="END", error_code=error_code(error), error_message=message,
                          fingerprint=fingerprint, retries=retries + 1,
                          retry_at=time.monotonic() + RETRY_SECONDS * 2 ** retries)
                continue
            with self._lock:  # the swap and both states change together, as requests see them
                previous, self.current = self.current, loaded
                self._statuses[version].state = "AVAILABLE"
                if previous is not None:
                    self._statuses[previous.version].state = "END"
            logger.info("%s: serving version %d", self.name, version)
            return


class VersionManager:
    """The `ServedModel`s of one server and the thread that polls their folders."""

    def __init__(self, models: Dict[str, str], poll_seconds: float = 1.0, loader=LoadedVersion.load):
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, got {poll_seconds}")
        self.models = {name: ServedModel(name, path, loader) for name, path in models.items()}
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def load_initial(self) -> None:
        """Loads each model's newest loadable version before the server takes traffic
        (TF Serving also waits for its initial versions); raises when one has none."""
        for model in self.models.values():
            model.poll(settle=False)  # what is there at start-up is taken as written
            if model.current is None:
                failures = "; ".join(s["status"]["error_message"] for s in model.statuses()) or \
                    "no numeric version folder"
                raise FileNotFoundError(f"{model.base_path}: no version of model {model.name!r} "
                                        f"could be loaded ({failures})")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="version-manager", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            for model in self.models.values():
                if self._stop.is_set():
                    return
                try:
                    model.poll()
                except Exception:  # e.g. the base folder vanished mid-scan: keep serving, poll again
                    logger.exception("%s: polling %s failed", model.name, model.base_path)

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
