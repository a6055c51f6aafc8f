"""Source bundle entries refuse damaged bundles with a reason instead of failing."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from symvault.caches.derived import ConversionFailed
from symvault.caches.object_meta import ObjectInfo
from symvault.caches.sourcebundles import SourceBundleConversion
from symvault.caching.entries import EntryStatus

BUNDLE = ObjectInfo(
    debug_id="f289c373-4f23-87ee-ad42-a516c2b824b0",
    code_id=None,
    arch="x86_64",
    file_format="sourcebundle",
    kind="sources",
    features=frozenset({"sources"}),
)


def bundle(tmp_path: Path, manifest: bytes | None) -> Path:
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as archive:
        if manifest is not None:
            archive.writestr("manifest.json", manifest)
        archive.writestr("files/main.c", b"int main(void) { return 0; }\n")
    return path


def test_a_sound_bundle_is_copied(tmp_path: Path) -> None:
    manifest = b'{"files": {"files/main.c": {"type": "source", "path": "/src/main.c"}}}'
    target = tmp_path / "entry"
    info = SourceBundleConversion().convert(bundle(tmp_path, manifest), BUNDLE, target)
    assert info == {"files": 1}
    assert target.read_bytes() == (tmp_path / "bundle.zip").read_bytes()


@pytest.mark.parametrize(
    ("manifest", "detail"),
    [
        (None, "damaged source bundle: \"There is no item named 'manifest.json' in the archive\""),
        (b"{", "damaged source bundle: Expecting property name"),
        (b"[]", "damaged source bundle: manifest.json has no files"),
        (
            b"[" * 100_000 + b"]" * 100_000,
            "damaged source bundle: its manifest is nested too deeply",
        ),
    ],
)
def test_damaged_bundles(tmp_path: Path, manifest: bytes | None, detail: str) -> None:
    target = tmp_path / "entry"
    with pytest.raises(ConversionFailed) as caught:
        SourceBundleConversion().convert(bundle(tmp_path, manifest), BUNDLE, target)
    assert caught.value.status is EntryStatus.MALFORMED
    assert caught.value.detail.startswith(detail)
    assert not target.exists()
