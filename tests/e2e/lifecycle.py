"""Bringing the compose stack up and down for the e2e suite, written to be proven offline.

The defect this replaces: pytest-docker ran `up` before its own try/finally, so a failed start
left containers, ports and volumes behind and printed no logs. Here `brought_up` owns the whole
span from `up` on: any failure (a compose error, a setup job exiting non-zero, a timeout, Ctrl-C)
dumps every service's logs first, and `down --volumes` runs in a `finally`.
tests/stack/test_e2e_helpers.py drives it with a fake compose.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from tests.e2e.states import ready_problem, setup_job_failure

DOWN = ("down", "--volumes", "--remove-orphans", "--timeout", "20")


class StackError(Exception):
    """The stack could not be built, started or made ready."""


class ComposeStack(Protocol):
    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]: ...

    def states(self) -> list[dict[str, Any]]: ...

    def dump_logs(self, why: str) -> Path: ...


def run_or_fail(stack: ComposeStack, what: str, args: Sequence[str], timeout: float) -> None:
    try:
        done = stack.compose(*args, timeout=timeout)
    except subprocess.TimeoutExpired:
        took = f"took over {timeout:.0f} s"
        raise StackError(f"`docker compose {' '.join(args)}` ({what}) {took}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise StackError(f"`docker compose {' '.join(args)}` ({what}) failed:\n{tail}")


def prepare_images(stack: ComposeStack, pull: Sequence[str], timeout: float) -> None:
    """Pull the pinned images and build the agent image, each under `timeout`: kept apart from
    start-up and test time, so a slow network is never mistaken for a broken stack."""
    run_or_fail(stack, "pull", ["pull", "--quiet", *pull], timeout)
    run_or_fail(stack, "build", ["build", "--quiet"], timeout)


@contextmanager
def brought_up(
    stack: ComposeStack,
    *,
    up_timeout: float,
    ready_timeout: float,
    keep: bool = False,
    poll_seconds: float = 3.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """`up`, wait until setup jobs exited 0 and every replica runs, yield; always `down -v`.

    Raises StackError naming the problem and the file holding every service's logs.
    """
    try:
        try:
            run_or_fail(stack, "up", ["up", "--detach", "--no-build"], up_timeout)
            deadline = clock() + ready_timeout
            while (problem := ready_problem(stack.states())) is not None:
                failed = setup_job_failure(stack.states())
                if failed:
                    raise StackError(failed)
                if clock() >= deadline:
                    raise StackError(f"not ready within {ready_timeout:.0f} s: {problem}")
                sleep(poll_seconds)
        except (StackError, subprocess.TimeoutExpired, OSError, ValueError) as exc:
            path = stack.dump_logs(f"stack start failed: {exc}")
            raise StackError(f"{exc}\nevery service's logs: {path}") from exc
        yield
    finally:
        if not keep:
            stack.compose(*DOWN, timeout=300)
