"""Organizations, projects and the bearer tokens that grant access to them.

A token belongs to one organization and optionally to one project in it, and
carries Sentry-style scopes. Only a SHA-256 of each token is stored. Projects
come into existence on the first write by a token allowed to write there.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from symvault.errors import BadRequest, Forbidden, NotFound, Unauthorized
from symvault.logs import log_event
from symvault.store.database import Database, insert_ignore
from symvault.store.tables import ApiToken, Organization, Project

__all__ = [
    "ALL_SCOPES",
    "READ_SCOPES",
    "WRITE_SCOPES",
    "Accounts",
    "Principal",
    "ProjectRef",
    "parse_slug",
]

logger = logging.getLogger(__name__)

#: Scopes a token can carry (Sentry's names).
ALL_SCOPES = frozenset(
    {
        "org:read",
        "org:write",
        "org:admin",
        "org:ci",
        "project:read",
        "project:write",
        "project:admin",
        "project:releases",
    }
)
#: Any of these allows uploading debug files (Sentry's `ProjectReleasePermission`).
WRITE_SCOPES = frozenset({"project:write", "project:admin", "project:releases", "org:ci"})
#: Any of these allows reading a project's debug files.
READ_SCOPES = WRITE_SCOPES | {"project:read"}

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_=-]{16,200}$")
_CACHE_SECONDS = 10.0


def parse_slug(value: str, what: str) -> str:
    """Validates an organization or project slug."""
    if not _SLUG.match(value):
        raise BadRequest(
            f"invalid {what} slug {value!r}: use 1-50 lowercase letters, digits, '-' or '_'"
        )
    return value


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's organization, optional project and scopes."""

    token_id: int
    organization_id: int
    organization_slug: str
    project_id: int | None
    scopes: frozenset[str]

    def require(self, scopes: Iterable[str]) -> None:
        """Raises `Forbidden` unless the token has at least one of `scopes`."""
        wanted = frozenset(scopes)
        if not self.scopes & wanted:
            raise Forbidden(
                "this token lacks the scope for this action (needs one of: "
                + ", ".join(sorted(wanted))
                + ")"
            )


@dataclass(frozen=True)
class ProjectRef:
    id: int
    slug: str
    organization_id: int
    organization_slug: str


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _token_hash_of(authorization: str | None) -> str:
    """The hash of the token in an `Authorization: Bearer ...` header; raises
    `Unauthorized` if there is none or it cannot be a token."""
    if not authorization:
        raise Unauthorized("Authentication credentials were not provided.")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Use an 'Authorization: Bearer <token>' header.")
    if not _TOKEN.match(token):
        raise Unauthorized("Invalid token.")
    return _hash_token(token)


