"""Requests `/symbolicate` refuses, and what it ignores.

Malformed JSON is a 400, JSON of the wrong shape a 422 naming the field;
unknown fields are ignored. Store sources need a token that may read the
project; filesystem sources in requests need `allow_filesystem_sources`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import ServerProcess
from tests.support.stacktraces import (
    crash_frame,
    module_of,
    native_debug_path,
    store_source,
    symbolicate,
)

BASE = 0x7F00_0000_0000


@pytest.fixture
def anonymous(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def crash_request(fixtures: dict[str, Any], *sources: dict[str, Any]) -> dict[str, Any]:
    return {
        "sources": list(sources),
        "modules": [module_of(fixtures, "crash_elf", BASE)],
        "stacktraces": [{"frames": [crash_frame(fixtures, "crash_elf", BASE)]}],
    }


@pytest.mark.parametrize(
    "body",
    [b"{", b"not json", b'{"stacktraces": [}', b"\xff\xfe", b""],
)
def test_malformed_json(anonymous: httpx.Client, body: bytes) -> None:
    response = anonymous.post(
        "/symbolicate", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["detail"]


FRAME = {"instruction_addr": "0x1000"}
MODULE = {"type": "elf", "image_addr": "0x1000"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"stacktraces": {}}, "stacktraces"),
        ({"stacktraces": [{}]}, "stacktraces.0.frames"),
        ({"stacktraces": [{"frames": [{}]}]}, "stacktraces.0.frames.0.instruction_addr"),
        (
            {"stacktraces": [{"frames": [FRAME, {"instruction_addr": "0xZZ"}]}]},
            "stacktraces.0.frames.1.instruction_addr",
        ),
        (
            {"stacktraces": [{"frames": [{**FRAME, "addr_mode": "REL:1"}]}]},
            "stacktraces.0.frames.0.addr_mode",
        ),
        (
            {"stacktraces": [{"frames": [{**FRAME, "lang": "klingon"}]}]},
            "stacktraces.0.frames.0.lang",
        ),
        (
            {"stacktraces": [{"frames": [{**FRAME, "trust": "blind"}]}]},
            "stacktraces.0.frames.0.trust",
        ),
        (
            {"stacktraces": [{"registers": {"rip": "rip"}, "frames": [FRAME]}]},
            "stacktraces.0.registers.rip",
        ),
        ({"modules": [{"image_addr": "0x1000"}]}, "modules.0.type"),
        ({"modules": [{**MODULE, "image_addr": 1.5}]}, "modules.0.image_addr"),
        ({"options": {"frame_order": "random"}}, "options.frame_order"),
        ({"signal": "SIGSEGV"}, "signal"),
        ({"sources": [{"type": "ftp", "id": "x"}]}, "sources.0"),
        ({"sources": [{"type": "http", "id": "x", "url": "file:///etc"}]}, "sources.0.http.url"),
    ],
)
def test_schema_errors_name_the_field(anonymous: httpx.Client, body: Any, field: str) -> None:
    response = anonymous.post("/symbolicate", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(field + ":"), response.json()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ([], "body: Input should be an object"),
        ({"stacktraces": "x"}, "stacktraces: Input should be a list"),
        ({"stacktraces": [{"frames": ["a"]}]}, "stacktraces.0.frames.0: Input should be an object"),
        ({"modules": {}}, "modules: Input should be a list"),
        ({"options": []}, "options: Input should be an object"),
        ({"sources": [1]}, "sources.0: Input should be an object"),
        (
            {"stacktraces": [{"frames": [{"instruction_addr": "0xZZ"}]}]},
            "stacktraces.0.frames.0.instruction_addr: invalid address '0xZZ'",
        ),
    ],
)
def test_schema_errors_speak_json(anonymous: httpx.Client, body: Any, detail: str) -> None:
    """Lists and objects, not the Python types and classes the body is validated into."""
    response = anonymous.post("/symbolicate", json=body)
    assert response.status_code == 422, response.text
    assert response.json() == {"detail": detail}


@pytest.mark.parametrize("path", ["/symbolicate", "/symbolicate/v5"])
@pytest.mark.parametrize("depth", [5_000, 100_000])  # parsed here and on a worker thread
def test_deeply_nested_bodies_are_refused(anonymous: httpx.Client, path: str, depth: int) -> None:
    body = b"[" * depth + b"]" * depth
    response = anonymous.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json() == {"detail": "The request body is nested too deeply"}
    assert anonymous.get("/healthcheck").text == "ok"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/symbolicate", {"sources": [], "stacktraces": [{"frames": [FRAME]}]}),
        ("/symbolicate/v5", {"jobs": [{"memoryMap": [], "stacks": [[]]}]}),
    ],
)
def test_open_endpoints_check_credentials_that_are_sent(
    anonymous: httpx.Client, client: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    """No token is needed here; a token that is sent must be valid."""
    assert anonymous.post(path, json=body).status_code == 200
    assert client.post(path, json=body).status_code == 200

    for header in ("Bearer not-a-token", "Basic Zm9vOmJhcg=="):
        response = anonymous.post(path, json=body, headers={"Authorization": header})
        assert response.status_code == 401, response.text
        assert response.json()["detail"]


def test_unknown_fields_are_ignored(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str
) -> None:
    body = crash_request(fixtures, {**store_source("default", formats_project), "extra": 1})
    body["unknown"] = "value"
    body["threads"] = [
        {"frames": [{"instruction_addr": "0x1"}]}
    ]  # Symbolicator reads `stacktraces`
    body["options"] = {"no_such_option": True}
    body["modules"][0]["unknown"] = [1, 2]
    body["stacktraces"][0]["unknown"] = {}
    body["stacktraces"][0]["frames"][0]["unknown"] = None
    result = symbolicate(client, body)
    assert "unknown" not in result
    assert "threads" not in result
    (frame,) = result["stacktraces"][0]["frames"]
    assert frame["status"] == "symbolicated"
    assert "unknown" not in frame
    assert "unknown" not in result["modules"][0]
    assert "unknown" not in result["stacktraces"][0]


class TestStoreSources:
    def test_without_a_token(
        self, anonymous: httpx.Client, fixtures: dict[str, Any], formats_project: str
    ) -> None:
        body = crash_request(fixtures, store_source("default", formats_project))
        response = anonymous.post("/symbolicate", json=body)
        assert response.status_code == 401
        assert response.json()["detail"]
        bad = anonymous.post(
            "/symbolicate", json=body, headers={"Authorization": "Bearer " + "0" * 64}
        )
        assert bad.status_code == 401

    def test_another_organizations_token(
        self,
        server: ServerProcess,
        tokens: dict[str, str],
        fixtures: dict[str, Any],
        formats_project: str,
    ) -> None:
        body = crash_request(fixtures, store_source("default", formats_project))
        with server.client(tokens["other_org"]) as other:
            response = other.post("/symbolicate", json=body)
            assert response.status_code == 403
            assert response.json()["detail"]
            # ... which reads its own organization's store.
            own = symbolicate(
                other, crash_request(fixtures, store_source("someone-else", "theirs"))
            )
            assert own["modules"][0]["debug_status"] == "missing"

    def test_token_limited_to_another_project(
        self,
        server: ServerProcess,
        tokens: dict[str, str],
        fixtures: dict[str, Any],
        formats_project: str,
    ) -> None:
        with server.client(tokens["other_project"]) as limited:
            body = crash_request(fixtures, store_source("default", formats_project))
            assert limited.post("/symbolicate", json=body).status_code == 403
            # Naming its own project as well does not help.
            body["sources"].insert(0, store_source("default", "limited-elsewhere", "own"))
            assert limited.post("/symbolicate", json=body).status_code == 403
            body["sources"].pop()
            assert symbolicate(limited, body)["modules"][0]["debug_status"] == "missing"

    def test_token_limited_to_the_project(
        self,
        server: ServerProcess,
        tokens: dict[str, str],
        fixtures: dict[str, Any],
        formats_project: str,
    ) -> None:
        with server.client(tokens["reader"]) as limited:
            result = symbolicate(
                limited, crash_request(fixtures, store_source("default", formats_project))
            )
        assert result["stacktraces"][0]["frames"][0]["status"] == "symbolicated"

    def test_store_of_another_organization_with_the_admin_token(
        self, client: httpx.Client, tokens: dict[str, str], fixtures: dict[str, Any]
    ) -> None:
        body = crash_request(fixtures, store_source("someone-else", "theirs"))
        assert client.post("/symbolicate", json=body).status_code == 403


@pytest.fixture(scope="module")
def native_layout(fixtures: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of debug files in the native layout."""
    root = tmp_path_factory.mktemp("symbols")
    target = root / native_debug_path(fixtures, "crash_elf")
    target.parent.mkdir()
    shutil.copyfile(fixtures["crash_elf_debug"]["path"], target)
    return root


def test_filesystem_sources_are_refused_by_default(
    anonymous: httpx.Client, fixtures: dict[str, Any], native_layout: Path
) -> None:
    source = {"type": "filesystem", "id": "local", "path": str(native_layout)}
    response = anonymous.post("/symbolicate", json=crash_request(fixtures, source))
    assert response.status_code == 403
    assert "allow_filesystem_sources" in response.json()["detail"]


def test_filesystem_sources_when_allowed(
    configured_server: ServerProcess, fixtures: dict[str, Any], native_layout: Path
) -> None:
    source = {"type": "filesystem", "id": "local", "path": str(native_layout)}
    with httpx.Client(base_url=configured_server.url, timeout=60) as anonymous:
        result = symbolicate(anonymous, crash_request(fixtures, source))
    (frame,) = result["stacktraces"][0]["frames"]
    assert frame["status"] == "symbolicated"
    assert frame["function"] == "crash_leaf_store"
