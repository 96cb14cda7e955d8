"""The TF-Serving-compatible REST server: every endpoint, both formats, errors, hot-swap."""

import asyncio
import json
import shutil
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from aiohttp import web

from tfrec_dyn.data import Vocabulary
from tfrec_dyn.models import PopRec, SASRec
from tfrec_dyn.serving import rest
from tfrec_dyn.serving.export import export_saved_model

MAX_LEN = 5


def _export(path, model_cls, counts_seed):
    vocab = Vocabulary([f"i{n}" for n in range(12)])
    counts = np.random.default_rng(counts_seed).integers(1, 100, vocab.size)
    model = model_cls(vocab.size, MAX_LEN)
    if isinstance(model, PopRec):
        model.counts.assign(counts.astype(np.float32))
    export_saved_model(model, vocab, counts, MAX_LEN, str(path))
    return model, vocab, counts


class _Server:
    """The real app on a free 127.0.0.1 port, in a thread with its own event loop."""

    def __init__(self, models):
        self.app = rest.create_app(models)
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def request(self, path, body=None, raw=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / "rec"
    _export(base / "1", SASRec, 0)
    srv = _Server({"rec": str(base)})
    srv.base = base
    yield srv
    srv.close()


def test_status_and_metadata(server):
    assert server.request("/v1/models/rec") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    assert server.request("/v1/models/rec/versions/1")[0] == 200
    status, meta = server.request("/v1/models/rec/metadata")
    assert status == 200 and meta["model_spec"] == {"name": "rec", "signature_name": "", "version": "1"}
    signatures = meta["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_tf_example"} <= set(signatures)
    assert set(signatures["serving_default"]["inputs"]) == {"item_ids", "k", "exclude_seen"}
    assert server.request("/v1/models/rec/versions/1/metadata")[0] == 200


def test_row_and_columnar_formats_agree(server):
    status, rows = server.request("/v1/models/rec:predict",
                                  {"instances": [{"item_ids": ["i1", "i2"]}, {"item_ids": ["i3", ""]}]})
    assert status == 200 and len(rows["predictions"]) == 2
    assert len(rows["predictions"][0]["item_ids"]) == 10  # default k
    status, columns = server.request("/v1/models/rec/versions/1:predict",
                                     {"inputs": {"item_ids": [["i1", "i2"], ["i3", ""]], "k": 10}})
    assert status == 200
    assert columns["outputs"]["item_ids"] == [p["item_ids"] for p in rows["predictions"]]
    np.testing.assert_allclose(columns["outputs"]["scores"], [p["scores"] for p in rows["predictions"]], rtol=1e-6)
    status, small = server.request("/v1/models/rec:predict", {"inputs": {"item_ids": [["i1"]], "k": 3,
                                                                        "exclude_seen": False}})
    assert status == 200 and len(small["outputs"]["item_ids"][0]) == 3


def test_signature_name_selects_the_tf_example_signature(server):
    import base64

    import tensorflow as tf

    example = tf.train.Example(features=tf.train.Features(feature={
        "item_ids": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"i1", b"i2"]))}))
    encoded = {"b64": base64.b64encode(example.SerializeToString()).decode()}
    status, out = server.request("/v1/models/rec:predict", {"signature_name": "serving_tf_example",
                                                           "instances": [{"examples": encoded}]})
    assert status == 200, out
    _, direct = server.request("/v1/models/rec:predict", {"instances": [{"item_ids": ["i1", "i2"]}]})
    assert out["predictions"][0]["item_ids"][:10] == direct["predictions"][0]["item_ids"]


@pytest.mark.parametrize("path, body, raw, status, message", [
    ("/v1/models/rec:predict", None, b"{not json", 400, "JSON Parse error"),
    ("/v1/models/rec:predict", {"foo": 1}, None, 400, "Missing 'instances' or 'inputs'"),
    ("/v1/models/rec:predict", {"instances": [1], "inputs": {}}, None, 400, "Not both"),
    ("/v1/models/rec:predict", {"inputs": {"k": 3}}, None, 400, "Missing but required input(s): {item_ids}"),
    ("/v1/models/rec:predict", {"inputs": {"item_ids": [[1, 2]]}}, None, 400, "could not be converted"),
    ("/v1/models/rec:predict", {"inputs": {"item_ids": [["a"]], "k": "ten"}}, None, 400, "'k'"),
    ("/v1/models/rec:predict", {"inputs": {"item_ids": ["a", "b"]}}, None, 400, "shape"),
    ("/v1/models/rec:predict", {"inputs": {"item_ids": [["a"]], "extra": 1}}, None, 400, "alias not found"),
    ("/v1/models/rec:predict", {"instances": [{"item_ids": ["a"]}, {"item_ids": ["a", "b"]}]}, None, 400,
     "same shape"),
    ("/v1/models/rec:predict", {"signature_name": "nope", "instances": [{"item_ids": ["a"]}]}, None, 404,
     "\"nope\" not found"),
    ("/v1/models/other:predict", {"instances": [{"item_ids": ["a"]}]}, None, 404, "Servable not found"),
    ("/v1/models/rec/versions/7:predict", {"instances": [{"item_ids": ["a"]}]}, None, 404, "Specific(rec, 7)"),
    ("/v1/models/rec/versions/7", None, None, 404, "Specific(rec, 7)"),
])
def test_bad_requests_get_tf_serving_errors_and_the_server_stays_up(server, path, body, raw, status, message):
    code, answer = server.request(path, body, raw)
    assert code == status and message in answer["error"]
    assert server.request("/v1/models/rec")[0] == 200


def test_new_version_is_picked_up_without_restart(tmp_path):
    base = tmp_path / "pop"
    _, vocab, counts_v1 = _export(base / "1", PopRec, 1)
    srv = _Server({"pop": str(base)})
    try:
        _, first = srv.request("/v1/models/pop:predict", {"instances": [{"item_ids": [""]}], })
        assert first["predictions"][0]["item_ids"][0] == vocab.decode([int(np.argmax(counts_v1[2:])) + 2])[0]
        _, vocab, counts_v2 = _export(tmp_path / "staging", PopRec, 2)
        shutil.move(str(tmp_path / "staging"), str(base / "2"))  # an atomic push, as the Pusher does
        deadline = time.time() + 30
        while time.time() < deadline:
            if srv.request("/v1/models/pop")[1]["model_version_status"][0]["version"] == "2":
                break
            time.sleep(0.3)
        _, second = srv.request("/v1/models/pop:predict", {"instances": [{"item_ids": [""]}]})
        assert second["predictions"][0]["item_ids"][0] == vocab.decode([int(np.argmax(counts_v2[2:])) + 2])[0]
        assert srv.request("/v1/models/pop/versions/2")[0] == 200
    finally:
        srv.close()
