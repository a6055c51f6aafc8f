"""Tokens, scopes and the walls between organizations and projects."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import fixture_path
from tests.support.chunks import ChunkClient, split_bytes
from tests.support.sentry_cli import SentryCli
from tests.support.server import ServerProcess

NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
BAD_SCHEME = {"detail": "Use an 'Authorization: Bearer <token>' header."}
INVALID = {"detail": "Invalid token."}
OTHER_ORG = {"detail": "this token does not belong to this organization"}
OTHER_PROJECT = {"detail": "this token is limited to another project"}
NO_WRITE_SCOPE = {
    "detail": "this token lacks the scope for this action (needs one of: "
    "org:ci, project:admin, project:releases, project:write)"
}

#: A project of the default organization that exists before the tests run.
EXISTING = "auth-existing"
#: The project the limited token is limited to.
LIMITED = "auth-limited"


@dataclass(frozen=True)
class Tokens:
    admin: str
    read: str
    limited: str
    org_a: str
    org_b: str


@pytest.fixture(scope="module")
def tokens(server: ServerProcess) -> Tokens:
    """Tokens made with the real `symvault token create` (in parallel: each takes a while)."""
    assert server.token is not None
    with ThreadPoolExecutor(4) as pool:
        read = pool.submit(server.create_token, "default", EXISTING, "project:read")
        limited = pool.submit(server.create_token, "default", LIMITED, "project:write")
        org_a = pool.submit(server.create_token, "auth-org-a", None, "project:write")
        org_b = pool.submit(server.create_token, "auth-org-b", None, "org:ci")
        return Tokens(server.token, read.result(), limited.result(), org_a.result(), org_b.result())


def _request(server: ServerProcess, headers: dict[str, str], target: str) -> httpx.Response:
    """One request of each kind the upload protocol makes."""
    org_path = "/api/0/organizations/default/chunk-upload/"
    project_path = f"/api/0/projects/default/{EXISTING}/files"
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        if target == "options":
            return client.get(org_path)
        if target == "chunks":
            data = os.urandom(100)
            chunk = split_bytes(data, 100, "x").chunks[0]
            return client.post(org_path, files=[("file", (chunk.sha1, data))])
        if target == "assemble":
            return client.post(f"{project_path}/difs/assemble/", json={})
        if target == "list":
            return client.get(f"{project_path}/dsyms/")
        if target == "delete":
            return client.delete(f"{project_path}/dsyms/", params={"id": 1})
        if target == "missing":
            return client.get(f"{project_path}/dsyms/unknown/", params={"checksums": "a" * 40})
        assert target == "legacy"
        return client.post(f"{project_path}/dsyms/", files=[("file", ("x", b"x"))])


TARGETS = ["options", "chunks", "assemble", "list", "delete", "missing", "legacy"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        (None, NO_CREDENTIALS),
        ("", NO_CREDENTIALS),
        ("Bearer", BAD_SCHEME),
        ("Basic dXNlcjpwYXNz", BAD_SCHEME),
        ("Bearer short", INVALID),
        ("Bearer not a token at all", INVALID),
        ("Bearer " + "0" * 64, INVALID),
    ],
    ids=["none", "empty", "no-token", "basic", "too-short", "spaces", "unknown"],
)
def test_requests_without_a_valid_token_are_401(
    server: ServerProcess, tokens: Tokens, target: str, authorization: str | None, expected: Any
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = _request(server, headers, target)
    assert response.status_code == 401
    assert response.json() == expected


@pytest.mark.parametrize("target", TARGETS)
def test_token_of_another_organization_is_403(
    server: ServerProcess, tokens: Tokens, target: str
) -> None:
    response = _request(server, {"Authorization": f"Bearer {tokens.org_a}"}, target)
    assert response.status_code == 403
    assert response.json() == OTHER_ORG


@pytest.mark.parametrize("target", ["assemble", "list", "delete", "missing", "legacy"])
def test_token_limited_to_one_project_cannot_use_another(
    server: ServerProcess, tokens: Tokens, target: str
) -> None:
    response = _request(server, {"Authorization": f"Bearer {tokens.limited}"}, target)
    assert response.status_code == 403
    assert response.json() == OTHER_PROJECT


def test_token_limited_to_one_project_uploads_there(
    server: ServerProcess, tokens: Tokens, fixtures: dict[str, Any]
) -> None:
    with server.client(tokens.limited) as client:
        own = ChunkClient(client, "default", LIMITED)
        entry = own.store(own.split(fixture_path(fixtures, "crash_wasm")))
        assert entry["state"] == "ok", entry

        other = ChunkClient(client, "default", "auth-limited-elsewhere")
        response = other.assemble({})
        assert response.status_code == 403
        assert response.json() == OTHER_PROJECT
    with server.client() as admin:
        # The refused request did not create the project either.
        response = admin.get("/api/0/projects/default/auth-limited-elsewhere/files/dsyms/")
        assert response.status_code == 404
        assert response.json() == {
            "detail": "project default/auth-limited-elsewhere does not exist"
        }


@pytest.mark.parametrize("target", ["chunks", "assemble", "delete", "legacy"])
def test_read_token_cannot_write(server: ServerProcess, tokens: Tokens, target: str) -> None:
    response = _request(server, {"Authorization": f"Bearer {tokens.read}"}, target)
    assert response.status_code == 403
    assert response.json() == NO_WRITE_SCOPE


@pytest.mark.parametrize("target", ["options", "list", "missing"])
def test_read_token_can_read(server: ServerProcess, tokens: Tokens, target: str) -> None:
    response = _request(server, {"Authorization": f"Bearer {tokens.read}"}, target)
    assert response.status_code == 200
    expected = {"list": [], "missing": {"missing": ["a" * 40]}}
    if target == "options":
        assert response.json()["hashAlgorithm"] == "sha1"
    else:
        assert response.json() == expected[target]


def test_sentry_cli_shows_why_a_read_token_cannot_upload(
    server: ServerProcess, tokens: Tokens, fixtures: dict[str, Any]
) -> None:
    cli = SentryCli(server.url, tokens.read)
    result = cli.upload("default", EXISTING, fixture_path(fixtures, "crash_pdb"))
    assert result.returncode != 0
    assert NO_WRITE_SCOPE["detail"] in result.stdout + result.stderr


def test_organizations_cannot_assemble_each_others_chunks(
    server: ServerProcess, tokens: Tokens, fixtures: dict[str, Any]
) -> None:
    path = fixture_path(fixtures, "shapes_elf_debug")
    with server.client(tokens.org_a) as client_a, server.client(tokens.org_b) as client_b:
        org_a = ChunkClient(client_a, "auth-org-a", "iso")
        org_b = ChunkClient(client_b, "auth-org-b", "iso")
        # A chunking of this file that no other test uses, so only org B holds its chunks.
        split = split_bytes(path.read_bytes(), 3000, path.name)
        org_b.upload_file(split)
        missing = list(dict.fromkeys(split.chunk_ids))
        not_found = {"state": "not_found", "missingChunks": missing, "detail": None, "dif": None}

        assert org_a.assemble_one(split) == not_found
        assert org_a.assemble_one(split) == not_found

        assert org_b.store(split)["state"] == "ok"
        # Even now that the file is stored, org A needs chunks of its own.
        assert org_a.assemble_one(split) == not_found
        response = org_a.assemble({split.sha1: {"name": split.name, "chunks": []}})
        assert response.json()[split.sha1] == {
            "state": "not_found",
            "missingChunks": [],
            "detail": None,
            "dif": None,
        }
        listed = client_a.get("/api/0/projects/auth-org-a/iso/files/dsyms/")
        assert listed.status_code == 200
        assert listed.json() == []

        b_files = client_b.get("/api/0/projects/auth-org-b/iso/files/dsyms/").json()
        assert [item["sha1"] for item in b_files] == [split.sha1]
        b_id = b_files[0]["id"]
        for response in (
            client_a.get("/api/0/projects/auth-org-b/iso/files/dsyms/"),
            client_a.get("/api/0/projects/auth-org-b/iso/files/dsyms/", params={"id": b_id}),
            client_a.delete("/api/0/projects/auth-org-b/iso/files/dsyms/", params={"id": b_id}),
        ):
            assert response.status_code == 403
            assert response.json() == OTHER_ORG
        # Org B's file ids mean nothing in org A's projects.
        response = client_a.get("/api/0/projects/auth-org-a/iso/files/dsyms/", params={"id": b_id})
        assert response.status_code == 404
        assert response.json() == {"detail": f"debug file {b_id} does not exist in this project"}
        # Org B's file is still there and whole.
        download = client_b.get("/api/0/projects/auth-org-b/iso/files/dsyms/", params={"id": b_id})
        assert download.status_code == 200
        assert download.content == path.read_bytes()


def test_project_is_created_by_its_first_upload(
    server: ServerProcess, sentry_cli: SentryCli, fixtures: dict[str, Any], project: str
) -> None:
    list_path = f"/api/0/projects/default/{project}/files/dsyms/"
    with server.client() as client:
        before = client.get(list_path)
        assert before.status_code == 404
        assert before.json() == {"detail": f"project default/{project} does not exist"}

        result = sentry_cli.upload("default", project, fixture_path(fixtures, "crash_pdb"))
        assert result.returncode == 0, result.stdout + result.stderr

        after = client.get(list_path)
        assert after.status_code == 200
        assert [item["sha1"] for item in after.json()] == [fixtures["crash_pdb"]["sha1"]]
