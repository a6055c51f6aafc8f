"""S3 sources against a real S3-compatible endpoint: moto's server, as a subprocess.

moto checks credentials and IAM policies once its first few (setup) requests
are done (`INITIAL_NO_AUTH_ACTION_COUNT`), so wrong keys and missing
permissions are answered as S3 answers them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest

from symvault.caches.derived import DerivedResult
from symvault.caches.service import Caches
from symvault.caching.entries import EntryStatus, read_trailer
from symvault.model.objects import ObjectId
from symvault.model.sources import SourceConfig, parse_sources
from tests.integration.caches.conftest import CrashModules, FixturePath, World
from tests.support.server import free_port

#: Setup requests moto answers without checking credentials: two users, one
#: policy, two access keys. Every later request must be signed with a real key.
_SETUP_REQUESTS = 5


@dataclass(frozen=True)
class Moto:
    endpoint: str
    access_key: str
    secret_key: str
    #: Keys of a user that exists but may not read any bucket.
    powerless_key: str
    powerless_secret: str

    client: Any

    def s3(self) -> Any:
        return self.client


def _create_user(iam: Any, name: str, policy: dict[str, Any] | None) -> tuple[str, str]:
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_REQUESTS)},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.05)
        iam = boto3.session.Session().client(
            "iam",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        allow_all = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        key, secret = _create_user(iam, "symbols", allow_all)
        powerless_key, powerless_secret = _create_user(iam, "nobody", None)
        client = boto3.session.Session().client(
            "s3",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        yield Moto(endpoint, key, secret, powerless_key, powerless_secret, client)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def bucket(moto: Moto) -> str:
    name = f"symbols-{uuid.uuid4().hex[:12]}"
    moto.s3().create_bucket(Bucket=name)
    return name


def s3_source(moto: Moto, bucket: str, **fields: Any) -> SourceConfig:
    definition = {
        "type": "s3",
        "id": "s3",
        "bucket": bucket,
        "region": ["us-east-1", moto.endpoint],
        "access_key": moto.access_key,
        "secret_key": moto.secret_key,
        **fields,
    }
    return parse_sources([definition])[0]


def symcache(caches: Caches, config: SourceConfig, module: ObjectId) -> DerivedResult:
    return caches.symcaches.fetch(module, [config], "global")


def allowed(world: World, **overrides: Any) -> Caches:
    return world.caches(connect_to_reserved_ips=True, download_retries=0, **overrides)


def test_found_downloaded_and_converted(
    world: World, moto: Moto, bucket: str, fixture_file: FixturePath, crash: CrashModules
) -> None:
    debug = fixture_file("crash_elf_debug").read_bytes()
    moto.s3().put_object(Bucket=bucket, Key=crash.debug_path, Body=debug)
    result = symcache(allowed(world), s3_source(moto, bucket), crash.elf)
    assert result.ok
    assert not result.fallback
    assert result.entry is not None
    assert result.entry.info["object"]["location"] == f"s3://{bucket}/{crash.debug_path}"
    downloads = [p for p in (world.cache_dir / "objects").rglob("*") if p.is_file()]
    assert [path.read_bytes() for path in downloads] == [debug]


@pytest.mark.parametrize(
    ("prefix", "stored_under"),
    [
        ("symbols", "symbols/"),
        ("/symbols/", "symbols/"),
        ("team/symbols/", "team/symbols/"),
        ("", ""),
    ],
)
def test_prefixes(
    world: World,
    moto: Moto,
    bucket: str,
    fixture_file: FixturePath,
    prefix: str,
    stored_under: str,
    crash: CrashModules,
) -> None:
    key = stored_under + crash.debug_path
    moto.s3().put_object(Bucket=bucket, Key=key, Body=fixture_file("crash_elf_debug").read_bytes())
    result = symcache(allowed(world), s3_source(moto, bucket, prefix=prefix), crash.elf)
    assert result.ok
    assert result.entry is not None
    assert result.entry.info["object"]["location"] == f"s3://{bucket}/{key}"


def test_a_file_under_another_prefix_is_not_found(
    world: World, moto: Moto, bucket: str, fixture_file: FixturePath, crash: CrashModules
) -> None:
    body = fixture_file("crash_elf_debug").read_bytes()
    moto.s3().put_object(Bucket=bucket, Key=f"other/{crash.debug_path}", Body=body)
    caches = allowed(world)
    result = symcache(caches, s3_source(moto, bucket, prefix="symbols"), crash.elf)
    assert result.status is EntryStatus.NOT_FOUND
    assert {c.status.value for c in result.candidates} == {"notfound"}
    entry = caches.symcaches.cacher.path_for(
        caches.symcaches.key(s3_source(moto, bucket, prefix="symbols"), crash.elf, "global")
    )
    assert read_trailer(entry)[0] is EntryStatus.NOT_FOUND


def test_a_missing_bucket_is_not_found(world: World, moto: Moto, crash: CrashModules) -> None:
    result = symcache(allowed(world), s3_source(moto, "no-such-bucket-here"), crash.elf)
    assert result.status is EntryStatus.NOT_FOUND


@pytest.mark.parametrize("wrong", ["access_key", "secret_key"])
def test_wrong_credentials_are_no_permission(
    world: World,
    moto: Moto,
    bucket: str,
    fixture_file: FixturePath,
    wrong: str,
    crash: CrashModules,
) -> None:
    moto.s3().put_object(
        Bucket=bucket, Key=crash.debug_path, Body=fixture_file("crash_elf_debug").read_bytes()
    )
    credentials = {"access_key": moto.access_key, "secret_key": moto.secret_key}
    credentials[wrong] = "AKIAWRONGWRONGWRONG0" if wrong == "access_key" else "wrong"
    result = symcache(allowed(world), s3_source(moto, bucket, **credentials), crash.elf)
    assert result.status is EntryStatus.NO_PERMISSION
    codes = {c.details for c in result.candidates}
    assert codes == {"InvalidAccessKeyId" if wrong == "access_key" else "SignatureDoesNotMatch"}


def test_a_user_without_permission_is_no_permission(
    world: World, moto: Moto, bucket: str, fixture_file: FixturePath, crash: CrashModules
) -> None:
    moto.s3().put_object(
        Bucket=bucket, Key=crash.debug_path, Body=fixture_file("crash_elf_debug").read_bytes()
    )
    config = s3_source(
        moto, bucket, access_key=moto.powerless_key, secret_key=moto.powerless_secret
    )
    result = symcache(allowed(world), config, crash.elf)
    assert result.status is EntryStatus.NO_PERMISSION
    assert {c.details for c in result.candidates} == {"AccessDenied"}


def test_compressed_objects_are_unpacked(
    world: World, moto: Moto, bucket: str, fixture_file: FixturePath, crash: CrashModules
) -> None:
    debug = fixture_file("crash_elf_debug").read_bytes()
    moto.s3().put_object(Bucket=bucket, Key=crash.debug_path, Body=zlib.compress(debug))
    assert symcache(allowed(world), s3_source(moto, bucket), crash.elf).ok


def test_max_download_size(
    world: World, moto: Moto, bucket: str, fixture_file: FixturePath, crash: CrashModules
) -> None:
    debug = fixture_file("crash_elf_debug").read_bytes()
    moto.s3().put_object(Bucket=bucket, Key=crash.debug_path, Body=debug)
    result = symcache(
        allowed(world, max_download_size=len(debug) - 1), s3_source(moto, bucket), crash.elf
    )
    assert result.status is EntryStatus.ERROR
    assert result.detail is not None
    assert "larger than the limit" in result.detail


def test_endpoint_on_a_reserved_address_needs_permission(
    world: World, moto: Moto, bucket: str, fixture_file: FixturePath, crash: CrashModules
) -> None:
    moto.s3().put_object(
        Bucket=bucket, Key=crash.debug_path, Body=fixture_file("crash_elf_debug").read_bytes()
    )
    refused = symcache(
        world.caches(connect_to_reserved_ips=False, reserved_ip_allowlist=[]),
        s3_source(moto, bucket),
        crash.elf,
    )
    assert refused.status is EntryStatus.ERROR
    assert refused.detail is not None
    assert "refusing to connect to 127.0.0.1" in refused.detail
    # The allowlist is enough (the default of these tests).
    world.cache_dir = world.tmp_path / "other-cache"
    assert symcache(world.caches(), s3_source(moto, bucket), crash.elf).ok


def test_twenty_lookups_one_download(
    world: World, moto: Moto, bucket: str, fixture_file: FixturePath, crash: CrashModules
) -> None:
    moto.s3().put_object(
        Bucket=bucket, Key=crash.debug_path, Body=fixture_file("crash_elf_debug").read_bytes()
    )
    caches = allowed(world)
    config = s3_source(moto, bucket)
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: symcache(caches, config, crash.elf), range(20)))
    assert all(result.ok for result in results)
    assert world.metric("symvault_source_downloads_total", source_type="s3", outcome="ok") == 1
