"""The request lifecycle over HTTP: waiting, pending, polling, expiry, the concurrency limit.

Requests are made slow on purpose: their debug file comes from a symbol server
that stalls before answering.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import ServerProcess
from tests.support.stacktraces import crash_frame, module_of, native_debug_path
from tests.support.symbol_server import Reply, SymbolServer

BASE = 0x7F00_0000_0000
RETENTION = 2.0
STALL = 2.5


@pytest.fixture(scope="module")
def lifecycle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One request at a time, results kept for 2 s, small JSON bodies."""
    config = {
        "max_concurrent_requests": 1,
        "connect_to_reserved_ips": True,
        "server": {"max_json_body": 64 * 1024},
        "symbolication": {"request_retention": RETENTION},
    }
    process = ServerProcess(tmp_path_factory.mktemp("lifecycle") / "data", config)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def client(lifecycle_server: ServerProcess) -> Iterator[httpx.Client]:
    with lifecycle_server.client() as http:
        yield http


def crash_debug(fixtures: dict[str, Any]) -> str:
    """Where the native layout keeps crash's debug companion (by its build id)."""
    return native_debug_path(fixtures, "crash_elf")


def slow_request(
    symbol_server: SymbolServer, fixtures: dict[str, Any], prefix: str, stall: float = STALL
) -> dict[str, Any]:
    """A request whose only debug file arrives after `stall` seconds."""
    data = Path(fixtures["crash_elf_debug"]["path"]).read_bytes()
    symbol_server.misbehave(f"{prefix}/{crash_debug(fixtures)}", Reply.stall(stall, data))
    return {
        "sources": [{"type": "http", "id": "slow", "url": symbol_server.url_for(prefix + "/")}],
        "modules": [module_of(fixtures, "crash_elf", BASE)],
        "stacktraces": [{"frames": [crash_frame(fixtures, "crash_elf", BASE)]}],
        "options": {"apply_source_context": False},
    }


def unique_prefix() -> str:
    return f"lifecycle-{uuid.uuid4().hex[:12]}"


