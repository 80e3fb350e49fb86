"""Fixtures of the cost tests: a real redis-server on a free loopback port.

The same approach as ``tests/cache/conftest.py`` (copied, not imported: test folders are
separate packages). Budgets are tested against the real server, never a fake, because what
matters is the server's atomicity (Lua scripts, HSETNX) under concurrent clients. Without
``redis-server`` or the ``redis`` package the Redis tests are skipped with the reason.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

_NO_SERVER = ("redis-server is not installed: run scripts/setup.sh as root or with sudo, "
              "or `sudo apt-get install redis-server`, to run the Redis tests")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_ping(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _start_once() -> tuple[subprocess.Popen[bytes], str] | None:
    """A server on a fresh port, or None if it exited (e.g. the port was taken)."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        if _answers_ping(url):
            return process, url
        time.sleep(0.02)
    process.kill()
    process.wait(timeout=10)
    return None


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a redis-server shared by the session (no persistence, loopback only)."""
    if shutil.which("redis-server") is None:
        pytest.skip(_NO_SERVER)
    pytest.importorskip("redis", reason="the redis package is not installed (pip install redis)")
    for _ in range(3):  # the free port may be taken between probing and binding
        started = _start_once()
        if started is not None:
            break
    else:
        pytest.fail("redis-server did not start answering PING within 10 s")
    process, url = started
    try:
        yield url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test alone, so tests sharing the server never meet."""
    return f"test-budget-{uuid.uuid4().hex[:12]}:"
