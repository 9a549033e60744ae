"""The Prometheus client against a loopback HTTP server: auth, tenancy, errors, retries."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from costoperator.promclient import (
    PromAuth,
    PromClient,
    PromInvalidResultError,
    PromQueryError,
    PromUnavailableError,
    _fast_vector,
    parse_vector,
)

CANARY = "canary-token-7f3a9c"


class Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []
    replies: ClassVar[list[tuple[int, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        type(self).seen.append(dict(self.headers))
        status, body = type(self).replies.pop(0) if type(self).replies else (200, VECTOR)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if "gzip" in self.headers.get("Accept-Encoding", ""):  # as Prometheus does
            data = gzip.compress(data)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


VECTOR = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [{"metric": {"namespace": "a", "pod": "p"}, "value": [0, "2.5"]}],
    },
}


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.seen, Recorder.replies = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_bearer_token_is_read_from_the_file_and_rotation_is_picked_up(
    server: str, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text(CANARY + "\n")
    client = PromClient(server, PromAuth(bearer_token_file=token))
    result = client.query("up")
    assert result.samples[0].value == 2.5
    assert Recorder.seen[-1]["Authorization"] == f"Bearer {CANARY}"
    token.write_text("rotated-token")
    os.utime(token, (time.time() + 5, time.time() + 5))  # a new mtime, as a re-mounted secret
    client.query("up")
    assert Recorder.seen[-1]["Authorization"] == "Bearer rotated-token"


def test_basic_auth_and_tenant_header(server: str, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret")
    client = PromClient(
        server,
        PromAuth(
            basic_username="reader",
            basic_password_file=password,
            tenant_header="X-Scope-OrgID",
            tenant="team-a",
        ),
    )
    client.query("up")
    headers = Recorder.seen[-1]
    assert headers["Authorization"].startswith("Basic ")
    assert headers["X-Scope-OrgID"] == "team-a"


def test_errors_are_typed_and_never_carry_the_token(server: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(CANARY)
    client = PromClient(server, PromAuth(bearer_token_file=token), retries=1, backoff_s=0.01)
    Recorder.replies = [(400, {"status": "error", "errorType": "bad_data", "error": "parse error"})]
    with pytest.raises(PromQueryError, match="bad_data") as refused:
        client.query("sum(")
    Recorder.replies = [(503, {"status": "error"})] * 5
    with pytest.raises(PromUnavailableError) as unavailable:
        client.query("up")
    assert len(Recorder.seen) >= 3  # the 503 was retried (bounded)
    Recorder.replies = [
        (200, {"status": "success", "data": {"resultType": "matrix", "result": []}})
    ]
    with pytest.raises(PromInvalidResultError):
        client.query("up[5m]")
    dead = PromClient(
        "http://127.0.0.1:1", PromAuth(bearer_token_file=token), retries=0, connect_timeout_s=0.5
    )
    with pytest.raises(PromUnavailableError) as unreachable:
        dead.query("up")
    for exc in (refused.value, unavailable.value, unreachable.value):
        assert CANARY not in str(exc)
        assert CANARY not in repr(exc.__cause__ or "")


def test_warnings_mark_a_result_partial(server: str) -> None:
    Recorder.replies = [(200, {**VECTOR, "warnings": ["store unavailable"]})]
    result = PromClient(server).query("up")
    assert result.partial
    assert result.samples


def test_answers_are_uncompressed_unless_gzip_is_asked_for(server: str) -> None:
    """requests asks for gzip by default and Prometheus then compresses every answer: CPU on
    both ends for bandwidth an in-cluster network does not need."""
    plain = PromClient(server).query("up")
    assert Recorder.seen[-1]["Accept-Encoding"] == "identity"
    compressed = PromClient(server, gzip=True).query("up")
    assert "gzip" in Recorder.seen[-1]["Accept-Encoding"]
    assert plain == compressed
    assert plain.samples[0].value == 2.5


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param([{"metric": {"pod": f"p{i}"}, "value": [0, f"{i}.5"]} for i in range(50)]),
        pytest.param([{"metric": {"pod": "a"}, "value": [0, "NaN"]}], id="nan"),
        pytest.param([{"metric": {"pod": "a"}, "value": [0, "+Inf"]}], id="inf"),
        pytest.param([{"metric": {"pod": "a"}, "value": [0, " 1"]}], id="float-with-space"),
        pytest.param([{"metric": {"pod": "a"}}, {"value": [0, "1"]}], id="missing-fields"),
        pytest.param([{"metric": {"pod": "a"}, "value": [0, "1"]}] * 2, id="duplicate"),
        pytest.param(
            [{"metric": {"a": "x"}, "value": [0, "1"]}, {"metric": {"b": "x"}, "value": [0, "2"]}],
            id="same-values-other-names",
        ),
        pytest.param([{"metric": {"pod": 7}, "value": [0, "1"]}], id="non-string-label"),
        pytest.param([{"metric": {"pod": "a"}, "histogram": [0, {}]}], id="native-histogram"),
    ],
)
def test_every_answer_parses_as_the_checked_path_does(
    server: str, rows: list[dict[str, Any]]
) -> None:
    """Regular answers are decoded by msgspec straight into samples; anything else goes
    through `json` and `parse_vector`. Either way the result is the checked path's."""
    body = {"status": "success", "data": {"resultType": "vector", "result": rows}}
    Recorder.replies = [(200, body)]
    got = PromClient(server).query("up")
    samples, rejected = parse_vector(rows)
    assert got.samples == samples
    assert got.rejected == rejected


def test_regular_answers_take_the_msgspec_path_and_irregular_ones_do_not() -> None:
    regular = {"status": "success", "data": {"resultType": "vector", "result": VECTOR_ROWS}}
    assert _fast_vector(json.dumps(regular).encode()) is not None
    nan = [{"metric": {"pod": "a"}, "value": [0, "NaN"]}]
    for body in (
        {"status": "success", "data": {"resultType": "vector", "result": nan}},
        {"status": "success", "data": {"resultType": "scalar", "result": [0, "1"]}},
        {"status": "error", "errorType": "bad_data", "error": "x"},
    ):
        assert _fast_vector(json.dumps(body).encode()) is None


VECTOR_ROWS = [{"metric": {"namespace": "a", "pod": f"p{i}"}, "value": [0, "1"]} for i in range(9)]
