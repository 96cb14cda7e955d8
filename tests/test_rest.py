"""The TF-Serving-compatible REST server: every endpoint, both formats, errors as JSON,
background version loading that never fails a request, limits, overload, SIGTERM drain, fuzzing."""

import asyncio
import json
import shutil
import threading
import time
import urllib.error
import urllib.parse
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

    def __init__(self, models, loader=None, **options):
        options = rest.ServerOptions(**{"poll_seconds": 0.2, **options})
        self.rest = rest.RestServer(models, options, **({"loader": loader} if loader else {}))
        self.app = self.rest.app
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

    def status(self, name):
        return {entry["version"]: entry for entry in self.request(f"/v1/models/{name}")[1]["model_version_status"]}

    def wait_for(self, name, version, state, seconds=60):
        deadline = time.time() + seconds
        while time.time() < deadline:
            entry = self.status(name).get(str(version))
            if entry and entry["state"] == state:
                return entry
            time.sleep(0.1)
        raise AssertionError(f"version {version} of {name} did not reach {state}: {self.status(name)}")

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(60)
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
    ("/v1/models/rec/versions/%C2%B2", None, None, 404, "Specific(rec, \u00b2)"),  # "²".isdigit() is True
    ("/v1/models/rec/versions/" + "9" * 5000 + ":predict", {"instances": [{"item_ids": ["a"]}]}, None, 404,
     "Servable not found"),
])
def test_bad_requests_get_tf_serving_errors_and_the_server_stays_up(server, path, body, raw, status, message):
    code, answer = server.request(path, body, raw)
    assert code == status and message in answer["error"]
    assert server.request("/v1/models/rec")[0] == 200


def _push(base, version, writer):
    """Writes a version beside `base` and renames it into place, as the Pusher and `export_version` do."""
    staging = base.parent / f"staging-{version}"
    writer(staging)
    shutil.move(str(staging), str(base / str(version)))


class _Clients:
    """Threads sending valid predict requests until stopped; counts answers that are not 200."""

    def __init__(self, server, name, count=3):
        self.server, self.name, self.answers, self.failures = server, name, 0, []
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]
        for thread in self.threads:
            thread.start()

    def _run(self):
        while not self._stop.is_set():
            status, answer = self.server.request(f"/v1/models/{self.name}:predict",
                                                 {"instances": [{"item_ids": ["i1", "i2"]}]})
            self.answers += 1
            if status != 200:
                self.failures.append((status, answer))

    def stop(self):
        self._stop.set()
        for thread in self.threads:
            thread.join(60)


def test_requests_are_answered_by_the_current_version_while_a_new_one_loads(tmp_path):
    from tfrec_dyn.serving.versions import LoadedVersion

    base = tmp_path / "pop"
    _, vocab, counts_v1 = _export(base / "1", PopRec, 1)
    top = lambda counts: vocab.decode([int(np.argmax(counts[2:])) + 2])[0]  # PopRec's best item
    release = threading.Event()
    release.set()

    def held_loader(path, version):  # the real load, once the test lets it go
        assert release.wait(60)
        return LoadedVersion.load(path, version)

    srv = _Server({"pop": str(base)}, loader=held_loader)
    empty = {"instances": [{"item_ids": [""]}]}
    try:
        release.clear()
        counts_v2 = _export(tmp_path / "staging", PopRec, 2)[2]
        shutil.move(str(tmp_path / "staging"), str(base / "2"))
        srv.wait_for("pop", 2, "LOADING")
        answers = [srv.request("/v1/models/pop:predict", empty) for _ in range(5)]
        assert [status for status, _ in answers] == [200] * 5
        assert {answer["predictions"][0]["item_ids"][0] for _, answer in answers} == {top(counts_v1)}
        assert srv.status("pop")["2"]["state"] == "LOADING"  # still loading all along
        release.set()
        srv.wait_for("pop", 2, "AVAILABLE")
        assert srv.request("/v1/models/pop:predict", empty)[1]["predictions"][0]["item_ids"][0] == top(counts_v2)
    finally:
        release.set()
        srv.close()


