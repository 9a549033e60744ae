"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real Prometheus.

Every request is forwarded as it came (method, path, body, headers) and the answer is passed
back, unless a fault is set:

- `delay_s`: wait this long before forwarding (a slow Prometheus, past the client's timeout);
- `status`: answer with this HTTP status and an error body instead of forwarding (503 ...);
- `warnings`: add these to a successful answer's `warnings` (a partial answer, as Thanos and
  Prometheus' remote read give);
- `value`: replace every sample's value of a successful vector answer with this string
  ("NaN", "+Inf", "-Inf", "abc") — on the first `value_rows` rows only when that is set;
- `empty`: answer every query with an empty vector;
- `down`: close the connection without an answer (a Prometheus that died mid-request).

`seen_authorization` records the Authorization headers it saw, so a test can check that
credentials reached Prometheus and nowhere else.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Faults:
    delay_s: float = 0.0
    status: int | None = None
    warnings: tuple[str, ...] = ()
    value: str | None = None
    value_rows: int | None = None
    empty: bool = False
    down: bool = False


@dataclass
class FaultProxy:
    upstream: str
    faults: Faults = field(default_factory=Faults)
    requests: int = 0
    seen_authorization: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def set(self, **faults: Any) -> None:
        """Replace every fault at once (unset ones go back to none)."""
        self.faults = Faults(**faults)

    def __enter__(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def _forward(self) -> None:
                proxy.requests += 1
                faults = proxy.faults
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if auth := self.headers.get("Authorization"):
                    proxy.seen_authorization.append(auth)
                if faults.down:
                    self.close_connection = True
                    return
                if faults.delay_s:
                    time.sleep(faults.delay_s)
                if faults.status is not None:
                    self._answer(faults.status, {"status": "error", "error": "injected"})
                    return
                request = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body if self.command == "POST" else None,
                    method=self.command,
                    headers={
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() in ("content-type", "accept", "authorization")
                    },
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, payload = response.status, json.loads(response.read())
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, json.loads(exc.read() or b"{}")
                except OSError:  # Prometheus is down: what a Service or load balancer says
                    self._answer(502, {"status": "error", "error": "upstream unreachable"})
                    return
                if status == 200 and payload.get("status") == "success":
                    payload = self._tamper(payload, faults)
                self._answer(status, payload)

            def _tamper(self, payload: dict[str, Any], faults: Faults) -> dict[str, Any]:
                data = payload.get("data") or {}
                if faults.empty and data.get("resultType") == "vector":
                    data["result"] = []
                if faults.value is not None and data.get("resultType") == "vector":
                    rows = data.get("result") or []
                    for row in rows[: faults.value_rows]:
                        row["value"] = [row["value"][0], faults.value]
                if faults.warnings:
                    payload["warnings"] = [*payload.get("warnings", []), *faults.warnings]
                return payload

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): nothing to answer

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
