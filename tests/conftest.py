"""Shared fixtures: built debug files, a running server, the real sentry-cli."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.build import build_fixtures
from tests.support.sentry_cli import SentryCli
from tests.support.server import ServerProcess

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "build"


@pytest.fixture(scope="session")
def fixtures() -> dict[str, Any]:
    """The manifest of debug files built from tests/fixtures/src (built once, then cached)."""
    return build_fixtures(FIXTURE_DIR)


def fixture_path(fixtures: dict[str, Any], key: str) -> Path:
    entry = fixtures.get(key)
    if not entry:
        pytest.skip(f"fixture {key} was not built on this machine")
    return Path(entry["path"])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by tests that do not care about its configuration.

    Tests keep out of each other's way by using their own projects.
    """
    process = ServerProcess(tmp_path_factory.mktemp("shared") / "data")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Starts servers with their own data directory and configuration."""
    started: list[ServerProcess] = []

    def start(config: dict[str, Any] | None = None, name: str = "data") -> ServerProcess:
        process = ServerProcess(tmp_path / name, config)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def sentry_cli(server: ServerProcess) -> SentryCli:
    assert server.token is not None
    return SentryCli(server.url, server.token)


@pytest.fixture
def project(request: pytest.FixtureRequest) -> str:
    """A project slug unique to the test."""
    name = request.node.name.lower()
    slug = "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")
    return slug[:40] + f"-{abs(hash(request.node.nodeid)) % 10_000}"