def test_broken_versions_never_fail_a_request_and_a_later_good_one_loads(tmp_path):
    base = tmp_path / "pop"
    _, vocab, counts_v1 = _export(base / "1", PopRec, 1)
    top = lambda counts: vocab.decode([int(np.argmax(counts[2:])) + 2])[0]  # PopRec's best item
    srv = _Server({"pop": str(base)})
    clients = _Clients(srv, "pop")
    try:
        empty = {"instances": [{"item_ids": [""]}]}
        assert srv.request("/v1/models/pop:predict", empty)[1]["predictions"][0]["item_ids"][0] == top(counts_v1)
        (base / "\u00b2").mkdir()  # a folder name str.isdigit() accepts but int() refuses: ignored

        def garbage_graph(path):
            shutil.copytree(base / "1", path)
            (path / "saved_model.pb").write_bytes(b"\x08\x96\x01 this is not a SavedModel")

        def half_written(path):  # variables copied, the graph not yet
            shutil.copytree(base / "1", path)
            (path / "saved_model.pb").unlink()

        def no_variables(path):
            shutil.copytree(base / "1", path)
            shutil.rmtree(path / "variables")

        for version, writer, code in [(2, garbage_graph, "DATA_LOSS"), (3, half_written, "NOT_FOUND"),
                                      (4, no_variables, None)]:
            _push(base, version, writer)
            entry = srv.wait_for("pop", version, "END")
            assert entry["status"]["error_code"] != "OK" and f"version {version}" in entry["status"]["error_message"]
            if code:
                assert entry["status"]["error_code"] == code
            # Version 1 still answers, and a request for the broken version is a plain 404.
            assert srv.status("pop")["1"]["state"] == "AVAILABLE"
            assert srv.request(f"/v1/models/pop/versions/{version}:predict", empty)[0] == 404
            assert srv.request(f"/v1/models/pop/versions/{version}")[1]["model_version_status"][0] == entry

        _push(base, 5, lambda path: _export(path, PopRec, 2))
        srv.wait_for("pop", 5, "AVAILABLE")
        counts_v5 = _export(tmp_path / "again", PopRec, 2)[2]
        assert srv.request("/v1/models/pop:predict", empty)[1]["predictions"][0]["item_ids"][0] == top(counts_v5)
        assert srv.status("pop")["1"] == {"version": "1", "state": "END",
                                          "status": {"error_code": "OK", "error_message": ""}}
        assert srv.request("/v1/models/pop/metadata")[1]["model_spec"]["version"] == "5"
    finally:
        clients.stop()
        srv.close()
    assert clients.answers > 10 and clients.failures == []


def test_a_failed_version_is_retried_when_its_files_change_and_startup_falls_back(tmp_path):
    from tfrec_dyn.serving.versions import VersionManager

    base = tmp_path / "rec"
    _export(base / "1", PopRec, 1)
    shutil.copytree(base / "1", base / "2")
    graph = (base / "2" / "saved_model.pb").read_bytes()
    (base / "2" / "saved_model.pb").unlink()  # a copy still in progress when the server starts
    manager = VersionManager({"rec": str(base)})
    manager.load_initial()  # the newest version does not load: the one before it serves
    model = manager.models["rec"]
    assert model.current.version == 1
    assert [(s["version"], s["state"], s["status"]["error_code"]) for s in model.statuses()] == [
        ("2", "END", "NOT_FOUND"), ("1", "AVAILABLE", "OK")]
    model.poll()  # nothing changed on disk: not loaded again
    assert model.current.version == 1 and model.statuses(2)[0]["state"] == "END"
    (base / "2" / "saved_model.pb").write_bytes(graph)  # the copy finishes ...
    model.poll()
    assert model.current.version == 1  # ... files changed since the last look: wait for them to settle
    model.poll()
    assert model.current.version == 2 and model.statuses(2)[0]["state"] == "AVAILABLE"
    shutil.rmtree(base / "2")  # the served version deleted: the newest remaining one takes over
    model.poll()
    model.poll()
    assert model.current.version == 1

    with pytest.raises(FileNotFoundError, match="no version of model 'none' could be loaded"):
        VersionManager({"none": str(tmp_path / "missing")}).load_initial()
    (tmp_path / "broken" / "1").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="Failed to load version 1"):
        VersionManager({"broken": str(tmp_path / "broken")}).load_initial()


def test_deep_nesting_and_oversized_bodies_are_client_errors(server):
    limited = _Server({"rec": str(server.base)}, max_request_bytes=100_000)
    try:
        _check_deep_and_oversized(limited)
    finally:
        limited.close()


