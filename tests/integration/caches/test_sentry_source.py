"""A `sentry` source reading from another symvault: the real server, uploads by sentry-cli."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from symvault.caching.entries import EntryStatus
from symvault.model.sources import SourceConfig, parse_sources
from tests.conftest import fixture_path
from tests.integration.caches.conftest import CrashModules, World
from tests.support.sentry_cli import SentryCli
from tests.support.server import ServerProcess
from tests.support.symbol_server import Reply, SymbolServer

ORG = "default"


def sentry_source(server: ServerProcess, project: str, token: str | None = None) -> SourceConfig:
    url = f"{server.url}/api/0/projects/{ORG}/{project}/files/dsyms/"
    return parse_sources(
        [{"type": "sentry", "id": "upstream", "url": url, "token": token or server.token}]
    )[0]


@pytest.fixture(scope="module")
def uploaded(server: ServerProcess, fixtures: dict[str, Any]) -> str:
    """A project holding the crash module's stripped executable and debug companion."""
    assert server.token is not None
    project = f"sentry-source-{uuid.uuid4().hex[:8]}"
    paths = [fixture_path(fixtures, key) for key in ("crash_elf", "crash_elf_debug")]
    result = SentryCli(server.url, server.token).upload(ORG, project, *paths)
    assert result.returncode == 0, result.stderr
    return project


def test_symvault_reads_from_another_symvault(
    world: World, server: ServerProcess, uploaded: str, crash: CrashModules
) -> None:
    caches = world.caches()
    config = sentry_source(server, uploaded)
    result = caches.symcaches.fetch(crash.elf, [config], "project-7")
    assert result.ok
    assert not result.fallback, "the debug companion was not chosen"
    assert result.source_id == "upstream"
    assert result.entry is not None
    location = result.entry.info["object"]["location"]
    assert location.startswith(f"{server.url}/api/0/projects/{ORG}/{uploaded}/files/dsyms/?id=")
    assert result.entry.info["object"]["features"] == ["debug", "symtab"]
    assert "project-7" in result.entry.path.parts, "a private source shared across scopes"

    # Unwind info comes from the other file of the same module.
    cfi = caches.cficaches.fetch(crash.elf, [config], "project-7")
    assert cfi.ok
    assert cfi.entry is not None
    assert cfi.entry.info["object"]["location"] != location
    assert world.metric("symvault_source_downloads_total", source_type="sentry", outcome="ok") == 2


def test_modules_the_other_symvault_lacks_are_not_found(
    world: World, server: ServerProcess, uploaded: str, crash: CrashModules
) -> None:
    result = world.caches().symcaches.fetch(crash.pe, [sentry_source(server, uploaded)], "global")
    assert result.status is EntryStatus.NOT_FOUND
    assert result.candidates == []


@pytest.mark.parametrize(
    "listing",
    [b'{"files": []}', b"<html>busy</html>", b"[" * 100_000 + b"]" * 100_000],
    ids=["an object", "not json", "nested too deeply"],
)
def test_a_listing_that_is_not_a_json_list(
    world: World, symbols: SymbolServer, crash: CrashModules, listing: bytes
) -> None:
    symbols.misbehave("listing/", Reply.file(listing))
    config = parse_sources(
        [{"type": "sentry", "id": "upstream", "url": f"{symbols.url}/listing/", "token": "t"}]
    )[0]
    result = world.caches().symcaches.fetch(crash.elf, [config], "global")
    assert not result.ok
    assert [(c.status.value, c.details) for c in result.candidates] == [
        ("error", "the listing is not a JSON list")
    ]
