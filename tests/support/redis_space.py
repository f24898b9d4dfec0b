"""Real Redis (the shared spend ledger across hosts) under a key prefix no other test uses."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.rabbit import skip_or_fail

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class RedisSpace:
    """A Redis connection and a key prefix no other test (or helper) uses."""

    client: Any
    prefix: str
    url: str


@contextmanager
def redis_space(url: str = REDIS_URL) -> Iterator[RedisSpace]:
    """A fresh key prefix whose keys are deleted afterwards (never FLUSHALL: the server is
    shared). Skips when Redis is down, and fails under CI, where it must be there."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis not reachable at {url} ({exc}); .ci/run starts redis-server")
    prefix = f"test-ledger-{uuid.uuid4().hex[:12]}"
    try:
        yield RedisSpace(client, prefix, url)
    finally:
        for key in client.scan_iter(match=f"{{{prefix}}}*", count=1000):
            client.delete(key)
        client.close()