def _check_deep_and_oversized(limited):
    deep = b"[" * 100_000 + b"]" * 100_000
    code, answer = limited.request("/v1/models/rec:predict", raw=b'{"instances": ' + deep[:50_000] + b"}")
    assert code == 400 and "nested too deeply" in answer["error"]
    nested = {"instances": [{"item_ids": json.loads("[" * 900 + '"a"' + "]" * 900)}]}
    assert limited.request("/v1/models/rec:predict", nested)[0] == 400
    code, answer = limited.request("/v1/models/rec:predict", raw=b" " * 100_001)
    assert code == 413 and "over the limit of 100000 bytes" in answer["error"]
    assert limited.request("/v1/models/rec:predict", {"instances": [{"item_ids": ["i1"]}]})[0] == 200


def test_overload_answers_503_instead_of_queueing(server, monkeypatch):
    busy, release = threading.Event(), threading.Event()
    real = rest.handle_predict

    def held(*args):  # the real predict work, held while the test fills the pool
        busy.set()
        assert release.wait(60)
        return real(*args)

    monkeypatch.setattr(rest, "handle_predict", held)
    srv = _Server({"rec": str(server.base)}, num_threads=1, max_queued_requests=1)
    small = {"instances": [{"item_ids": ["i1"]}]}
    results = []
    senders = [threading.Thread(target=lambda: results.append(srv.request("/v1/models/rec:predict", small)[0]))
               for _ in range(2)]
    try:
        senders[0].start()
        assert busy.wait(30)  # the one thread is taken ...
        senders[1].start()
        deadline = time.time() + 30
        while srv.rest._pending < 2 and time.time() < deadline:  # ... and the one queue place
            time.sleep(0.01)
        status, answer = srv.request("/v1/models/rec:predict", small)
        assert status == 503 and "overloaded" in answer["error"], (status, answer)
        release.set()
        for sender in senders:
            sender.join(60)
        assert results == [200, 200]  # the admitted ones were answered
        assert srv.request("/v1/models/rec:predict", small)[0] == 200 and srv.rest._pending == 0
    finally:
        release.set()
        srv.close()


def test_a_fault_of_the_server_is_a_json_500_and_the_server_stays_up(server, monkeypatch):
    def broken(version, body):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(rest, "predict", broken)
    status, answer = server.request("/v1/models/rec:predict", {"instances": [{"item_ids": ["i1"]}]})
    assert status == 500 and answer == {"error": "Internal error: RuntimeError: a bug of ours"}
    monkeypatch.undo()
    assert server.request("/v1/models/rec:predict", {"instances": [{"item_ids": ["i1"]}]})[0] == 200


def test_requests_past_the_deadline_get_504(server):
    srv = _Server({"rec": str(server.base)}, timeout_ms=1)
    try:
        big = {"instances": [{"item_ids": ["i1", "i2", "i3"]}] * 500}
        code, answer = srv.request("/v1/models/rec:predict", big)
        assert code == 504 and "Deadline exceeded" in answer["error"]
    finally:
        srv.close()


