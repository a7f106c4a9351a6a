"""The completions API over a real tiny model: OpenAI shape, validation (4xx, never a crash),
batching of concurrent clients, and the ``nl2code serve`` command itself."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx
import pytest

from nl2code import cli


def post(url: str, body: object, **kw) -> httpx.Response:
    return httpx.post(url + "/v1/completions", json=body, timeout=60, **kw)


def test_health_and_models(server):
    url, _ = server
    h = httpx.get(url + "/health", timeout=10).json()
    assert h["status"] == "ok" and h["model"] == "tiny" and h["kind"] == "codegen"
    models = httpx.get(url + "/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["tiny"]


def test_completion_has_openai_shape(server):
    url, _ = server
    r = post(url, {"prompt": "Return the sum of two numbers.", "n": 3, "max_tokens": 12, "temperature": 0.8,
                   "model": "tiny"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "tiny" and body["id"].startswith("cmpl-")
    assert isinstance(body["created"], int)
    choices = body["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    for c in choices:
        assert isinstance(c["text"], str) and c["logprobs"] is None
        assert c["finish_reason"] in ("stop", "length")
        assert isinstance(c["score"], float)
    scores = [c["score"] for c in choices]
    assert scores == sorted(scores, reverse=True)  # best first
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 3 * 12


def test_prompt_list_and_indices(server):
    url, _ = server
    r = post(url, {"prompt": ["Open a file.", "Sort a list."], "n": 2, "max_tokens": 8})
    assert r.status_code == 200, r.text
    assert [c["index"] for c in r.json()["choices"]] == [0, 1, 2, 3]


def test_stop_and_length(server):
    url, _ = server
    r = post(url, {"prompt": "Return the larger value.", "n": 4, "max_tokens": 40, "temperature": 1.0, "stop": "\n"})
    assert r.status_code == 200, r.text
    assert all("\n" not in c["text"] for c in r.json()["choices"])
    r = post(url, {"prompt": "Return the larger value.", "max_tokens": 1, "temperature": 0})
    assert r.json()["choices"][0]["finish_reason"] in ("length", "stop")


def test_same_seed_same_output(server):
    url, _ = server
    body = {"prompt": "Parse a date string.", "n": 2, "max_tokens": 16, "temperature": 1.0, "seed": 1234}
    a, b = post(url, body).json(), post(url, body).json()
    assert [c["text"] for c in a["choices"]] == [c["text"] for c in b["choices"]]


BAD_REQUESTS = [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": ["x"] * 17}, "prompt"),
    ({"prompt": "x" * 4001}, "prompt"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "n": 17}, "n"),
    ({"prompt": ["a", "b", "c", "d", "e"], "n": 16}, "n"),
    ({"prompt": "x", "n": "3"}, "n"),
    ({"prompt": "x", "n": True}, "n"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 100000}, "max_tokens"),
    ({"prompt": "x", "temperature": -0.1}, "temperature"),
    ({"prompt": "x", "temperature": 2.5}, "temperature"),
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": "x", "stop": 7}, "stop"),
    ({"prompt": "x", "stop": [""]}, "stop"),
    ({"prompt": "x", "stream": "yes"}, "stream"),
    ({"prompt": "x", "logprobs": 6}, "logprobs"),
    ({"prompt": "x", "n": 2, "best_of": 1}, "best_of"),
    ({"prompt": "x", "max_token": 5}, "max_token"),
    ({"prompt": "x", "seed": -1}, "seed"),
    ([1, 2], None),
    ("just a string", None),
]


@pytest.mark.parametrize(("body", "param"), BAD_REQUESTS)
def test_invalid_requests_get_422_naming_the_field(server, body, param):
    url, _ = server
    r = post(url, body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    if param is not None:
        assert err["param"] == param and param in err["message"]


def test_malformed_json_is_400(server):
    url, _ = server
    for raw in (b"{not json", b"", b'{"prompt": "x",}', b"\xff\xfe"):
        r = httpx.post(url + "/v1/completions", content=raw, headers={"content-type": "application/json"}, timeout=10)
        assert r.status_code in (400, 422), (raw, r.status_code, r.text)
        assert r.json()["error"]["message"]


def test_oversized_body_is_413(server):
    url, _ = server
    big = json.dumps({"prompt": "x" * 70_000}).encode()
    r = httpx.post(url + "/v1/completions", content=big, headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 413 and "larger than" in r.json()["error"]["message"]

    # Chunked (no Content-Length): the limit is enforced while reading.
    def chunks():
        for _ in range(20):
            yield b"x" * 8192

    r = httpx.post(url + "/v1/completions", content=chunks(), headers={"content-type": "application/json"},
                   timeout=10)
    assert r.status_code == 413

    # A lying or unreadable Content-Length is refused before reading, not trusted.
    p = urlparse(url)
    conn = http.client.HTTPConnection(p.hostname, p.port, timeout=10)
    conn.putrequest("POST", "/v1/completions")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "999999999")
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()


def test_wrong_method_and_route(server):
    url, _ = server
    assert httpx.get(url + "/v1/completions", timeout=10).status_code == 405
    assert httpx.get(url + "/nope", timeout=10).status_code == 404


def test_32_requests_from_8_concurrent_clients(server):
    url, app = server
    stats = app.state.batcher.stats
    before_requests, before_calls = stats.requests, stats.generate_calls

    def client(i: int) -> list[int]:
        codes = []
        with httpx.Client(timeout=120) as c:
            for j in range(4):
                body = {"prompt": f"Return item {i}-{j} of the list.", "n": 2, "max_tokens": 12, "temperature": 0.7}
                r = c.post(url + "/v1/completions", json=body)
                assert len(r.json().get("choices", [])) == 2, r.text
                codes.append(r.status_code)
        return codes

    with ThreadPoolExecutor(8) as pool:
        codes = [c for result in pool.map(client, range(8)) for c in result]
    assert codes == [200] * 32
    answered = stats.requests - before_requests
    calls = stats.generate_calls - before_calls
    assert answered == 32
    assert calls < 32 and stats.largest_batch > 1  # concurrent requests shared model calls
    assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"  # still alive


def test_serve_defaults_to_localhost():
    args = cli.build_parser().parse_args(["serve", "--run", "x"])
    assert args.host == "127.0.0.1"


def test_serve_command_end_to_end(tiny_run):
    proc = subprocess.Popen([sys.executable, "-m", "nl2code", "serve", "--run", str(tiny_run), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for _ in range(50):  # the address line, after any warnings the imports print
            seen.append(proc.stderr.readline())
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", seen[-1])
            if m or not seen[-1]:
                break
        assert m, "".join(seen)
        url = f"http://127.0.0.1:{m.group(1)}"
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(url + "/health", timeout=5).json()["status"] == "ok"
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not answer"
                time.sleep(0.1)
        r = post(url, {"prompt": "Add one.", "max_tokens": 4})
        assert r.status_code == 200 and len(r.json()["choices"]) == 1
        assert "nl2code playground" in httpx.get(url + "/", timeout=5).text
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_bad_run_dir_is_one_line_error(tmp_path, capsys):
    assert cli.main(["serve", "--run", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nl2code serve: error:") and "missing" in err and "\n" not in err


def test_infill_on_a_model_without_infilling_is_a_clear_400(server):
    url, app = server
    r = post(url, {"prompt": "def f(x):\n", "suffix": "\n    return y\n", "max_tokens": 8})
    assert r.status_code == 400, r.text
    assert "infill" in r.json()["error"]["message"]
    assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"
