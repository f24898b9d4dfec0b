"""A well-behaved fake of the Anthropic Messages API on 127.0.0.1, for the real SDK through
ANTHROPIC_BASE_URL. It answers each prompt with the seed's rule-based answer, so recording against
it exercises exactly the path `nox -s record` takes against the real API (SDK, HTTP, vcrpy's
recorder and its filters) without a key or a cent."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agents.core.ai import cassettes as cs
from agents.devtools.seed import synthetic_answer


class FakeMessagesAPI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.url = ""

    def answer(self, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append({"headers": headers, "body": body})
        prompt = cs.prompt_of(body)
        text = json.dumps(synthetic_answer(prompt))
        return {
            "id": "msg_fake_" + hashlib.sha256(prompt.encode()).hexdigest()[:20],
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": len(prompt) // 4 + 60, "output_tokens": len(text) // 4},
        }


@contextmanager
def fake_messages_api() -> Iterator[FakeMessagesAPI]:
    api = FakeMessagesAPI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length))
            if self.path.split("?")[0] != "/v1/messages":
                self.send_response(404)
                self.end_headers()
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            payload = json.dumps(api.answer(headers, body)).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("request-id", "req_fake")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
