"""A real `bertkit serve` process on a free loopback port, driven over HTTP; where the process itself is not
what is tested (the schemas of each task, the API key, the body timeout), the same app under the same uvicorn
in a thread of the test process, which spares the interpreter's start-up and imports."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertkit.inference.predictor import Predictor
from conftest import cli_train, toy_ner, toy_sentiment, write_conll, write_jsonl

pytest.importorskip("fastapi")  # the serve extra


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, run, tmp, *flags):
        self.port = _free_port()
        self.log = open(tmp / f"server-{self.port}.log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "bertkit", "serve", str(run), "--port", str(self.port),
                                      *flags], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if self.call("GET", "/health")[1]["model_loaded"]:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            assert self.proc.poll() is None, self.logs()
            time.sleep(0.3)
        raise AssertionError("server did not start: " + self.logs())

    def logs(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def call(self, method, path, body=None, headers=None, raw: bytes | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def serve_in_thread(app, port, ready, header_timeout: float = 10.0):
    """`app` under uvicorn on loopback `port` with bertkit's uvicorn settings (the header timeout), in a
    daemon thread, once `ready()` holds (60 s at most); returns the function that stops it."""
    import threading

    import uvicorn

    from bertkit.serve.protocol import uvicorn_settings

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                           **uvicorn_settings(header_timeout)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def stop():
        server.should_exit = True
        thread.join(timeout=30)

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if ready():
                return stop
        except (urllib.error.URLError, ConnectionError):
            pass
        assert thread.is_alive(), "the server thread ended"
        time.sleep(0.05)
    stop()
    raise AssertionError("the server did not start")


class ThreadServer(Server):
    """`bertkit serve RUN` as its command builds it (`create_app` under uvicorn), in a thread."""

    def __init__(self, run, **settings):
        from bertkit.serve.app import ServeSettings, create_app

        self.port = _free_port()
        config = ServeSettings(path=str(run), **settings)
        self.stop = serve_in_thread(create_app(config), self.port,
                                    lambda: self.call("GET", "/health")[1]["model_loaded"], config.header_timeout)


@pytest.fixture(scope="module")
def classification(tmp_path_factory, toy_run):
    tmp = tmp_path_factory.mktemp("serve")
    server = Server(toy_run[0], tmp, "--max-items", "8", "--max-chars", "200", "--max-body-bytes", "4000")
    yield server, toy_run[0]
    server.stop()


def test_predictions_match_the_predictor_in_order(classification):
    server, run = classification
    texts = [t for t, _ in toy_sentiment(8, seed=21)]
    status, body = server.call("POST", "/v1/predict", {"inputs": texts})
    assert status == 200
    reference = Predictor.from_run(run).predict(texts)
    assert [p["label"] for p in body["predictions"]] == [p["label"] for p in reference]
    assert set(body["predictions"][0]) == {"label", "score", "probabilities"}


def test_concurrent_requests_get_their_own_answers(classification):
    server, run = classification
    texts = [t for t, _ in toy_sentiment(64, seed=22)]
    reference = [p["label"] for p in Predictor.from_run(run).predict(texts)]
    chunks = [texts[i : i + 2] for i in range(0, 64, 2)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda c: server.call("POST", "/v1/predict", {"inputs": c}), chunks))
    assert all(status == 200 for status, _ in answers)
    assert [p["label"] for _, body in answers for p in body["predictions"]] == reference
    status, info = server.call("GET", "/v1/model")
    assert info["batching"]["batches"] < info["batching"]["examples"]  # requests shared forward passes


def test_a_lone_surrogate_is_refused_alone_and_logged(classification):
    server, _ = classification
    bad = b'{"inputs": ["fine text", "\\ud800 broken"]}'
    good = {"inputs": ["the film was great"]}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: server.call("POST", "/v1/predict", raw=bad) if i % 2 else
                                server.call("POST", "/v1/predict", good), range(16)))
    assert {a[0] for i, a in enumerate(answers) if not i % 2} == {200}
    refused = [a for i, a in enumerate(answers) if i % 2]
    assert {status for status, _ in refused} == {422}
    assert all("input 1:" in body["error"]["message"] and "surrogate" in body["error"]["message"]
               for _, body in refused)
    assert '"status": 422' in server.logs()


def test_model_and_health_endpoints(classification):
    server, run = classification
    status, info = server.call("GET", "/v1/model")
    assert status == 200 and info["task"] == "classification" and info["labels"] == ["negative", "positive"]
    text = {"type": "string", "pattern": r"\S", "description": "not blank"}
    assert text in info["input_schema"]["anyOf"] and info["input_examples"]  # a pair-free model: no text_pair
    assert {"not": {"required": ["text_pair"]}}.items() <= info["input_schema"]["anyOf"][1].items()
    assert info["model"] == run.name and str(run.parent.parent) not in json.dumps(info)  # no local path
    assert info["dev_metrics"]["accuracy"] >= 0.9 and info["lineage"]["base_model"]
    assert server.call("GET", "/health") == (200, {"status": "ok", "model_loaded": True})
    assert server.call("GET", "/openapi.json")[1]["paths"]["/v1/predict"]


@pytest.mark.parametrize("body,status,code", [
    ({"inputs": ["good"] * 9}, 413, "too_many_inputs"),
    ({"inputs": ["x" * 201]}, 413, "text_too_long"),
    ({"input": ["good"]}, 422, "invalid_request"),
    ({"inputs": []}, 422, "invalid_request"),
    ({"inputs": [{"title": "no text"}]}, 422, "invalid_input"),
    ({"inputs": [{"text": 5}]}, 422, "invalid_input"),
    ({"inputs": [{"text": "a fine film", "text_pair": "a pair"}]}, 422, "invalid_input"),
])
def test_limits_and_schema_errors(classification, body, status, code):
    server, _ = classification
    got, answer = server.call("POST", "/v1/predict", body)
    assert (got, answer["error"]["code"]) == (status, code)
    inputs = body.get("inputs") or [None]
    if isinstance(inputs[0], dict) and "text_pair" in inputs[0]:
        assert "classifies single texts, not pairs" in answer["error"]["message"]
    if inputs == [{"text": 5}]:
        assert "text must be a string, got int" in answer["error"]["message"]


def test_malformed_json_and_oversized_body(classification):
    server, _ = classification
    status, answer = server.call("POST", "/v1/predict", raw=b'{"inputs": [')
    assert status == 422 and answer["error"]["code"] == "invalid_request"
    status, answer = server.call("POST", "/v1/predict", raw=json.dumps({"inputs": ["a" * 100] * 50}).encode())
    assert status == 413 and answer["error"]["limit"] == "max_body_bytes"
    assert '"path": "/v1/predict", "status": 413' in server.logs()  # structured access log
    status, answer = server.call("GET", "/v2/nothing")
    assert status == 404 and answer["error"]["code"] == "not_found"
    status, answer = server.call("POST", "/v1/predict", raw=b'{"inputs": ["caf\xe9"]}')  # not UTF-8
    assert status == 422 and answer["error"]["code"] == "invalid_request"
    status, answer = server.call("POST", "/v1/predict", raw=b'{"inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}")
    assert status in (413, 422) and answer["error"]["code"] in ("invalid_request", "body_too_large")


def test_a_half_sent_body_is_answered_408_after_the_body_timeout(toy_run):
    server = ThreadServer(toy_run[0], body_timeout=1.0)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"inputs\": [")
            start = time.monotonic()
            answer = conn.recv(4096).decode()
            waited = time.monotonic() - start
            conn.settimeout(2)
            try:
                answer += conn.recv(4096).decode()  # the body, when it came in a second packet
            except TimeoutError:
                pass
        assert answer.startswith("HTTP/1.1 408") and "body_timeout" in answer
        assert waited < 5
        assert server.call("POST", "/v1/predict", {"inputs": ["still serving"]})[0] == 200
    finally:
        server.stop()


def test_serve_refuses_an_empty_api_key_and_a_bad_port(toy_run, capsys, monkeypatch):
    from bertkit.cli import main

    assert main(["serve", str(toy_run[0]), "--api-key", ""]) == 2
    assert "API key (--api-key or $BERTKIT_API_KEY) is empty" in capsys.readouterr().err
    monkeypatch.setenv("BERTKIT_API_KEY", "  ")
    assert main(["serve", str(toy_run[0])]) == 2
    assert "is empty" in capsys.readouterr().err
    monkeypatch.delenv("BERTKIT_API_KEY")
    for port in ("-1", "70000"):
        assert main(["serve", str(toy_run[0]), "--port", port]) == 2
        assert "--port must be a TCP port" in capsys.readouterr().err


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=4),
                     max_leaves=12)
_BODIES = st.one_of(
    _JSON.map(lambda v: json.dumps(v).encode()),  # any JSON document
    st.fixed_dictionaries({"inputs": _JSON}).map(lambda v: json.dumps(v).encode()),  # the key, any value
    st.fixed_dictionaries({"inputs": st.lists(st.text(max_size=60) | _JSON, min_size=1, max_size=9)}).map(
        lambda v: json.dumps(v).encode()),  # a list of texts, some odd
    st.binary(max_size=300),  # not JSON at all (NUL bytes, invalid UTF-8...)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_BODIES)
def test_any_request_body_gets_an_answer_or_a_json_error_never_a_crash(classification, body):
    server, _ = classification
    status, answer = server.call("POST", "/v1/predict", raw=body)
    assert status in (200, 413, 422), (status, answer)
    if status == 200:
        assert len(answer["predictions"]) == len(json.loads(body)["inputs"])
    else:
        assert answer["error"]["code"] and answer["error"]["message"]
    assert server.proc.poll() is None


def test_api_key(classification, tmp_path):
    _, run = classification
    server = ThreadServer(run, api_key="s3cret")
    try:
        assert server.call("POST", "/v1/predict", {"inputs": ["good"]})[0] == 401
        assert server.call("POST", "/v1/predict", {"inputs": ["good"]}, {"Authorization": "Bearer nope"})[0] == 401
        assert server.call("GET", "/v1/model")[0] == 401
        for scheme in ("Bearer", "bearer", "BEARER"):  # the scheme is case-insensitive (RFC 9110)
            ok = server.call("POST", "/v1/predict", {"inputs": ["good"]}, {"Authorization": f"{scheme} s3cret"})
            assert ok[0] == 200, scheme
        assert server.call("GET", "/health")[0] == 200
    finally:
        server.stop()


def test_ner_and_qa_schemas(tmp_path, tiny_model_dir):
    ner = cli_train("ner", write_conll(tmp_path / "n.conll", toy_ner(60, seed=1)),
                    write_conll(tmp_path / "nd.conll", toy_ner(20, seed=2)), tmp_path / "ner", tiny_model_dir,
                    "--max-steps", "10", "--max-length", "32")
    server = ThreadServer(ner)
    try:
        status, body = server.call("POST", "/v1/predict", {"inputs": ["john smith visited paris",
                                                                      ["mary", "left", "rome"]]})
        assert status == 200 and len(body["predictions"]) == 2
        text_pred, tokens_pred = body["predictions"]
        assert set(text_pred) == {"entities"} and set(tokens_pred) == {"tokens", "tags", "entities"}
        for entity in body["predictions"][0]["entities"]:
            assert set(entity) == {"label", "start", "end", "text", "score"}
    finally:
        server.stop()
    rows = [{"id": str(k), "question": "who ?", "context": f"the film was fun and {n} was there",
             "answers": {"text": [n], "answer_start": [21]}} for k, n in enumerate(["mary", "john", "anna"] * 10)]
    qa = cli_train("qa", write_jsonl(tmp_path / "q.jsonl", rows), write_jsonl(tmp_path / "qd.jsonl", rows[:6]),
                   tmp_path / "qa", tiny_model_dir, "--max-steps", "10", "--max-length", "32")
    server = ThreadServer(qa)
    try:
        item = {"question": "who ?", "context": "the film was fun and mary was there"}
        status, body = server.call("POST", "/v1/predict", {"inputs": [item]})
        assert status == 200 and {"answer", "score", "start", "end"} <= set(body["predictions"][0])
        assert server.call("POST", "/v1/predict", {"inputs": ["no question"]})[0] == 422
    finally:
        server.stop()


def test_shutdown_finishes_requests_in_flight(classification, tmp_path):
    _, run = classification
    server = Server(run, tmp_path, "--max-wait-ms", "2000")  # a lone request waits 2 s for company
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(server.call, "POST", "/v1/predict", {"inputs": ["a lovely film"]})
        time.sleep(0.7)
        server.proc.terminate()  # SIGTERM while the request waits in the batcher
        status, body = answer.result(timeout=30)
    assert status == 200 and len(body["predictions"]) == 1
    assert server.proc.wait(timeout=30) in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown
    server.log.close()


def test_several_worker_processes(classification, tmp_path):
    _, run = classification
    server = Server(run, tmp_path, "--workers", "2")
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: server.call("POST", "/v1/predict", {"inputs": ["good film"]}), range(8)))
        assert all(status == 200 for status, _ in answers)
        assert '"path": "/v1/predict", "status": 200' in server.logs()
    finally:
        server.stop()


def test_pair_multilabel_and_regression_schemas(tmp_path, tiny_model_dir):
    from conftest import write_csv

    rows = toy_sentiment(60, seed=5)
    runs = {
        "pairs": (write_csv(tmp_path / "p.csv", ["text", "other", "label"],
                            [(a, b, la == lb) for (a, la), (b, lb) in zip(rows, rows[1:] + rows[:1])]),
                  ["--text-pair-column", "other"], [{"text": "good film", "text_pair": "a great plot"}],
                  {"label", "score", "probabilities"}),
        "multi": (write_csv(tmp_path / "m.csv", ["text", "label"],
                            [(t, f"{lab}|{'long' if len(t) > 30 else 'short'}") for t, lab in rows]),
                  ["--label-delimiter", "|"], ["a lovely warm story"], {"labels", "probabilities"}),
        "regression": (write_csv(tmp_path / "r.csv", ["text", "label"],
                                 [(t, 0.25 if lab == "negative" else 0.75) for t, lab in rows]),
                       [], ["a dull plot"], {"value"}),
    }
    for name, (data, flags, inputs, keys) in runs.items():
        run = cli_train("classification", data, data, tmp_path / name, tiny_model_dir, "--max-steps", "5",
                        "--label-column", "label", *flags)
        server = ThreadServer(run)
        try:
            status, body = server.call("POST", "/v1/predict", {"inputs": inputs})
            assert status == 200 and set(body["predictions"][0]) == keys, (name, body)
            if name == "pairs":  # a pair model needs the second text
                assert server.call("POST", "/v1/predict", {"inputs": ["only one text"]})[0] == 422
        finally:
            server.stop()


def _depth(value) -> int:
    """The reference: nesting depth of parsed JSON, by recursion."""
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_brackets = st.text(alphabet='[]{}"\\ab:,')
_json = st.recursive(st.none() | st.booleans() | st.integers() | _brackets,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_brackets, inner, max_size=3),
                     max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_the_depth_measured_without_parsing_matches_the_parsed_depth(value):
    from bertkit.serve.app import json_depth

    assert json_depth(json.dumps(value).encode()) == _depth(value)  # brackets and quotes inside strings too


def test_deep_nesting_is_refused_before_parsing_and_logs_no_traceback(toy_run, tmp_path):
    server = Server(toy_run[0], tmp_path)
    try:
        deep = b'{"inputs":[{"text":"good","x":' + b"[" * 600 + b"]" * 600 + b"}]}"
        status, body = server.call("POST", "/v1/predict", raw=deep)
        assert status == 422 and body["error"]["code"] == "too_deep" and body["error"]["max"] == 16
        assert "603 levels" in body["error"]["message"]
        deep = b'{"inputs":[' + b"[" * 100_000 + b"]" * 100_000 + b"]}"  # 200 KB
        assert server.call("POST", "/v1/predict", raw=deep)[1]["error"]["code"] == "too_deep"
        assert server.call("POST", "/v1/predict", {"inputs": [{"text": "good", "x": [[[1]]]}]})[0] == 200
        assert "Traceback" not in server.logs() and "RecursionError" not in server.logs()
    finally:
        server.stop()


def test_connections_that_dribble_their_headers_are_closed_after_the_header_timeout(toy_run):
    server = ThreadServer(toy_run[0], header_timeout=1.0)
    conns = []
    try:
        start = time.monotonic()
        for _ in range(100):
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            conn.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            conns.append(conn)
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)  # sends nothing at all
        conns.append(silent)
        answers = []
        for conn in conns:
            data = b""
            while chunk := conn.recv(4096):  # until the server closes it
                data += chunk
            answers.append(data)
        waited = time.monotonic() - start
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]
        assert waited < 8, waited  # all closed about 1 s after they opened, not 60
        # a client that sends its headers in pieces but in time is answered
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            body = b'{"inputs": ["in time"]}'
            for piece in (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n", b"Content-Type: application/json\r\n",
                          b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body):
                conn.sendall(piece)
                time.sleep(0.3)
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for conn in conns:
            conn.close()
        server.stop()


def test_a_wrong_method_is_answered_405_with_allow(classification):
    server, _ = classification
    for method, path, allowed in (("GET", "/v1/predict", "POST"), ("POST", "/v1/model", "GET"),
                                  ("DELETE", "/health", "GET")):
        req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", method=method,
                                     data=b"{}" if method == "POST" else None,
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 405 and err.value.headers["Allow"] == allowed, (method, path)
        assert json.loads(err.value.read())["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("item,chars", [
    ("twelve chars", 12),
    ({"text": "short", "text_pair": "a longer second text"}, 20),
    ({"text": "Which is kind?", "choices": ["awful", "a very lovely and kind word"]}, 27),  # the longest choice
    (["New", "York"], 9),  # tokens joined by spaces
    ({"question": "who?", "context": "x" * 300}, 300),
])
def test_the_length_limit_measures_the_longest_text_of_any_input(item, chars):
    from bertkit.serve.app import input_chars

    assert input_chars(item) == chars
