"""A server that speaks TF Serving's REST API for SavedModels pushed by the pipeline.

The TF Serving binary cannot be installed everywhere (it is not on PyPI and
needs Docker or a Debian package); `tfrec-dyn serve` answers the same REST
requests the same way, so clients written against it work unchanged against
`tensorflow/serving`.  Built on aiohttp; models run in a thread pool.

Layout and versions, as TF Serving: `BASE/<model_name>/<version>/saved_model.pb`.
The newest numeric version is served, and the base folder is re-scanned (at
most once a second) so a newly pushed version is picked up without a restart;
the previous version keeps serving until the new one has loaded.

Endpoints (https://www.tensorflow.org/tfx/serving/api_rest):

* `GET  /v1/models/{name}[/versions/{v}]` -> `model_version_status`
* `GET  /v1/models/{name}[/versions/{v}]/metadata` -> signature defs
* `POST /v1/models/{name}[/versions/{v}]:predict` with `{"instances": [...]}`
  (row format -> `{"predictions": [...]}`) or `{"inputs": ...}` (columnar ->
  `{"outputs": ...}`), optional `"signature_name"`.

Errors answer `{"error": "..."}` with TF Serving's status codes: 400 for an
invalid argument (bad JSON, missing or wrong-typed inputs), 404 for an unknown
model, version or signature; the server stays up.  Signature inputs that have
a default value (`SignatureDef.defaults`) may be left out, as in TF Serving.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import threading
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from aiohttp import web
from google.protobuf import json_format
from tensorflow.python.tools import saved_model_utils

RESCAN_SECONDS = 1.0


class ServingError(Exception):
    """An error answered to the client: HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def invalid(message: str) -> ServingError:
    return ServingError(400, message)


def not_found(message: str) -> ServingError:
    return ServingError(404, message)