class Accounts:
    """Reads and writes organizations, projects and tokens."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._token_cache: dict[str, tuple[float, Principal]] = {}
        self._project_cache: dict[tuple[int, str], ProjectRef] = {}
        self._lock = threading.Lock()

    def create_token(
        self,
        organization: str,
        project: str | None = None,
        scopes: Iterable[str] = ALL_SCOPES,
        label: str = "",
    ) -> str:
        """Creates a token (and its organization/project if new); returns the token."""
        parse_slug(organization, "organization")
        if project is not None:
            parse_slug(project, "project")
        scope_set = frozenset(scopes)
        unknown = scope_set - ALL_SCOPES
        if unknown:
            raise BadRequest(f"unknown scope(s): {', '.join(sorted(unknown))}")
        if not scope_set:
            raise BadRequest("a token needs at least one scope")
        token = secrets.token_hex(32)
        with self._db.write() as session:
            org_id = self._ensure_organization(session, organization)
            project_id = self._ensure_project(session, org_id, project) if project else None
            session.add(
                ApiToken(
                    token_hash=_hash_token(token),
                    organization_id=org_id,
                    project_id=project_id,
                    scopes=" ".join(sorted(scope_set)),
                    label=label,
                )
            )
        return token

    def has_tokens(self) -> bool:
        with self._db.read() as session:
            return session.scalar(select(ApiToken.id).limit(1)) is not None

    def authenticate(self, authorization: str | None) -> Principal:
        """Resolves an `Authorization: Bearer ...` header; raises `Unauthorized`."""
        principal = self._lookup_token(_token_hash_of(authorization))
        if principal is None:
            raise Unauthorized("Invalid token.")
        return principal

    def warm_up(self) -> None:
        """Looks up a token no one has: the reader's first connection and the
        statement's compilation (5-6 ms, measured) are then not paid for by the first
        request with a token. A database that cannot be reached yet is logged."""
        try:
            self._lookup_token("0" * 64)
        except SQLAlchemyError as exc:
            log_event(logger, "accounts.warm_up_failed", logging.WARNING, error=str(exc))

    def remembered_principal(self, authorization: str | None) -> Principal | None:
        """`authenticate` answered from memory alone (no database), if it can be.

        Raises `Unauthorized` for a malformed header; None means "ask `authenticate`"."""
        return self._remembered_token(_token_hash_of(authorization), time.monotonic())

    def _remembered_token(self, token_hash: str, now: float) -> Principal | None:
        with self._lock:
            cached = self._token_cache.get(token_hash)
        return cached[1] if cached is not None and cached[0] > now else None

    def _lookup_token(self, token_hash: str) -> Principal | None:
        now = time.monotonic()
        cached = self._remembered_token(token_hash, now)
        if cached is not None:
            return cached
        with self._db.read() as session:
            row = session.execute(
                select(ApiToken, Organization.slug)
                .join(Organization, Organization.id == ApiToken.organization_id)
                .where(ApiToken.token_hash == token_hash)
            ).first()
        principal = None
        if row is not None:
            token_row, org_slug = row
            principal = Principal(
                token_id=token_row.id,
                organization_id=token_row.organization_id,
                organization_slug=org_slug,
                project_id=token_row.project_id,
                scopes=frozenset(token_row.scopes.split()),
            )
        if principal is not None:  # unknown tokens are not cached: they may be created any time
            with self._lock:
                if len(self._token_cache) > 10_000:
                    self._token_cache.clear()
                self._token_cache[token_hash] = (now + _CACHE_SECONDS, principal)
        return principal

    def authorize_organization(
        self, principal: Principal, organization: str, scopes: Iterable[str]
    ) -> None:
        """Checks that the token belongs to `organization` and has one of `scopes`."""
        if principal.organization_slug != organization:
            raise Forbidden("this token does not belong to this organization")
        principal.require(scopes)

    def authorize_project(
        self,
        principal: Principal,
        organization: str,
        project: str,
        scopes: Iterable[str],
        *,
        create: bool = False,
    ) -> ProjectRef:
        """Checks access to a project and returns it, creating it if `create` is set."""
        self.authorize_organization(principal, organization, scopes)
        parse_slug(project, "project")
        ref = self.find_project(principal.organization_id, project)
        if principal.project_id is not None and (ref is None or ref.id != principal.project_id):
            raise Forbidden("this token is limited to another project")
        if ref is not None:
            return ref
        if not create:
            raise NotFound(f"project {organization}/{project} does not exist")
        with self._db.write() as session:
            project_id = self._ensure_project(session, principal.organization_id, project)
        return ProjectRef(project_id, project, principal.organization_id, organization)

    def remembered_project(
        self, principal: Principal, organization: str, project: str, scopes: Iterable[str]
    ) -> ProjectRef | None:
        """`authorize_project` (without `create`) answered from memory alone, if it can
        be: raises what it raises; None means "ask `authorize_project`"."""
        self.authorize_organization(principal, organization, scopes)
        parse_slug(project, "project")
        with self._lock:
            ref = self._project_cache.get((principal.organization_id, project))
        if ref is not None and principal.project_id is not None and ref.id != principal.project_id:
            raise Forbidden("this token is limited to another project")
        return ref

    def find_project_by_slugs(self, organization: str, project: str) -> ProjectRef | None:
        """The project `organization/project`, if both exist."""
        with self._db.read() as session:
            org_id = session.scalar(
                select(Organization.id).where(Organization.slug == organization)
            )
        if org_id is None:
            return None
        return self.find_project(org_id, project)

    def project_by_id(self, project_id: int) -> ProjectRef | None:
        with self._db.read() as session:
            row = session.execute(
                select(Project.slug, Project.organization_id, Organization.slug)
                .join(Organization, Organization.id == Project.organization_id)
                .where(Project.id == project_id)
            ).first()
        return ProjectRef(project_id, row[0], row[1], row[2]) if row else None

    def find_project(self, organization_id: int, slug: str) -> ProjectRef | None:
        key = (organization_id, slug)
        with self._lock:
            cached = self._project_cache.get(key)
        if cached is not None:
            return cached
        with self._db.read() as session:
            row = session.execute(
                select(Project.id, Organization.slug)
                .join(Organization, Organization.id == Project.organization_id)
                .where(Project.organization_id == organization_id, Project.slug == slug)
            ).first()
        if row is None:
            return None
        ref = ProjectRef(row[0], slug, organization_id, row[1])
        with self._lock:
            self._project_cache[key] = ref
        return ref

    @staticmethod
    def _ensure_organization(session: Session, slug: str) -> int:
        insert_ignore(session, Organization, [{"slug": slug}], ["slug"])
        org_id = session.scalar(select(Organization.id).where(Organization.slug == slug))
        assert org_id is not None
        return org_id

    @staticmethod
    def _ensure_project(session: Session, organization_id: int, slug: str) -> int:
        insert_ignore(
            session,
            Project,
            [{"organization_id": organization_id, "slug": slug}],
            ["organization_id", "slug"],
        )
        project_id = session.scalar(
            select(Project.id).where(
                Project.organization_id == organization_id, Project.slug == slug
            )
        )
        assert project_id is not None
        return project_id
