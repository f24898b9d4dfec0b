"""HTTP JSON APIs at the edge: one small transport, and the RabbitMQ management client on it.

The management API (the `rabbitmq_management` plugin, usually on :15672) is what AMQP cannot do:
create vhosts, users and permissions, list and close connections, read a queue's unacked count.
Provisioning (`agents.provision`), the benchmarks and the fault tests all go through
`ManagementClient`; the agents themselves never need it (they read queue depths over AMQP, so
they keep working where the plugin is off).

Failures are translated here, once, into `ApiError`: `Unreachable` when no HTTP answer came,
`ApiStatusError` (with `.status`) when the answer was not one the caller accepts. Messages name
the method and the path, never a credential. `ApiError` is an `OSError`, as `requests`' errors
are, so code that guards I/O with `except OSError` keeps working.

The transport is one method (`Http.request`), so a test hands the client a fake (httpx's
MockTransport idea) and the provisioning tests run against pytest-httpserver.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agents.core.logs import Redactor, display_url


class ApiError(OSError):
    """An HTTP API refused a request or could not be reached. Never contains a secret."""


class Unreachable(ApiError):
    """No HTTP answer (connection refused, DNS, timeout): worth retrying while a server starts."""


class ApiStatusError(ApiError):
    """The server answered with a status the caller does not accept."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------
# Transport


@dataclass(frozen=True)
class Response:
    status: int
    body: Any  # parsed JSON, or the text when the body is not JSON, or None when empty


class Http(Protocol):
    def request(
        self, method: str, url: str, headers: dict[str, str], body: Any = None
    ) -> Response: ...


class UrllibHttp:
    """JSON over HTTP with the standard library: nothing here needs more. Every status is a
    `Response`; only a missing answer raises (`Unreachable`)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout

    def request(self, method: str, url: str, headers: dict[str, str], body: Any = None) -> Response:
        data = None if body is None else json.dumps(body).encode()
        # Settings restrict URLs to http(s); this guards direct callers too.
        if not url.startswith(("http://", "https://")):
            raise ApiError(f"not an http(s) URL: {display_url(url)}")
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
        for key, value in {"Content-Type": "application/json", **headers}.items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                return Response(reply.status, parse_body(reply.read()))
        except urllib.error.HTTPError as exc:
            return Response(exc.code, parse_body(exc.read()))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"{method} {display_url(url)}: {reason}") from None


def parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()


def error_text(body: Any) -> str:
    """The server's own explanation from an error body, shortened for one line."""
    if isinstance(body, dict):
        return str(body.get("message") or body.get("reason") or body.get("error") or body)[:200]
    return str(body)[:200]


# --------------------------------------------------------------------------------------------
# The RabbitMQ management client


def quote(name: str) -> str:
    """A vhost, user, queue or connection name as one path segment (`/` is the default vhost)."""
    return urllib.parse.quote(name, safe="")


FULL_PERMISSIONS = {"configure": ".*", "write": ".*", "read": ".*"}
OK = (200, 201, 204)


class ManagementClient:
    """The management HTTP API as one user (Basic auth).

    `request` returns any answer as a `Response`; `call` (and `get`, `put`, `delete`) returns
    the parsed body of an accepted answer and raises `ApiStatusError` otherwise.
    """

    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        *,
        http: Http | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user = user
        self._scrub = Redactor([password])
        self._auth = {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}
        self._http = http or UrllibHttp(timeout)

    def __repr__(self) -> str:
        return f"ManagementClient({self.base_url!r}, user={self.user!r})"

    # --- raw calls ----------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        # No credential can reach an Unreachable: the URL has none (`where` drops userinfo).
        return self._http.request(
            method, self.base_url + path, {**self._auth, **(headers or {})}, body
        )

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        ok: Sequence[int] = OK,
    ) -> Any:
        return self._accepted(method, path, self.request(method, path, body, headers), ok)

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def put(self, path: str, body: Any = None) -> Any:
        return self.call("PUT", path, {} if body is None else body)

    def delete(self, path: str, *, missing_ok: bool = False, reason: str | None = None) -> bool:
        """True when deleted, False when it was already gone (only with `missing_ok`)."""
        headers = {"X-Reason": reason} if reason else None
        ok = (*OK, 404) if missing_ok else OK
        reply = self.request("DELETE", path, None, headers)
        self._accepted("DELETE", path, reply, ok)
        return reply.status != 404

    # --- what the project uses ------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        found: dict[str, Any] = self.get("/api/overview")
        return found

    def reachable(self) -> bool:
        """True when the API answers this user with 200."""
        try:
            return self.request("GET", "/api/overview").status == 200
        except ApiError:
            return False

    def create_vhost(self, name: str, grant: str | None = None) -> None:
        """Create `name` (idempotent) and give `grant` (default: this client's user) full
        permissions on it."""
        self.put(f"/api/vhosts/{quote(name)}")
        self.set_permissions(name, grant or self.user, **FULL_PERMISSIONS)

    def delete_vhost(self, name: str) -> bool:
        """Delete `name` with everything in it; False when it did not exist."""
        return self.delete(f"/api/vhosts/{quote(name)}", missing_ok=True)

    @contextlib.contextmanager
    def temporary_vhost(self, prefix: str = "test") -> Iterator[str]:
        """A fresh vhost for this user, deleted on exit (best effort: the server may be gone)."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.create_vhost(name)
        try:
            yield name
        finally:
            with contextlib.suppress(ApiError):
                self.delete_vhost(name)

    def set_permissions(
        self, vhost: str, user: str, *, configure: str, write: str, read: str
    ) -> None:
        body = {"configure": configure, "write": write, "read": read}
        self.put(f"/api/permissions/{quote(vhost)}/{quote(user)}", body)

    def put_user(self, name: str, password: str, tags: str = "") -> None:
        """Create `name` or set its password and tags."""
        self.put(f"/api/users/{quote(name)}", {"password": password, "tags": tags})

    def delete_user(self, name: str) -> bool:
        return self.delete(f"/api/users/{quote(name)}", missing_ok=True)

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        """A queue's statistics (`messages_ready`, `messages_unacknowledged`, `message_stats`,
        ...), which the server refreshes every few seconds."""
        found: dict[str, Any] = self.get(f"/api/queues/{quote(vhost)}/{quote(name)}")
        return found

    def queues(self, vhost: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get(f"/api/queues/{quote(vhost)}")
        return found

    def connections(self, vhost: str) -> list[dict[str, Any]]:
        """The vhost's AMQP connections (listed a few seconds after they open)."""
        found: list[dict[str, Any]] = self.get(f"/api/vhosts/{quote(vhost)}/connections")
        return found

    def close_connection(self, name: str, reason: str = "closed by management") -> bool:
        """Force-close one connection; False when it was already gone."""
        return self.delete(f"/api/connections/{quote(name)}", missing_ok=True, reason=reason)

    def _accepted(self, method: str, path: str, reply: Response, ok: Sequence[int]) -> Any:
        if reply.status not in ok:
            detail = self._scrub(error_text(reply.body))
            raise ApiStatusError(
                f"RabbitMQ management {method} {path} answered {reply.status}: {detail}",
                reply.status,
            )
        return reply.body