@dataclasses.dataclass
class LoadedVersion:
    version: int
    path: str
    loaded: object  # what tf.saved_model.load returned (kept alive for its functions)
    signature_defs: Dict[str, object]  # name -> SignatureDef proto

    @classmethod
    def load(cls, path: str, version: int) -> "LoadedVersion":
        meta_graph = saved_model_utils.get_meta_graph_def(path, "serve")
        signature_defs = {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
        return cls(version, path, tf.saved_model.load(path), signature_defs)


class ServedModel:
    """All versions of one model under its base path; serves the newest."""

    def __init__(self, name: str, base_path: str):
        self.name = name
        self.base_path = base_path
        self.versions: Dict[int, LoadedVersion] = {}
        self._lock = threading.Lock()
        self._last_scan = 0.0
        self.refresh(force=True)
        if not self.versions:
            raise FileNotFoundError(f"{base_path}: no version folder with a saved_model.pb for model {name!r}")

    def available_versions(self):
        if not os.path.isdir(self.base_path):
            return []
        return sorted(int(entry) for entry in os.listdir(self.base_path)
                      if entry.isdigit() and os.path.exists(os.path.join(self.base_path, entry, "saved_model.pb")))

    def refresh(self, force: bool = False) -> None:
        """Loads a newly pushed newest version; keeps the old one serving meanwhile."""
        if not force and time.monotonic() - self._last_scan < RESCAN_SECONDS:
            return
        with self._lock:
            self._last_scan = time.monotonic()
            available = self.available_versions()
            if available and available[-1] not in self.versions:
                newest = available[-1]
                self.versions = {newest: LoadedVersion.load(os.path.join(self.base_path, str(newest)), newest)}

    def get(self, version: Optional[str]) -> LoadedVersion:
        self.refresh()
        if version is None:
            return self.versions[max(self.versions)]
        if not version.isdigit() or int(version) not in self.versions:
            raise not_found(f"Servable not found for request: Specific({self.name}, {version})")
        return self.versions[int(version)]


# ------------------------------------------------------------ JSON <-> tensors
def _decode_value(value):
    """TF Serving's JSON encoding of binary strings: {"b64": "..."}."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def _to_tensor(name: str, value, spec: tf.TensorSpec) -> tf.Tensor:
    value = _decode_value(value)
    try:
        if spec.dtype == tf.string:
            array = np.array(value, dtype=object)
            if array.size and not all(isinstance(v, (str, bytes)) for v in array.ravel()):
                raise ValueError("expected strings")
        else:
            array = np.array(value)
            if array.dtype == object or array.dtype.kind in "US":
                raise ValueError("expected numbers")
            if spec.dtype == tf.bool and array.dtype != bool:
                raise ValueError("expected booleans")
            array = array.astype(spec.dtype.as_numpy_dtype)
        tensor = tf.constant(array, dtype=spec.dtype)
    except (ValueError, TypeError) as error:
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


def _signature(version: LoadedVersion, name: Optional[str]):
    name = name or "serving_default"
    if name not in version.signature_defs:
        raise not_found(f"Serving signature name: \"{name}\" not found in signature def")
    return name, version.loaded.signatures[name], version.signature_defs[name]


def predict(version: LoadedVersion, body: dict) -> dict:
    """Runs one predict request (row or columnar format) like TF Serving."""
    if not isinstance(body, dict):
        raise invalid("JSON Value: request body must be a JSON object")
    if ("instances" in body) == ("inputs" in body):
        raise invalid("Missing 'instances' or 'inputs' key" if "instances" not in body
                      else "Not both 'instances' and 'inputs' can be specified")
    _, function, signature_def = _signature(version, body.get("signature_name"))
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
    tensors = {name: _to_tensor(name, value, specs[name]) for name, value in named.items()}
    for name in set(specs) - set(named):  # inputs with defaults
        tensors[name] = tf.constant(tf.make_ndarray(signature_def.defaults[name]), dtype=specs[name].dtype)
    try:
        outputs = function(**tensors)
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
        raise invalid(_error_message(error)) from None
    if row_format:
        columns = {k: _to_json(v) for k, v in outputs.items()}
        rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
        if len(columns) == 1:
            rows = [next(iter(r.values())) for r in rows]
        return {"predictions": rows}
    if len(outputs) == 1:
        return {"outputs": _to_json(next(iter(outputs.values())))}
    return {"outputs": {k: _to_json(v) for k, v in outputs.items()}}


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
    required = list(specs)
    if len(required) != 1:
        raise invalid("A bare (unnamed) input needs a signature with exactly one input; "
                      f"this one takes {{{','.join(sorted(specs))}}}")
    return required[0]


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
        shapes = {np.shape(_decode_value(v)) for v in values}
        if len(shapes) > 1:
            raise invalid(f"Failed to process element of 'instances' list, key: {key}. Expecting tensors "
                          f"of the same shape in every instance, got {sorted(shapes)}")
    return columns


def version_status(model: ServedModel, version: Optional[str]) -> dict:
    versions = [model.get(version)] if version else [model.get(None)]
    return {"model_version_status": [
        {"version": str(v.version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        for v in versions]}


def metadata(model: ServedModel, version: Optional[str]) -> dict:
    loaded = model.get(version)
    signature_defs = {name: json.loads(json_format.MessageToJson(sig, preserving_proto_field_name=True))
                      for name, sig in loaded.signature_defs.items()}
    return {"model_spec": {"name": model.name, "signature_name": "", "version": str(loaded.version)},
            "metadata": {"signature_def": {"signature_def": signature_defs}}}


# --------------------------------------------------------------------- server
def create_app(models: Dict[str, str]) -> web.Application:
    """An aiohttp application serving `{model_name: base_path}`."""
    served = {name: ServedModel(name, path) for name, path in models.items()}

    def endpoint(work, with_body=False):
        """Wraps `work(model, version[, body])`; TF work runs off the event loop."""
        async def handle(request):
            try:
                name = request.match_info["name"]
                if name not in served:
                    raise not_found(f"Servable not found for request: Latest({name})")
                args = [served[name], request.match_info.get("version")]
                if with_body:
                    text = await request.text()
                    try:
                        args.append(json.loads(text))
                    except json.JSONDecodeError as error:
                        raise invalid(f"JSON Parse error: {error.msg} at offset {error.pos}") from None
                result = await asyncio.get_running_loop().run_in_executor(None, work, *args)
                return web.json_response(result)
            except ServingError as error:
                return web.json_response({"error": str(error)}, status=error.status)
        return handle

    status, meta = endpoint(version_status), endpoint(metadata)
    run_predict = endpoint(lambda model, version, body: predict(model.get(version), body), with_body=True)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes([
        web.get("/v1/models/{name}", status),
        web.get("/v1/models/{name}/versions/{version}", status),
        web.get("/v1/models/{name}/metadata", meta),
        web.get("/v1/models/{name}/versions/{version}/metadata", meta),
        web.post("/v1/models/{name}:predict", run_predict),
        web.post("/v1/models/{name}/versions/{version}:predict", run_predict),
    ])
    return app


def serve(models: Dict[str, str], host: str = "127.0.0.1", port: int = 8501) -> None:
    """Blocks serving the REST API (TF Serving's default REST port is 8501)."""
    web.run_app(create_app(models), host=host, port=port, print=None)
