"""An InfluxDB 2 HTTP endpoint that can be up, answer 500, or refuse connections, then recover.

`refuse` really closes the listening socket (connection refused), and `up`/`error` reopen it on
the same port, so the agents' client sees what it would see if InfluxDB were restarted. Points
written while up are kept, so a test can see writes resume after recovery.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Mode = Literal["up", "error", "refuse", "echo_auth"]


class FakeInflux:
    def __init__(self) -> None:
        self.mode: Mode = "up"
        self.lines: list[tuple[float, str]] = []  # (arrival time, line protocol)
        self.failed_writes = 0
        self.auth_headers: set[str] = set()
        self.bodies: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._open()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _reply(
                self, status: int, body: bytes = b"", ctype: str = "application/json"
            ) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # /health, /ping
                if self._refused():
                    return
                self._reply(200, b'{"status":"pass"}')

            def _refused(self) -> bool:
                # Closing the listener is not enough: keep-alive connections would still be
                # served. Drop those too, as a restarted InfluxDB would.
                if fake.mode != "refuse":
                    return False
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return True

            def do_POST(self) -> None:
                if self._refused():
                    return
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.headers.get("content-encoding") == "gzip":
                    raw = gzip.decompress(raw)
                text = raw.decode(errors="replace")
                with fake._lock:
                    fake.auth_headers.add(self.headers.get("authorization", ""))
                    fake.bodies.append(text)
                    error = fake.mode == "error"
                    if self.path.startswith("/api/v2/write"):
                        if error:
                            fake.failed_writes += 1
                        else:
                            now = time.time()
                            fake.lines += [(now, ln) for ln in text.splitlines() if ln.strip()]
                if fake.mode == "echo_auth":
                    # A hostile or buggy server echoing the credentials back in its error.
                    echoed = self.headers.get("authorization", "").encode()
                    self._reply(
                        401, b'{"code":"unauthorized","message":"bad token ' + echoed + b'"}'
                    )
                elif error:
                    self._reply(500, b'{"code":"internal error","message":"injected fault"}')
                elif self.path.startswith("/api/v2/write"):
                    self._reply(204)
                else:  # a Flux query: no data (readers fall back to the broker)
                    self._reply(200, b"", "text/csv; charset=utf-8")

        return Handler

    def _open(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def _close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def set_mode(self, mode: Mode) -> None:
        with self._lock:
            self.mode = mode
        if mode == "refuse":
            self._close()
        elif self._server is None:
            self._open()

    def lines_since(self, when: float) -> list[str]:
        with self._lock:
            return [line for t, line in self.lines if t >= when]

    def __enter__(self) -> FakeInflux:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()
