"""Debug file records of projects and the stored contents they point to.

Contents are shared: every record whose file has the same SHA-1 points to one
`files` row, however many projects uploaded it. Each `files` row has a storage
key of its own, so contents are removed exactly when their last record goes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import ColumnElement, Row, Select, and_, delete, exists, func, or_, select
from sqlalchemy.exc import IntegrityError

from symvault.model.difs import DebugFile, DifMeta
from symvault.model.ids import parse_code_id, parse_debug_id
from symvault.store.database import Database
from symvault.store.storage import Storage
from symvault.store.tables import DebugFileRow, StoredFile

__all__ = ["DebugFileQuery", "DebugFiles", "StoredContent"]

_SINGLETON_FORMATS = frozenset({"bcsymbolmap", "uuidmap", "il2cpp"})


@dataclass(frozen=True)
class StoredContent:
    """Contents already in storage, with the checksum they were stored under."""

    file_id: int
    checksum: str
    size: int
    storage_key: str


@dataclass(frozen=True)
class DebugFileQuery:
    """Filters of the listing endpoint; all optional."""

    debug_id: str | None = None
    code_id: str | None = None
    query: str | None = None
    file_formats: Sequence[str] = ()


class DebugFiles:
    """Creates, finds, lists and deletes debug file records."""

    def __init__(self, db: Database, storage: Storage) -> None:
        self._db = db
        self._storage = storage

    # Reading

    def get(self, project_id: int, debug_file_id: int) -> DebugFile | None:
        with self._db.read() as session:
            row = session.execute(
                _select_records().where(
                    DebugFileRow.project_id == project_id, DebugFileRow.id == debug_file_id
                )
            ).first()
        return _record_of(row) if row else None

    def find_by_checksum(self, project_id: int, checksum: str) -> DebugFile | None:
        """The newest record of a file with this SHA-1 in the project."""
        with self._db.read() as session:
            row = session.execute(
                _select_records()
                .where(DebugFileRow.project_id == project_id, DebugFileRow.checksum == checksum)
                .order_by(DebugFileRow.id.desc())
                .limit(1)
            ).first()
        return _record_of(row) if row else None

    def newest_by_checksum(self, project_id: int, checksums: Sequence[str]) -> dict[str, DebugFile]:
        """The newest record of each of these checksums that the project has."""
        found: dict[str, DebugFile] = {}
        with self._db.read() as session:
            for start in range(0, len(checksums), 500):
                batch = list(checksums[start : start + 500])
                rows = session.execute(
                    _select_records()
                    .where(DebugFileRow.project_id == project_id, DebugFileRow.checksum.in_(batch))
                    .order_by(DebugFileRow.id.desc())
                ).all()
                for row in rows:
                    record = _record_of(row)
                    found.setdefault(record.checksum, record)
        return found

    def stored_checksums(self, checksums: Sequence[str]) -> set[str]:
        """Which of these checksums have contents in storage, from any project."""
        found: set[str] = set()
        with self._db.read() as session:
            for start in range(0, len(checksums), 500):
                batch = list(checksums[start : start + 500])
                found.update(
                    session.scalars(
                        select(StoredFile.checksum).where(StoredFile.checksum.in_(batch))
                    )
                )
        return found

    def missing_checksums(self, project_id: int, checksums: Iterable[str]) -> list[str]:
        """The checksums among `checksums` of which the project has no file."""
        wanted = {c.lower() for c in checksums}
        if not wanted:
            return []
        with self._db.read() as session:
            found = set(
                session.scalars(
                    select(DebugFileRow.checksum).where(
                        DebugFileRow.project_id == project_id,
                        DebugFileRow.checksum.in_(sorted(wanted)),
                    )
                )
            )
        return sorted(wanted - found)

    def find_for_module(
        self, project_id: int, debug_id: str | None, code_id: str | None
    ) -> list[DebugFile]:
        """Every file of the project for a module, newest first: by debug id, else by code id."""
        if debug_id:
            condition = DebugFileRow.debug_id == debug_id
        elif code_id:
            condition = DebugFileRow.code_id == code_id
        else:
            return []
        with self._db.read() as session:
            rows = session.execute(
                _select_records()
                .where(DebugFileRow.project_id == project_id, condition)
                .order_by(DebugFileRow.id.desc())
            ).all()
        return [_record_of(row) for row in rows]

    def find_stored(self, checksum: str) -> StoredContent | None:
        """Contents with this SHA-1 already in storage, from any project."""
        with self._db.read() as session:
            row = session.scalars(
                select(StoredFile).where(StoredFile.checksum == checksum).limit(1)
            ).first()
        if row is None:
            return None
        return StoredContent(row.id, row.checksum, row.size, row.storage_key)

    def list(
        self, project_id: int, query: DebugFileQuery, offset: int, limit: int
    ) -> tuple[list[DebugFile], bool]:
        """Newest first; returns one page and whether more follow."""
        stmt = _select_records().where(DebugFileRow.project_id == project_id)
        stmt = _apply_filters(stmt, query)
        stmt = stmt.order_by(DebugFileRow.id.desc()).offset(offset).limit(limit + 1)
        with self._db.read() as session:
            rows = session.execute(stmt).all()
        records = [_record_of(row) for row in rows[:limit]]
        return records, len(rows) > limit

    def find_by_debug_ids(
        self, project_id: int, debug_ids: Iterable[str], features: Iterable[str] = ()
    ) -> dict[str, DebugFile]:
        """Per debug id, the newest file offering all of `features` (Sentry's rule).

        If no file of a debug id has features recorded, the newest one wins.
        """
        wanted = frozenset(features)
        ids = sorted(set(debug_ids))
        if not ids:
            return {}
        with self._db.read() as session:
            rows = session.execute(
                _select_records()
                .where(DebugFileRow.project_id == project_id, DebugFileRow.debug_id.in_(ids))
                .order_by(DebugFileRow.id.desc())
            ).all()
        groups: dict[str, list[DebugFile]] = {}
        for row in rows:
            record = _record_of(row)
            groups.setdefault(record.debug_id, []).append(record)
        found: dict[str, DebugFile] = {}
        for debug_id, group in groups.items():
            with_features = [record for record in group if record.features]
            if not with_features:
                found[debug_id] = group[0]
                continue
            for record in with_features:
                if record.features >= wanted:
                    found[debug_id] = record
                    break
        return found

    # Writing

    def create(
        self,
        project_id: int,
        meta: DifMeta,
        checksum: str,
        size: int,
        source: Path | StoredContent,
    ) -> tuple[DebugFile, bool]:
        """Records `meta` in the project; returns the record and whether it is new.

        `source` is either a temporary file (consumed into storage) or contents
        already stored. An identical record (same debug id and checksum) is
        returned as it is, as Sentry does.
        """
        existing = self._find_identical(project_id, meta.debug_id, checksum)
        if existing is not None:
            return existing, False
        if isinstance(source, StoredContent):
            record = self._insert_with_stored(project_id, meta, source)
            if record is not None:
                return record, True
            raise FileNotFoundError(f"stored contents {source.storage_key} vanished")
        stored = self.find_stored(checksum)
        if stored is not None:
            record = self._insert_with_stored(project_id, meta, stored)
            if record is not None:
                return record, True
        key = f"files/{checksum[:2]}/{checksum}/{uuid.uuid4().hex}"
        self._storage.put_file(key, source)
        try:
            with self._db.write() as session:
                file_row = StoredFile(checksum=checksum, size=size, storage_key=key)
                session.add(file_row)
                session.flush()
                row = _new_row(project_id, meta, checksum, size, file_row.id)
                session.add(row)
                session.flush()
                record = _record(row, key)
        except BaseException:
            self._storage.delete(key)
            raise
        return record, True

    def _find_identical(self, project_id: int, debug_id: str, checksum: str) -> DebugFile | None:
        with self._db.read() as session:
            row = session.execute(
                _select_records()
                .where(
                    DebugFileRow.project_id == project_id,
                    DebugFileRow.debug_id == debug_id,
                    DebugFileRow.checksum == checksum,
                )
                .order_by(DebugFileRow.id.desc())
                .limit(1)
            ).first()
        return _record_of(row) if row else None

    def _insert_with_stored(
        self, project_id: int, meta: DifMeta, stored: StoredContent
    ) -> DebugFile | None:
        """Adds a record pointing to stored contents; None if they were deleted meanwhile."""
        try:
            with self._db.write() as session:
                if session.get(StoredFile, stored.file_id) is None:
                    return None
                row = _new_row(project_id, meta, stored.checksum, stored.size, stored.file_id)
                session.add(row)
                session.flush()
                return _record(row, stored.storage_key)
        except IntegrityError:
            return None

    def delete(self, project_id: int, debug_file_id: int) -> bool:
        """Deletes a record (and its contents if nothing else uses them)."""
        with self._db.write() as session:
            row = session.scalars(
                select(DebugFileRow).where(
                    DebugFileRow.project_id == project_id, DebugFileRow.id == debug_file_id
                )
            ).first()
            if row is None:
                return False
            file_id = row.file_id
            session.delete(row)
        self._release_contents(file_id)
        return True

    def _release_contents(self, file_id: int) -> None:
        try:
            with self._db.write() as session:
                key = session.scalar(select(StoredFile.storage_key).where(StoredFile.id == file_id))
                removed = session.execute(
                    delete(StoredFile).where(
                        StoredFile.id == file_id,
                        ~exists().where(DebugFileRow.file_id == file_id),
                    )
                )
                if not getattr(removed, "rowcount", 0):
                    return
        except IntegrityError:
            return  # A new record started to use the contents meanwhile.
        if key is not None:
            self._storage.delete(key)

    def clean_redundant(self, project_id: int, debug_id: str) -> int:
        """Deletes older files of a debug id whose features a newer file already covers.

        The newest file is always kept; of BCSymbolMaps, UUID maps and il2cpp
        mappings only the newest is kept, whatever other files there are (they
        carry no features, yet native files do not replace them). Returns how
        many records were deleted.
        """
        with self._db.read() as session:
            rows = session.execute(
                _select_records()
                .where(DebugFileRow.project_id == project_id, DebugFileRow.debug_id == debug_id)
                .order_by(DebugFileRow.id.desc())
            ).all()
        covered: set[str] = set()
        seen_singletons: set[str] = set()
        redundant = []
        for index, row in enumerate(rows):
            record = _record_of(row)
            if record.file_format in _SINGLETON_FORMATS:
                if record.file_format in seen_singletons:
                    redundant.append(record.id)
                seen_singletons.add(record.file_format)
            elif index > 0 and record.features <= covered:
                redundant.append(record.id)
            else:
                covered.update(record.features)
        for record_id in redundant:
            self.delete(project_id, record_id)
        return len(redundant)

    def count(self, project_id: int) -> int:
        with self._db.read() as session:
            return int(
                session.scalar(select(func.count()).where(DebugFileRow.project_id == project_id))
                or 0
            )


def _select_records() -> Select[DebugFileRow, str]:
    return select(DebugFileRow, StoredFile.storage_key).join(
        StoredFile, StoredFile.id == DebugFileRow.file_id
    )


def _apply_filters(
    stmt: Select[DebugFileRow, str], query: DebugFileQuery
) -> Select[DebugFileRow, str]:
    if query.debug_id:
        stmt = stmt.where(DebugFileRow.debug_id == query.debug_id)
    if query.code_id:
        stmt = stmt.where(DebugFileRow.code_id == query.code_id)
    if query.file_formats:
        stmt = stmt.where(DebugFileRow.file_format.in_(list(query.file_formats)))
    text = (query.query or "").strip()
    if not text:
        return stmt
    as_debug_id = _try(parse_debug_id, text)
    if as_debug_id is not None:
        return stmt.where(
            or_(DebugFileRow.debug_id == as_debug_id, DebugFileRow.code_id == text.lower())
        )
    as_code_id = _try(parse_code_id, text)
    pattern = f"%{text.lower()}%"
    conditions: list[ColumnElement[bool]] = [
        func.lower(DebugFileRow.object_name).like(pattern),
        func.lower(DebugFileRow.arch).like(pattern),
        DebugFileRow.debug_id.like(pattern),
        DebugFileRow.code_id.like(pattern),
    ]
    if as_code_id is not None:
        conditions.append(DebugFileRow.code_id == as_code_id)
    return stmt.where(and_(or_(*conditions)))


def _try(parse: Callable[[str], str], text: str) -> str | None:
    try:
        return parse(text)
    except ValueError:
        return None


def _new_row(
    project_id: int, meta: DifMeta, checksum: str, size: int, file_id: int
) -> DebugFileRow:
    return DebugFileRow(
        project_id=project_id,
        file_id=file_id,
        checksum=checksum,
        size=size,
        debug_id=meta.debug_id,
        code_id=meta.code_id,
        arch=meta.arch,
        object_name=meta.object_name,
        file_format=meta.file_format,
        kind=meta.kind,
        features=" ".join(sorted(meta.features)),
    )


def _record_of(row: Row[DebugFileRow, str]) -> DebugFile:
    return _record(row[0], row[1])


def _record(row: DebugFileRow, storage_key: str) -> DebugFile:
    return DebugFile(
        id=row.id,
        project_id=row.project_id,
        checksum=row.checksum,
        size=row.size,
        debug_id=row.debug_id,
        code_id=row.code_id,
        arch=row.arch,
        object_name=row.object_name,
        file_format=row.file_format,
        kind=row.kind,
        features=frozenset(row.features.split()),
        created_at=row.created_at,
        storage_key=storage_key,
    )
