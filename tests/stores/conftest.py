"""A real redis-server for the session, and each store kind opened fresh for a test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from framework0_errors.stores.select import Store, open_store

STARTUP = 10.0
KINDS = ["memory", "sqlite", "redis"]
DURABLE = ["sqlite", "redis"]


@dataclass(frozen=True)
class RedisServer:
    """A redis-server this test session started on a free local port."""

    process: subprocess.Popen[bytes]
    port: int

    def url(self, db: int = 0) -> str:
        """Return the ``redis://`` URL of database ``db``."""
        return f"redis://127.0.0.1:{self.port}/{db}"


def redis_server_binary() -> str:
    """Return the path of ``redis-server``, failing the test (never skipping) without it."""
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail(
            "redis-server is not on PATH; the Redis store is tested against a real server."
            " Install it (apt-get install -y redis-server, or brew install redis) and rerun.",
            pytrace=False,
        )
    return found


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(tmp: Path) -> RedisServer:
    """Start a throwaway redis-server (no persistence) and wait until it answers PING."""
    port = free_port()
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + STARTUP
    try:
        while True:
            try:
                client.ping()
                return RedisServer(process, port)
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stop_redis(process)
                    pytest.fail(f"redis-server did not start on port {port}", pytrace=False)
                time.sleep(0.01)
    finally:
        client.close()


def stop_redis(process: subprocess.Popen[bytes]) -> None:
    """Stop a redis-server started by :func:`start_redis`."""
    process.terminate()
    try:
        process.wait(timeout=STARTUP)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole session, stopped at the end."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    stop_redis(server.process)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an emptied database on the session's server."""
    client = redis.Redis(port=redis_server.port)
    client.flushdb()
    client.close()
    return redis_server.url()


def store_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return a URL opening an empty store of ``kind``."""
    if kind == "redis":
        return str(request.getfixturevalue("redis_url"))
    if kind == "sqlite":
        return f"sqlite:{tmp_path / 'state' / 'state.db'}"
    return "memory:"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each store kind in turn."""
    return str(request.param)


@pytest.fixture
def url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL opening an empty store of the current kind."""
    return store_url(kind, request, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    """An empty store of the current kind, closed after the test."""
    opened = open_store(url)
    yield opened
    opened.close()


@pytest.fixture(params=DURABLE)
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL opening an empty durable store (SQLite, then Redis) shared by processes."""
    return store_url(str(request.param), request, tmp_path)


@pytest.fixture
def spare_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which the test may stop."""
    server = start_redis(tmp_path)
    yield server
    stop_redis(server.process)