def assert_pending(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "pending", body
    assert body["retry_after"] == 30
    request_id: str = body["request_id"]
    assert str(uuid.UUID(request_id)) == request_id
    return request_id


def assert_completed(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "completed", body
    (frame,) = body["stacktraces"][0]["frames"]
    assert frame["status"] == "symbolicated"
    assert frame["function"] == "crash_leaf_store"
    return body


def test_pending_pending_completed(
    client: httpx.Client, symbol_server: SymbolServer, fixtures: dict[str, Any]
) -> None:
    body = slow_request(symbol_server, fixtures, unique_prefix())
    started = time.monotonic()
    request_id = assert_pending(client.post("/symbolicate", json=body, params={"timeout": 0}))
    assert assert_pending(client.get(f"/requests/{request_id}", params={"timeout": 0})) == (
        request_id
    )
    assert time.monotonic() - started < STALL
    # Without a timeout the poll waits for the result.
    completed = assert_completed(client.get(f"/requests/{request_id}"))
    assert time.monotonic() - started >= STALL
    # A finished result can be polled again, with or without a timeout.
    assert client.get(f"/requests/{request_id}").json() == completed
    assert client.get(f"/requests/{request_id}", params={"timeout": 0}).json() == completed


def test_timeout_longer_than_the_work_returns_the_result(
    client: httpx.Client, symbol_server: SymbolServer, fixtures: dict[str, Any]
) -> None:
    body = slow_request(symbol_server, fixtures, unique_prefix(), stall=0.5)
    assert_completed(client.post("/symbolicate", json=body, params={"timeout": 30}))


def test_results_expire_after_their_retention(
    client: httpx.Client, fixtures: dict[str, Any], symbol_server: SymbolServer
) -> None:
    body = slow_request(symbol_server, fixtures, unique_prefix(), stall=0.5)
    request_id = assert_pending(client.post("/symbolicate", json=body, params={"timeout": 0}))
    assert_completed(client.get(f"/requests/{request_id}"))
    time.sleep(RETENTION / 2)
    assert_completed(client.get(f"/requests/{request_id}"))
    time.sleep(RETENTION / 2 + 0.5)
    assert client.get(f"/requests/{request_id}").status_code == 404


@pytest.mark.parametrize("request_id", [str(uuid.uuid4()), "not-a-uuid", "0" * 36])
def test_unknown_request_ids(client: httpx.Client, request_id: str) -> None:
    response = client.get(f"/requests/{request_id}")
    assert response.status_code == 404
    response = client.get(f"/requests/{request_id}", params={"timeout": 1})
    assert response.status_code == 404


@pytest.mark.parametrize("timeout", ["abc", "-1", "1.5", "1e3"])
def test_timeout_must_be_whole_seconds(client: httpx.Client, timeout: str) -> None:
    body = {"stacktraces": [], "modules": []}
    response = client.post("/symbolicate", json=body, params={"timeout": timeout})
    assert response.status_code == 400
    assert "timeout" in response.json()["detail"]
    response = client.get(f"/requests/{uuid.uuid4()}", params={"timeout": timeout})
    assert response.status_code == 400


def test_concurrency_limit(
    client: httpx.Client, symbol_server: SymbolServer, fixtures: dict[str, Any]
) -> None:
    body = slow_request(symbol_server, fixtures, unique_prefix())
    first = assert_pending(client.post("/symbolicate", json=body, params={"timeout": 0}))

    refused = client.post("/symbolicate", json=body)
    assert refused.status_code == 503
    assert refused.json() == {"detail": "maximum number of concurrent requests reached"}

    # Polling is not limited; once the first request is done, its slot is free again
    # (while its result is still kept).
    assert_completed(client.get(f"/requests/{first}"))
    assert_completed(client.post("/symbolicate", json=body))


def test_an_empty_request_completes_empty(client: httpx.Client) -> None:
    response = client.post("/symbolicate", json={})
    assert response.json() == {"status": "completed", "stacktraces": [], "modules": []}


class TestBodyLimit:
    def body_of_size(self, size: int) -> bytes:
        padding = "x" * (size - len(b'{"unknown":""}'))
        return ('{"unknown":"' + padding + '"}').encode()

    def test_at_the_limit_is_accepted(self, client: httpx.Client) -> None:
        response = client.post(
            "/symbolicate",
            content=self.body_of_size(64 * 1024),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text

    def test_over_the_limit(self, client: httpx.Client) -> None:
        response = client.post(
            "/symbolicate",
            content=self.body_of_size(64 * 1024 + 1),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 413
        assert "detail" in response.json()

    def test_over_the_limit_without_a_length(self, client: httpx.Client) -> None:
        body = self.body_of_size(256 * 1024)

        def pieces() -> Iterator[bytes]:
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        response = client.post(
            "/symbolicate", content=pieces(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413

    def test_mozilla_api_has_the_same_limit(self, client: httpx.Client) -> None:
        response = client.post(
            "/symbolicate/v5",
            content=self.body_of_size(64 * 1024 + 1),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 413


def test_a_stalled_download_holds_up_no_other_request(
    tmp_path_factory: pytest.TempPathFactory, symbol_server: SymbolServer, fixtures: dict[str, Any]
) -> None:
    """With the default single CPU thread per process, a request waiting for a download
    leaves that thread free: another request completes meanwhile."""
    config = {"connect_to_reserved_ips": True}
    server = ServerProcess(tmp_path_factory.mktemp("one-thread") / "data", config)
    server.start()
    try:
        with server.client() as client:
            slow = slow_request(symbol_server, fixtures, unique_prefix(), stall=STALL * 2)
            waiting = assert_pending(client.post("/symbolicate", json=slow, params={"timeout": 0}))

            fast_prefix = unique_prefix()
            symbol_server.put(
                f"{fast_prefix}/{crash_debug(fixtures)}",
                Path(fixtures["crash_elf_debug"]["path"]).read_bytes(),
            )
            fast = {
                **slow,
                "sources": [
                    {"type": "http", "id": "fast", "url": symbol_server.url_for(fast_prefix + "/")}
                ],
            }
            started = time.monotonic()
            assert_completed(client.post("/symbolicate", json=fast))
            assert time.monotonic() - started < STALL

            assert_completed(client.get(f"/requests/{waiting}"))
    finally:
        server.stop()
