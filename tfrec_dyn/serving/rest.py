"""A server that speaks TF Serving's REST API for SavedModels pushed by the pipeline.

The TF Serving binary cannot be installed everywhere (it is not on PyPI and
needs Docker or a Debian package); `tfrec-dyn serve` answers the same REST
requests the same way, so clients written against it work unchanged against
`tensorflow/serving`.  Built on aiohttp; TensorFlow work runs in a bounded
thread pool, never on the event loop.  Versions are found, loaded in the
background and swapped by `versions.VersionManager` (see there: a version
that fails to load never fails a request).

Endpoints (https://www.tensorflow.org/tfx/serving/api_rest):

* `GET  /v1/models/{name}[/versions/{v}]` -> `model_version_status` (every
  version known, with TF Serving's state, `error_code` and `error_message`)
* `GET  /v1/models/{name}[/versions/{v}]/metadata` -> signature defs
* `POST /v1/models/{name}[/versions/{v}]:predict` with `{"instances": [...]}`
  (row format -> `{"predictions": [...]}`) or `{"inputs": ...}` (columnar ->
  `{"outputs": ...}`), optional `"signature_name"`.

Every error answers `{"error": "..."}` with TF Serving's status code: 400 for
an invalid argument (bad JSON, nesting too deep, missing or wrong-typed
inputs), 404 for an unknown model, version, signature or URL, 405 for a wrong
method, 413 for a body over `max_request_bytes`, 503 when the pool and its
queue are full (with `Retry-After`; rather than queueing without bound), 504
past `timeout_ms`, and 500 (logged) for a fault of the server's own.  Signature
inputs that have a default value (`SignatureDef.defaults`) may be left out, as
in TF Serving.  SIGTERM stops accepting connections, lets in-flight requests
finish (up to `ServerOptions.drain_seconds`) and exits 0.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from tfrec_dyn.serving.versions import OP_ERRORS, LoadedVersion, ServedModel, VersionManager, parse_version

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """Limits of one server; the CLI flags of `tfrec-dyn serve` (TF Serving's names where it has one).

    `max_request_bytes`: TF Serving documents no REST body limit (its gRPC
    limit is 2 GiB); 64 MiB here is a choice: a predict request of 10,000
    histories of 200 ids is about 20 MiB.  `max_queued_requests`: predict
    requests that may wait for a thread before new ones get 503."""

    num_threads: int = max(4, 2 * (os.cpu_count() or 1))  # --rest_api_num_threads
    timeout_ms: int = 30_000  # --rest_api_timeout_in_ms
    poll_seconds: float = 1.0  # --file_system_poll_wait_seconds
    max_request_bytes: int = 64 * 1024 * 1024
    max_queued_requests: int = 64
    drain_seconds: float = 30.0

    def __post_init__(self):
        for name in ("num_threads", "timeout_ms", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_queued_requests < 0 or self.poll_seconds <= 0 or self.drain_seconds < 0:
            raise ValueError("max_queued_requests and drain_seconds must be >= 0 and poll_seconds > 0")


class ServingError(Exception):
    """An error answered to the client: HTTP status and message."""

    def __init__(self, status: int, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


def invalid(message: str) -> ServingError:
    return ServingError(400, message)


def not_found(message: str) -> ServingError:
    return ServingError(404, message)


def served_version(model: ServedModel, version: Optional[str]) -> LoadedVersion:
    current = model.current
    if version is None and current is not None:
        return current
    if current is None or parse_version(version) != current.version:
        spec = "Latest" if version is None else "Specific"
        detail = model.name if version is None else f"{model.name}, {version}"
        raise not_found(f"Servable not found for request: {spec}({detail})")
    return current


# ------------------------------------------------------------ JSON <-> tensors
def _decode_value(value):
    """TF Serving's JSON encoding of binary strings: {"b64": "..."}."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        if not isinstance(value["b64"], str):
            raise ValueError("a \"b64\" value must be a base64 string")
        return base64.b64decode(value["b64"], validate=True)
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def _to_tensor(name: str, value, spec: tf.TensorSpec) -> tf.Tensor:
    try:
        value = _decode_value(value)
        if spec.dtype == tf.string:
            array = np.array(value, dtype=object)
            if array.size and not all(isinstance(v, (str, bytes)) for v in array.ravel()):
                raise ValueError("expected strings")
        else:
            array = np.array(value)
            if array.dtype == object or array.dtype.kind in "US" or (array.dtype == bool) != (spec.dtype == tf.bool):
                raise ValueError("expected booleans" if spec.dtype == tf.bool else "expected numbers")
            if spec.dtype.is_integer:
                if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
                    raise ValueError("expected integers")
                info = np.iinfo(spec.dtype.as_numpy_dtype)
                if array.size and (array.min() < info.min or array.max() > info.max):
                    raise ValueError(f"out of range for {spec.dtype.name}")
            array = array.astype(spec.dtype.as_numpy_dtype)
        tensor = tf.constant(array, dtype=spec.dtype)
    except (ValueError, TypeError, binascii.Error) as error:
        raise invalid(f"Input '{name}' could not be converted to a {spec.dtype.name} tensor: {error}") from None
    if not spec.shape.is_compatible_with(tensor.shape):
        raise invalid(f"Input '{name}' has shape {tensor.shape.as_list()} but the signature expects "
                      f"{spec.shape.as_list()} (None = any size)")
    return tensor


def _to_json(tensor: tf.Tensor):
    """Nested lists; strings decoded as UTF-8.  Non-finite floats are written as
    the bare literals `NaN` / `Infinity` / `-Infinity`, as TF Serving does."""
    def convert(value):
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

    return convert(tensor.numpy().tolist())


def _signature(version: LoadedVersion, name):
    name = "serving_default" if name is None else name
    if not isinstance(name, str):
        raise invalid("'signature_name' must be a string")
    if name not in version.signature_defs:
        raise not_found(f"Serving signature name: \"{name}\" not found in signature def")
    return name, version.loaded.signatures[name], version.signature_defs[name]


def _request_tensors(version: LoadedVersion, body) -> tuple:
    """(signature function, {input: tensor}, row format?) for a parsed request body."""
    if not isinstance(body, dict):
        raise invalid("JSON Value: request body must be a JSON object")
    if ("instances" in body) == ("inputs" in body):
        raise invalid("Missing 'instances' or 'inputs' key" if "instances" not in body
                      else "Not both 'instances' and 'inputs' can be specified")
    name, function, signature_def = _signature(version, body.get("signature_name"))
    specs = function.structured_input_signature[1]
    row_format = "instances" in body
    if row_format:
        named = _rows_to_columns(body["instances"], specs)
    else:
        inputs = body["inputs"]
        named = inputs if isinstance(inputs, dict) else {_single_input(specs): inputs}
    unknown = sorted(set(named) - set(specs))
    if unknown:
        raise invalid(f"input tensor alias not found in signature: {', '.join(unknown)}. "
                      f"Inputs expected to be in the set {{{','.join(sorted(specs))}}}.")
    missing = sorted(set(specs) - set(named) - set(signature_def.defaults))
    if missing:
        raise invalid(f"Missing but required input(s): {{{','.join(missing)}}}")
    given = {key: _to_tensor(key, value, specs[key]) for key, value in named.items()}
    return function, {**version.defaults(name), **given}, row_format


def predict(version: LoadedVersion, body) -> dict:
    """Runs one predict request (row or columnar format, already parsed) like TF Serving."""
    try:
        function, tensors, row_format = _request_tensors(version, body)
    except RecursionError:
        raise invalid("JSON Value: nested too deeply") from None
    try:
        outputs = function(**tensors)
    except tuple(OP_ERRORS) + (ValueError, TypeError) as error:
        raise ServingError(_op_error_status(error), _error_message(error)) from None
    if row_format:
        columns = {k: _to_json(v) for k, v in outputs.items()}
        rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
        if len(columns) == 1:
            rows = [next(iter(r.values())) for r in rows]
        return {"predictions": rows}
    if len(outputs) == 1:
        return {"outputs": _to_json(next(iter(outputs.values())))}
    return {"outputs": {k: _to_json(v) for k, v in outputs.items()}}


def _op_error_status(error: Exception) -> int:
    """A model call's error as HTTP: TF's code mapped as TF Serving does; a Python
    ValueError/TypeError from the function's input checks is an invalid argument."""
    return next((status for cls, (_, status) in OP_ERRORS.items() if isinstance(error, cls)), 400)


def _error_message(error: Exception) -> str:
    """The line of a TF error a client can act on: a failed check's message
    (a graph error's first line only says "Graph execution error:")."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for line in lines:
        if line.startswith("assertion failed:"):
            return line.replace("\\'", "'")
    if lines and lines[0] == "Graph execution error:":  # then "Detected at node", a stack, the message
        noise = ("Graph execution error", "Detected at node", "File ", "<stack traces", "[[")
        lines = [line for line in lines if not line.startswith(noise)][-1:] or lines
    return lines[0] if lines else type(error).__name__


def _single_input(specs) -> str:
    if len(specs) != 1:
        raise invalid("A bare (unnamed) input needs a signature with exactly one input; "
                      f"this one takes {{{','.join(sorted(specs))}}}")
    return next(iter(specs))


def _rows_to_columns(instances, specs) -> dict:
    if not isinstance(instances, list) or not instances:
        raise invalid("'instances' must be a non-empty JSON list")
    if all(isinstance(i, dict) and set(i) != {"b64"} for i in instances):
        keys = set(instances[0])
        for position, instance in enumerate(instances):
            if set(instance) != keys:
                raise invalid(f"Failed to process element: {position} of 'instances' list. "
                              "All instances must have the same named inputs")
        columns = {key: [instance[key] for instance in instances] for key in keys}
    else:
        columns = {_single_input(specs): instances}
    for key, values in columns.items():
        try:
            shapes = {np.shape(_decode_value(v)) for v in values}
        except (ValueError, TypeError, binascii.Error) as error:
            raise invalid(f"Failed to process element of 'instances' list, key: {key}: {error}") from None
        if len(shapes) > 1:
            raise invalid(f"Failed to process element of 'instances' list, key: {key}. Expecting tensors "
                          f"of the same shape in every instance, got {sorted(shapes)}")
    return columns


def parse_json(data: bytes):
    """A request body as JSON; anything unparseable (bad syntax, bad UTF-8, nesting
    deeper than Python's recursion limit) is the client's error."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise invalid(f"JSON Parse error: {error.msg} at offset {error.pos}") from None
    except RecursionError:
        raise invalid("JSON Parse error: nested too deeply") from None
    except ValueError as error:  # e.g. a body that is not UTF-8
        raise invalid(f"JSON Parse error: {error}") from None


def handle_predict(model: ServedModel, version: Optional[str], data: bytes) -> bytes:
    """Parse, predict and serialize: the whole of a predict request's CPU work, run in the pool."""
    result = predict(served_version(model, version), parse_json(data))
    return json.dumps(result).encode()


def version_status(model: ServedModel, version: Optional[str]) -> dict:
    if version is None:
        return {"model_version_status": model.statuses()}
    number = parse_version(version)
    entries = model.statuses(number) if number is not None else []
    if not entries:
        raise not_found(f"Servable not found for request: Specific({model.name}, {version})")
    return {"model_version_status": entries}


def metadata(model: ServedModel, version: Optional[str]) -> dict:
    loaded = served_version(model, version)
    return {"model_spec": {"name": model.name, "signature_name": "", "version": str(loaded.version)},
            "metadata": {"signature_def": {"signature_def": loaded.signature_json}}}


# --------------------------------------------------------------------- server
def _json_error(status: int, message: str, headers=None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request, handler):
    """Every error as TF Serving answers it: `{"error": ...}` with its status code,
    including aiohttp's own (unknown URL, wrong method, body too large)."""
    try:
        return await handler(request)
    except ServingError as error:
        return _json_error(error.status, str(error), error.headers)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        allow = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None  # 405 says what is
        return _json_error(error.status, f"{error.reason}: {request.method} {request.path}", allow)
    except HttpProcessingError as error:  # a body that is not what its headers say (bad chunks, bad gzip)
        return _json_error(400, f"Malformed request body: {error.message}")
    except asyncio.CancelledError:
        raise
    except Exception as error:  # a fault of ours: logged, still answered as JSON
        logger.exception("internal error answering %s %s", request.method, request.path)
        return _json_error(500, f"Internal error: {type(error).__name__}: {error}")


class RestServer:
    """The aiohttp application of one server, its version manager and thread pool."""

    def __init__(self, models: Dict[str, str], options: ServerOptions = ServerOptions(),
                 loader=LoadedVersion.load):
        self.options = options
        self.manager = VersionManager(models, options.poll_seconds, loader)
        self.manager.load_initial()
        self.pool = ThreadPoolExecutor(options.num_threads, thread_name_prefix="predict")
        self._pending = 0  # predict requests running or waiting in the pool
        self._pending_lock = threading.Lock()
        self._in_flight = 0  # requests whose handler runs (a body may still be arriving)
        self.app = web.Application(middlewares=[self._count_in_flight, json_errors],
                                   client_max_size=options.max_request_bytes)
        self.app.add_routes([
            web.get("/v1/models/{name}", self._status),
            web.get("/v1/models/{name}/versions/{version}", self._status),
            web.get("/v1/models/{name}/metadata", self._metadata),
            web.get("/v1/models/{name}/versions/{version}/metadata", self._metadata),
            web.post("/v1/models/{name}:predict", self._predict),
            web.post("/v1/models/{name}/versions/{version}:predict", self._predict),
        ])
        self.app.on_startup.append(lambda app: self._start())
        self.app.on_cleanup.append(lambda app: self._close())

    async def _start(self):
        self.manager.start()

    @web.middleware
    async def _count_in_flight(self, request, handler):
        self._in_flight += 1  # the event loop's thread only: no lock
        try:
            return await handler(request)
        finally:
            self._in_flight -= 1

    async def drain(self, seconds: float) -> bool:
        """Waits up to `seconds` for the requests in flight to be answered; whether they all were."""
        deadline = asyncio.get_running_loop().time() + seconds
        while self._in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return not self._in_flight

    async def _close(self):
        """After in-flight requests have drained: stop polling (a load under way is left to
        finish off the event loop) and drop work whose clients have already had their 504."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.manager.stop)
        await loop.run_in_executor(None, lambda: self.pool.shutdown(wait=True, cancel_futures=True))

    def _model(self, request) -> ServedModel:
        name = request.match_info["name"]
        if name not in self.manager.models:
            raise not_found(f"Servable not found for request: Latest({name})")
        return self.manager.models[name]

    async def _status(self, request):
        return web.json_response(version_status(self._model(request), request.match_info.get("version")))

    async def _metadata(self, request):
        return web.json_response(metadata(self._model(request), request.match_info.get("version")))

    async def _predict(self, request):
        model = self._model(request)
        if request.content_length is not None and request.content_length > self.options.max_request_bytes:
            raise ServingError(413, f"Request body of {request.content_length} bytes is over the limit of "
                                    f"{self.options.max_request_bytes} bytes")
        # A slot is taken before the body is read, so overload never buffers bodies without bound.
        with self._pending_lock:
            if self._pending >= self.options.num_threads + self.options.max_queued_requests:
                raise ServingError(503, f"Server overloaded: {self._pending} predict requests in progress; "
                                        "retry later", headers={"Retry-After": "1"})
            self._pending += 1
        try:
            data = await request.read()
            future = self.pool.submit(handle_predict, model, request.match_info.get("version"), data)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        try:
            body = await asyncio.wait_for(asyncio.wrap_future(future), self.options.timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise ServingError(504, f"Deadline exceeded: no answer within {self.options.timeout_ms} ms") from None
        return web.Response(body=body, content_type="application/json")

    def _done(self, future):
        with self._pending_lock:
            self._pending -= 1


def create_app(models: Dict[str, str], options: ServerOptions = ServerOptions()) -> web.Application:
    """An aiohttp application serving `{model_name: base_path}` (loads the initial versions first)."""
    return RestServer(models, options).app


def serve(models: Dict[str, str], host: str = "127.0.0.1", port: int = 8501,
          options: ServerOptions = ServerOptions()) -> None:
    """Blocks serving the REST API (TF Serving's default REST port is 8501) until
    SIGINT/SIGTERM, then stops listening, lets in-flight requests finish (those
    still sending their body included; up to `drain_seconds`) and returns."""
    server = RestServer(models, options)

    async def run():
        # Not `web.run_app`: aiohttp's own shutdown cancels a handler still reading its body.
        runner = web.AppRunner(server.app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
            await site.stop()  # no new connections; open ones go on
            if not await server.drain(options.drain_seconds):
                logger.warning("%d request(s) still in flight after %.0f s: closing", server._in_flight,
                               options.drain_seconds)
        finally:
            await runner.cleanup()

    asyncio.run(run())
