"""Tokens, scopes and who may reach which project."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from symvault.errors import BadRequest, Forbidden, NotFound, Unauthorized
from symvault.store.accounts import READ_SCOPES, WRITE_SCOPES, Accounts, parse_slug
from symvault.store.database import Database


@pytest.fixture
def accounts(db: Database) -> Accounts:
    return Accounts(db)


def test_tokens_are_stored_hashed(tmp_path: Path, db: Database, accounts: Accounts) -> None:
    token = accounts.create_token("acme", "app", label="ci")
    assert accounts.has_tokens()
    db.dispose()  # checkpoint the WAL so that everything is in files on disk
    contents = b"".join(path.read_bytes() for path in tmp_path.glob("db.sqlite*"))
    assert token.encode() not in contents
    assert hashlib.sha256(token.encode()).hexdigest().encode() in contents


def test_new_database_has_no_tokens(accounts: Accounts) -> None:
    assert not accounts.has_tokens()


def test_token_resolves_to_its_organization_project_and_scopes(accounts: Accounts) -> None:
    token = accounts.create_token("acme", "app", scopes=["project:read", "project:write"])
    principal = accounts.authenticate(f"Bearer {token}")
    assert principal.organization_slug == "acme"
    assert principal.scopes == {"project:read", "project:write"}
    project = accounts.find_project_by_slugs("acme", "app")
    assert project is not None
    assert principal.project_id == project.id
    assert principal.organization_id == project.organization_id

    org_token = accounts.create_token("acme")
    org_principal = accounts.authenticate(f"bearer {org_token}")
    assert org_principal.project_id is None
    assert org_principal.organization_id == principal.organization_id
    assert org_principal.token_id != principal.token_id


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer    ",
        "Basic dXNlcjpwYXNz",
        "Token 0123456789abcdef0123456789abcdef",
        "Bearer short",
        "Bearer has spaces in the middle of it",
        "Bearer " + "x" * 201,
        "Bearer 0123456789abcdef0123456789abcdef",  # well-formed, but unknown
    ],
)
def test_bad_authorization_headers(accounts: Accounts, header: str | None) -> None:
    accounts.create_token("acme", "app")
    with pytest.raises(Unauthorized):
        accounts.authenticate(header)


def test_header_whitespace_is_tolerated(accounts: Accounts) -> None:
    token = accounts.create_token("acme")
    assert accounts.authenticate(f"  Bearer   {token}  ").organization_slug == "acme"


class TestScopes:
    def test_read_only_token_cannot_write(self, accounts: Accounts) -> None:
        principal = accounts.authenticate(
            "Bearer " + accounts.create_token("acme", "app", scopes=["project:read"])
        )
        assert accounts.authorize_project(principal, "acme", "app", READ_SCOPES).slug == "app"
        with pytest.raises(Forbidden, match="lacks the scope"):
            accounts.authorize_project(principal, "acme", "app", WRITE_SCOPES)

    @pytest.mark.parametrize("scope", sorted(WRITE_SCOPES))
    def test_any_write_scope_allows_uploads(self, accounts: Accounts, scope: str) -> None:
        principal = accounts.authenticate("Bearer " + accounts.create_token("acme", scopes=[scope]))
        accounts.authorize_project(principal, "acme", "app", WRITE_SCOPES, create=True)

    def test_org_read_alone_reads_no_project(self, accounts: Accounts) -> None:
        principal = accounts.authenticate(
            "Bearer " + accounts.create_token("acme", "app", scopes=["org:read"])
        )
        with pytest.raises(Forbidden):
            accounts.authorize_project(principal, "acme", "app", READ_SCOPES)

    @pytest.mark.parametrize("scopes", [[], ["project:destroy"], ["project:read", "admin"]])
    def test_invalid_scopes_are_refused(self, accounts: Accounts, scopes: list[str]) -> None:
        with pytest.raises(BadRequest):
            accounts.create_token("acme", scopes=scopes)
        assert not accounts.has_tokens()


class TestAuthorizeProject:
    def test_other_organization_is_forbidden(self, accounts: Accounts) -> None:
        accounts.create_token("globex", "app")
        principal = accounts.authenticate("Bearer " + accounts.create_token("acme"))
        with pytest.raises(Forbidden, match="does not belong to this organization"):
            accounts.authorize_project(principal, "globex", "app", READ_SCOPES)
        with pytest.raises(Forbidden):
            accounts.authorize_organization(principal, "globex", READ_SCOPES)
        accounts.authorize_organization(principal, "acme", READ_SCOPES)

    def test_project_token_is_limited_to_its_project(self, accounts: Accounts) -> None:
        accounts.create_token("acme", "other")
        principal = accounts.authenticate("Bearer " + accounts.create_token("acme", "app"))
        assert accounts.authorize_project(principal, "acme", "app", WRITE_SCOPES).slug == "app"
        with pytest.raises(Forbidden, match="limited to another project"):
            accounts.authorize_project(principal, "acme", "other", READ_SCOPES)
        # Nor may it create new projects.
        with pytest.raises(Forbidden, match="limited to another project"):
            accounts.authorize_project(principal, "acme", "new", WRITE_SCOPES, create=True)
        assert accounts.find_project_by_slugs("acme", "new") is None

    def test_projects_are_created_on_write(self, accounts: Accounts) -> None:
        principal = accounts.authenticate("Bearer " + accounts.create_token("acme"))
        with pytest.raises(NotFound, match="acme/fresh does not exist"):
            accounts.authorize_project(principal, "acme", "fresh", READ_SCOPES)
        created = accounts.authorize_project(principal, "acme", "fresh", WRITE_SCOPES, create=True)
        assert created.organization_slug == "acme"
        again = accounts.authorize_project(principal, "acme", "fresh", READ_SCOPES)
        assert again == created
        assert accounts.find_project_by_slugs("acme", "fresh") == created

    def test_same_slug_in_two_organizations(self, accounts: Accounts) -> None:
        acme = accounts.authenticate("Bearer " + accounts.create_token("acme"))
        globex = accounts.authenticate("Bearer " + accounts.create_token("globex"))
        mine = accounts.authorize_project(acme, "acme", "app", WRITE_SCOPES, create=True)
        theirs = accounts.authorize_project(globex, "globex", "app", WRITE_SCOPES, create=True)
        assert mine.id != theirs.id
        assert accounts.find_project_by_slugs("acme", "app") == mine
        assert accounts.find_project_by_slugs("nobody", "app") is None

    def test_invalid_project_slug(self, accounts: Accounts) -> None:
        principal = accounts.authenticate("Bearer " + accounts.create_token("acme"))
        with pytest.raises(BadRequest, match="invalid project slug"):
            accounts.authorize_project(principal, "acme", "Bad Slug", WRITE_SCOPES, create=True)


@pytest.mark.parametrize("slug", ["acme", "a", "my-org_2", "0" * 50])
def test_valid_slugs(slug: str) -> None:
    assert parse_slug(slug, "organization") == slug


@pytest.mark.parametrize("slug", ["", "Acme", "-acme", "_acme", "a b", "a/b", "é", "0" * 51])
def test_invalid_slugs(accounts: Accounts, slug: str) -> None:
    with pytest.raises(BadRequest, match="invalid organization slug"):
        accounts.create_token(slug)


class TestRemembered:
    """The in-memory answers the API gives without a database query."""

    def test_a_token_is_remembered_once_authenticated(self, accounts: Accounts) -> None:
        token = accounts.create_token("acme", "app")
        header = f"Bearer {token}"
        assert accounts.remembered_principal(header) is None
        principal = accounts.authenticate(header)
        assert accounts.remembered_principal(header) == principal

    @pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwYXNz", "Bearer short"])
    def test_malformed_headers_are_refused_at_once(
        self, accounts: Accounts, header: str | None
    ) -> None:
        with pytest.raises(Unauthorized):
            accounts.remembered_principal(header)

    def test_unknown_tokens_are_not_remembered(self, accounts: Accounts) -> None:
        header = "Bearer " + "ab" * 32
        with pytest.raises(Unauthorized):
            accounts.authenticate(header)
        assert accounts.remembered_principal(header) is None

    def test_a_project_is_remembered_once_found(self, accounts: Accounts) -> None:
        principal = accounts.authenticate(f"Bearer {accounts.create_token('acme')}")
        accounts.authorize_project(principal, "acme", "app", WRITE_SCOPES, create=True)
        ref = accounts.authorize_project(principal, "acme", "app", READ_SCOPES)
        assert accounts.remembered_project(principal, "acme", "app", READ_SCOPES) == ref
        assert accounts.remembered_project(principal, "acme", "other", READ_SCOPES) is None

    def test_remembered_projects_are_still_checked(self, accounts: Accounts) -> None:
        app_principal = accounts.authenticate(f"Bearer {accounts.create_token('acme', 'app')}")
        other = accounts.authenticate(f"Bearer {accounts.create_token('acme', 'other')}")
        accounts.authorize_project(other, "acme", "other", READ_SCOPES)
        with pytest.raises(Forbidden, match="limited to another project"):
            accounts.remembered_project(app_principal, "acme", "other", READ_SCOPES)
        with pytest.raises(Forbidden, match="does not belong to this organization"):
            accounts.remembered_project(app_principal, "globex", "app", READ_SCOPES)
        read_only = accounts.authenticate(
            f"Bearer {accounts.create_token('acme', scopes=['project:read'])}"
        )
        with pytest.raises(Forbidden):
            accounts.remembered_project(read_only, "acme", "other", WRITE_SCOPES)
        with pytest.raises(BadRequest):
            accounts.remembered_project(app_principal, "acme", "Not A Slug!", READ_SCOPES)


def test_warm_up_looks_up_a_token_and_leaves_no_trace(accounts: Accounts) -> None:
    accounts.warm_up()
    assert not accounts.has_tokens()
    with pytest.raises(Unauthorized):
        accounts.authenticate("Bearer " + "0" * 64)


def test_warm_up_without_a_database_logs_and_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "gone"
    directory.mkdir()
    database = Database(f"sqlite:///{directory}/db.sqlite", lock_dir=tmp_path / "locks")
    directory.rmdir()  # sqlite cannot create a file in a directory that does not exist
    try:
        with caplog.at_level(logging.WARNING, logger="symvault.store.accounts"):
            Accounts(database).warm_up()
    finally:
        database.dispose()
    assert any("accounts.warm_up_failed" in r.getMessage() for r in caplog.records)