def _fuzz_cases(rng, count):
    """`count` malformed requests (method, path, body): each is wrong by construction."""
    valid = {"instances": [{"item_ids": ["i1", "i2"], "k": 3}]}
    columnar = {"inputs": {"item_ids": [["i1", "i2"]], "k": 3, "exclude_seen": True}}
    garbage = lambda: bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8))
    # None of these is a valid item_ids, k or exclude_seen (a k outside [1, items] is clipped, so valid).
    wrong_values = [None, 2 ** 40, -2 ** 31 - 1, 1.5, "x", [], [[[["i1"]]]], {}, {"b64": "!!"}, {"b64": 3},
                    [["i1", 2]], [[None]], "NaN", [1e400], 3]

    def body_case():
        kind = int(rng.integers(0, 8))
        if kind == 0:  # not JSON, or not an object
            return garbage() if rng.random() < 0.7 else json.dumps(wrong_values[int(rng.integers(len(wrong_values)))]).encode()
        if kind == 1:  # valid JSON cut short
            text = json.dumps(valid if rng.random() < 0.5 else columnar)
            return text[:int(rng.integers(1, len(text)))].encode()
        if kind == 2:  # deep nesting
            depth = int(rng.integers(500, 50_000))
            return ('{"inputs": {"item_ids": ' + "[" * depth + "]" * depth + "}}").encode()
        if kind == 3:  # a wrong value for an input
            body = json.loads(json.dumps(columnar))
            key = ["item_ids", "k", "exclude_seen"][int(rng.integers(3))]
            body["inputs"][key] = wrong_values[int(rng.integers(len(wrong_values)))]
            if key == "k" and body["inputs"][key] == 3:
                body["inputs"][key] = True  # a boolean is not an integer
            return json.dumps(body).encode()
        if kind == 4:  # unknown inputs, both keys, no key, a wrong signature
            return json.dumps([{"inputs": {"item_ids": [["i1"]], "nope": 1}}, {**valid, **columnar}, {"k": 3},
                               {**valid, "signature_name": ["serving_default"]},
                               {**valid, "signature_name": "x" * int(rng.integers(1, 50))},
                               {"instances": []}, {"instances": [{"item_ids": ["a"]}, {"k": 3}]},
                               {"instances": [{"item_ids": ["a"]}, {"item_ids": ["a", "b"]}]},
                               {"inputs": [["i1"]]}][int(rng.integers(9))]).encode()
        if kind == 5:  # k does not fit in the signature's int32
            return json.dumps({"inputs": {"item_ids": [["i1"]], "k": int(rng.choice([-2 ** 31 - 1, 2 ** 31]))}}).encode()
        if kind == 6:  # bad UTF-8 inside otherwise fine JSON
            return b'{"instances": [{"item_ids": ["\xff\xfe"]}]}'
        return garbage() + json.dumps(valid).encode()

    def path_case():
        word = "".join(chr(int(c)) for c in rng.integers(33, 127, int(rng.integers(1, 12))))
        word = urllib.parse.quote(word, safe="")
        return [("GET", f"/v1/models/{word}"), ("POST", f"/v1/models/{word}:predict"),
                ("GET", f"/v1/models/rec/versions/{word}"), ("POST", f"/v1/models/rec/versions/{word}:predict"),
                ("GET", f"/v1/models/rec/versions/{word}/metadata"), ("GET", f"/{word}"),
                ("POST", f"/v1/models/rec:{word}"), ("GET", "/v1/models/rec:predict"),
                ("DELETE", "/v1/models/rec"), ("PUT", "/v1/models/rec:predict"),
                ("POST", "/v1/models/rec/labels/stable:predict")][int(rng.integers(11))]

    for _ in range(count):
        if rng.random() < 0.75:
            yield "POST", "/v1/models/rec:predict", body_case()
        else:
            method, path = path_case()
            if (method, path) in {("GET", "/v1/models/rec/versions/1"), ("GET", "/v1/models/rec/versions/1/metadata")}:
                path += "0"  # by chance a valid URL: make it a missing version
            yield method, path, (garbage() if method in ("POST", "PUT") else None)


def test_fuzz_every_malformed_request_gets_a_json_4xx_and_the_server_stays_up(server):
    import http.client

    rng = np.random.default_rng(20261202)
    seen_codes = set()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for method, path, body in _fuzz_cases(rng, 500):
        connection.request(method, path, body=body)
        response = connection.getresponse()
        raw = response.read()
        assert 400 <= response.status < 500, (method, path, body[:200] if body else None, response.status, raw[:300])
        assert response.getheader("Content-Type", "").startswith("application/json"), (method, path, raw[:200])
        assert isinstance(json.loads(raw)["error"], str)
        seen_codes.add(response.status)
    connection.close()
    assert {400, 404, 405} <= seen_codes
    assert server.request("/v1/models/rec:predict", {"instances": [{"item_ids": ["i1", "i2"]}]})[0] == 200


def test_sigterm_drains_in_flight_requests_and_exits_0(server, tmp_path):
    """A request whose body is still arriving when SIGTERM comes is answered; then the server exits 0."""
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "tfrec_dyn", "serve", "--model_name", "rec",
                                "--model_base_path", str(server.base), "--rest_api_port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1/models/rec"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except (urllib.error.URLError, OSError):
                assert process.poll() is None and time.time() < deadline, process.communicate(timeout=30)
                time.sleep(0.2)
        body = json.dumps({"instances": [{"item_ids": ["i1", "i2"]}]}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
            connection.sendall(b"POST /v1/models/rec:predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                               + body[:10])
            time.sleep(1.0)  # the server has the request and waits for the rest of its body
            process.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert process.poll() is None  # still draining
            connection.sendall(body[10:])
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), (answer[:300], err[-2000:])
    assert len(json.loads(payload)["predictions"][0]["item_ids"]) == 10
    assert process.returncode == 0, err[-2000:]
    assert "tfrec-dyn serve: stopped" in out
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(url, timeout=5)
