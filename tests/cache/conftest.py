"""Fixtures of the cache tests: a real redis-server on a free loopback port.

Redis tests run against the real server, never a fake, because what matters (PX expiry,
SCAN patterns, what happens when the server dies) is the server's behaviour. When
``redis-server`` or the ``redis`` package is missing they are skipped with the reason;
``scripts/setup.sh`` installs the server where it can.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import pytest

_NO_SERVER = ("redis-server is not installed: run scripts/setup.sh as root or with sudo, "
              "or `sudo apt-get install redis-server`, to run the Redis tests")


@dataclass(frozen=True, slots=True)
class RedisServer:
    """A running redis-server subprocess and its URL."""

    process: subprocess.Popen[bytes]
    url: str

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _free_port() -> int:
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


def _start_once() -> RedisServer | None:
    """A server on a fresh port, or None if it exited (e.g. the port was taken)."""
    port = _free_port()
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        if _answers_ping(url):
            return RedisServer(process, url)
        time.sleep(0.02)
    process.kill()
    process.wait(timeout=10)
    return None


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A redis-server for the duration of the block; skips the test if there is none."""
    if shutil.which("redis-server") is None:
        pytest.skip(_NO_SERVER)
    pytest.importorskip("redis", reason="the redis package is not installed (pip install redis)")
    for _ in range(3):  # the free port may be taken between probing and binding
        server = _start_once()
        if server is not None:
            break
    else:
        pytest.fail("redis-server did not start answering PING within 10 s")
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a redis-server shared by the session (no persistence, loopback only)."""
    with running_redis() as server:
        yield server.url


@pytest.fixture
def redis_server_factory() -> Callable[[], AbstractContextManager[RedisServer]]:
    """Starts a separate server, for tests that kill it."""
    return running_redis


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test alone, so tests sharing the server never meet."""
    return f"test-{uuid.uuid4().hex[:12]}:"
