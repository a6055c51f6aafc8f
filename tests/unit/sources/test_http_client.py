"""`HttpClient.warm_up`: one download inside the process, and nothing else changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from symvault.sources.addresses import AddressPolicy
from symvault.sources.base import DownloadOutcome, DownloadStatus
from symvault.sources.http_client import HttpClient, HttpLimits
from tests.support.symbol_server import SymbolServer


def _limits(max_size: int = 1 << 30) -> HttpLimits:
    return HttpLimits(
        connect_timeout=2.0,
        streaming_timeout=2.0,
        total_timeout=5.0,
        max_size=max_size,
        retries=0,
        host_failure_limit=5,
        host_block_time=60.0,
    )


@pytest.fixture
def server() -> Iterator[SymbolServer]:
    with SymbolServer() as running:
        running.put("a/file", b"contents of a file")
        yield running


def test_warm_up_downloads_inside_the_process() -> None:
    client = HttpClient(_limits(), AddressPolicy(allow_reserved=False))
    try:
        assert client.warm_up()
    finally:
        client.close()


def test_warm_up_does_not_depend_on_the_download_size_limit() -> None:
    client = HttpClient(_limits(max_size=16), AddressPolicy(allow_reserved=False))
    try:
        assert client.warm_up()
    finally:
        client.close()


def _warm_up_then_download(allow_reserved: bool, url: str, target: Path) -> DownloadOutcome:
    client = HttpClient(_limits(), AddressPolicy(allow_reserved=allow_reserved))
    try:
        assert client.warm_up()
        return client.download(url, target)
    finally:
        client.close()


def test_the_address_policy_holds_after_warm_up(tmp_path: Path, server: SymbolServer) -> None:
    outcome = _warm_up_then_download(False, server.url_for("a/file"), tmp_path / "file")
    assert outcome.status is DownloadStatus.ERROR
    assert "private or reserved address" in (outcome.details or "")
    assert sum(server.hits.values()) == 0
    assert not (tmp_path / "file").exists()


def test_downloads_after_warm_up_work(tmp_path: Path, server: SymbolServer) -> None:
    outcome = _warm_up_then_download(True, server.url_for("a/file"), tmp_path / "file")
    assert outcome.status is DownloadStatus.OK
    assert (tmp_path / "file").read_bytes() == b"contents of a file"
    assert server.hits_for("a/file") == 1
