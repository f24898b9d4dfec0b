"""The management client against a fake transport: paths, auth, accepted statuses, and errors
that never carry the password."""

from __future__ import annotations

import re
from base64 import b64decode
from typing import Any

import pytest

from agents.core.management import (
    ApiError,
    ApiStatusError,
    ManagementClient,
    Response,
    Unreachable,
    UrllibHttp,
)

PASSWORD = "Hunter2-Management-Secret"


class FakeHttp:
    """Answers from a table keyed by (method, path); records every request."""

    def __init__(self, answers: dict[tuple[str, str], Response]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []

    def request(self, method: str, url: str, headers: dict[str, str], body: Any = None) -> Response:
        self.requests.append((method, url, headers, body))
        path = url.removeprefix("http://rabbit:15672")
        return self.answers.get((method, path), Response(404, {"error": "Object Not Found"}))


def client(answers: dict[tuple[str, str], Response]) -> tuple[ManagementClient, FakeHttp]:
    http = FakeHttp(answers)
    return ManagementClient("http://rabbit:15672/", "admin", PASSWORD, http=http), http


def test_calls_carry_basic_auth_and_quote_names() -> None:
    api, http = client({("PUT", "/api/vhosts/%2F"): Response(201, None)})
    api.put("/api/vhosts/%2F")
    (method, url, headers, body) = http.requests[0]
    assert (method, url, body) == ("PUT", "http://rabbit:15672/api/vhosts/%2F", {})
    scheme, token = headers["Authorization"].split()
    assert scheme == "Basic" and b64decode(token).decode() == f"admin:{PASSWORD}"


def test_create_vhost_grants_full_permissions_to_the_client_user() -> None:
    api, http = client(
        {
            ("PUT", "/api/vhosts/team%2Fone"): Response(201, None),
            ("PUT", "/api/permissions/team%2Fone/admin"): Response(201, None),
        }
    )
    api.create_vhost("team/one")
    assert [(m, u.rsplit("15672", 1)[1], b) for m, u, _, b in http.requests] == [
        ("PUT", "/api/vhosts/team%2Fone", {}),
        (
            "PUT",
            "/api/permissions/team%2Fone/admin",
            {"configure": ".*", "write": ".*", "read": ".*"},
        ),
    ]


def test_a_refused_call_names_method_path_and_status_never_the_password() -> None:
    echo = Response(400, {"reason": f"bad password {PASSWORD}"})
    api, _ = client({("PUT", "/api/users/agents"): echo})
    with pytest.raises(ApiStatusError) as caught:
        api.put_user("agents", PASSWORD)
    assert caught.value.status == 400
    assert "PUT /api/users/agents answered 400" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(api)
    assert isinstance(caught.value, OSError)  # callers guarding I/O with `except OSError`


def test_deleting_what_is_gone_is_not_an_error() -> None:
    api, http = client({("DELETE", "/api/connections/c%201"): Response(204, None)})
    assert api.close_connection("c 1", reason="fault injection") is True
    assert http.requests[0][2]["X-Reason"] == "fault injection"
    assert api.delete_vhost("never-made") is False
    with pytest.raises(ApiStatusError, match="404"):
        api.delete("/api/users/nobody")


def test_an_unreachable_server_is_one_error_type() -> None:
    api = ManagementClient("http://127.0.0.1:9", "admin", PASSWORD, http=UrllibHttp(timeout=2))
    with pytest.raises(
        Unreachable, match=re.escape("GET http://127.0.0.1:9/api/overview")
    ) as caught:
        api.overview()
    assert PASSWORD not in str(caught.value)
    assert isinstance(caught.value, ApiError)
    assert api.reachable() is False
