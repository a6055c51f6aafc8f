"""Cache cleanup over 100,000 entries, against a plain walk of the same directory tree.

Requirement: report the time of `cleanup` over a cache of 100,000 entries against a plain
directory walk of the same tree, in the same run.

The tree is generated with a fixed seed, laid out as the caches lay out their files
(docs/caching.md), and written the way the caches write: framed entries get their trailer
from `symvault.caching.entries.write_trailer`. Its make-up (default 100,000 entries):

* kinds: 15 % `objects` (raw downloaded files), 20 % `object_meta` (trailer only),
  30 % `symcaches`, 25 % `cficaches`, 10 % `sourcebundles`; a third of them in `global`,
  the rest in 20 request scopes; 6 sources; entries of one (scope, source) share a directory;
* statuses: `ok`, except for 25 % placeholders among symcaches and CFI caches and 80 % among
  source bundles (`notfound` 80 %, `error` 10 %, `malformed` 10 % of placeholders);
* payload sizes: log-uniform, 50 KiB-20 MiB for downloaded files, 10 KiB-8 MiB for
  symcaches, 5 KiB-4 MiB for CFI caches, 10 KiB-1 MiB for source bundles; written sparse (only
  the trailer occupies disk blocks), so `st_size` is realistic while the tree stays small;
* ages (mtime): uniform over 0-8 days, as after a week without cleanup: ~1 % younger than
  the shortest lifetime (5 min, kept without reading), ~12 % older than the longest (7 days,
  removed without reading), the rest have their trailer read;
* plus a lock file (`locks/<kind>/<xx>/<sha1>.lock`) for every entry younger than two days
  (half of them older than a day: stale, removed if nobody holds them) and 50 temporary files.

Measured in each run, warm (the tree just written or read) and cold (after dropping the page,
dentry and inode caches; root only):

* `walk_names`: `os.walk` over the whole cache root, counting files;
* `walk_stat`: recursive `os.scandir` with a `stat` of every file (what cleanup must know);
* `walk_stat_trailers`: the same, plus reading the trailer of every framed entry whose age
  lies between the shortest and longest lifetime (the least work the rules need);
* `cleanup_dry_run`: `run_cleanup(..., dry_run=True)` with the default configuration;
* `cleanup`: the real thing, on a freshly generated copy of the tree;
* `cleanup_budget`: the real thing with `caches.max_size` at 80 % of the tree's size, so that
  least recently used entries are evicted too;
* `cli_dry_run` (warm): `python -m symvault cleanup --dry-run` on the tree, process start
  included.

Usage: uv run python benchmarks/cache_cleanup.py [--runs 3] [--entries 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from _harness import (
    ForeignLoad,
    default_workdir,
    drop_caches,
    drop_caches_available,
    is_disturbed,
    machine_info,
    median,
    server_environment,
    undisturbed_run,
    wait_for_quiet_machine,
    write_result,
)
from symvault.caches.service import Caches
from symvault.caching.cleanup import CleanupReport, SpaceBudget, run_cleanup
from symvault.caching.entries import EntryStatus, write_trailer
from symvault.config import load_config
from symvault.metrics import Metrics

DAY = 86400.0
KIB = 1024
MIB_ = 1024 * KIB
#: kind: (share of entries, placeholder share, (smallest, largest) payload)
KINDS: dict[str, tuple[float, float, tuple[int, int]]] = {
    "objects": (0.15, 0.0, (50 * KIB, 20 * MIB_)),
    "object_meta": (0.20, 0.0, (0, 0)),
    "symcaches": (0.30, 0.25, (10 * KIB, 8 * MIB_)),
    "cficaches": (0.25, 0.25, (5 * KIB, 4 * MIB_)),
    "sourcebundles": (0.10, 0.80, (10 * KIB, 1 * MIB_)),
}
PLACEHOLDERS = (
    (EntryStatus.NOT_FOUND, 0.8),
    (EntryStatus.ERROR, 0.1),
    (EntryStatus.MALFORMED, 0.1),
)
SCOPES = ["global"] * 10 + [f"org-{n}" for n in range(20)]
SOURCES = [f"{kind}-{n:016x}" for n, kind in enumerate(["http", "http", "s3", "sentry", "store"])]
SOURCES.append("filesystem-00000000000000ff")
SHORTEST = 300.0  # retry_errors_after, the shortest lifetime of the default configuration
LONGEST = 7 * DAY  # max_unused_for, the longest


# The tree


def _pick(rng: random.Random, table: tuple[tuple[EntryStatus, float], ...]) -> EntryStatus:
    value = rng.random()
    for status, share in table:
        if value < share:
            return status
        value -= share
    return table[-1][0]


def _size(rng: random.Random, smallest: int, largest: int) -> int:
    if largest == 0:
        return 0
    return int(math.exp(rng.uniform(math.log(smallest), math.log(largest))))


def _info(rng: random.Random, kind: str, module: str, source: str) -> dict[str, Any]:
    """Trailer info shaped like the caches' own: candidates, the object used, versions."""
    if kind == "object_meta":
        return {
            "objects": [
                {
                    "debug_id": module[:36],
                    "code_id": hashlib.sha1(module.encode()).hexdigest(),
                    "arch": "x86_64",
                    "file_format": "elf",
                    "kind": "dbg",
                    "features": ["debug", "symtab"],
                }
            ]
        }
    location = f"https://symbols.example.com/{source}/{module[:2]}/{module[2:40]}.debug"
    candidates = [
        {"source": source, "location": location, "download": {"status": "ok"}}
        for _ in range(rng.randint(1, 3))
    ]
    return {
        "candidates": candidates,
        "object": {"debug_id": module[:36], "arch": "x86_64", "location": location},
        "fallback": False,
        "format_version": 8,
    }


def generate_tree(root: Path, entries: int, seed: int, now: float) -> dict[str, Any]:
    """Writes the cache tree; returns what it holds."""
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(seed)
    kinds = list(KINDS)
    weights = [KINDS[kind][0] for kind in kinds]
    counts = dict.fromkeys(kinds, 0)
    apparent = 0
    locks = 0
    made_dirs: set[str] = set()

    def directory(path: str) -> None:
        if path not in made_dirs:
            Path(path).mkdir(parents=True, exist_ok=True)
            made_dirs.add(path)

    for index in range(entries):
        kind = rng.choices(kinds, weights)[0]
        counts[kind] += 1
        _, placeholder_share, (smallest, largest) = KINDS[kind]
        scope = rng.choice(SCOPES)
        source = rng.choice(SOURCES)
        digest = hashlib.sha1(f"{seed}-{index}".encode()).hexdigest()
        module = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        if kind in ("objects", "object_meta"):
            parent = f"{root}/{kind}/v1/{scope}/{source}/{digest[:2]}"
            name = digest[2:40]
        else:
            parent = f"{root}/{kind}/v1/{scope}/{source}"
            name = f"{module}_{digest[24:40]}"
        directory(parent)
        path = f"{parent}/{name}"
        age = rng.uniform(0, 8 * DAY)
        mtime = now - age
        ok = rng.random() >= placeholder_share
        size = _size(rng, smallest, largest) if ok else 0
        with open(path, "wb") as handle:  # noqa: PTH123 (100,000 files: no Path objects)
            if size:
                handle.truncate(size)
        if kind != "objects":
            status = EntryStatus.OK if ok else _pick(rng, PLACEHOLDERS)
            info = _info(rng, kind, module, source) if ok else {"candidates": []}
            detail = None if ok else f"{status.value}: no file at {source}"
            write_trailer(Path(path), status, detail, info)
        apparent += Path(path).stat().st_size
        os.utime(path, (mtime, mtime))
        if age < 2 * DAY:
            lock_digest = hashlib.sha1(f"{scope}/{source}/{name}".encode()).hexdigest()
            lock_dir = f"{root}/locks/{kind}/{lock_digest[:2]}"
            directory(lock_dir)
            lock = f"{lock_dir}/{lock_digest}.lock"
            with open(lock, "wb"):  # noqa: PTH123
                pass
            os.utime(lock, (mtime, mtime))
            locks += 1
    directory(f"{root}/tmp")
    for index in range(50):
        tmp = f"{root}/tmp/symcaches-{index}-{index:032x}"
        with open(tmp, "wb") as handle:  # noqa: PTH123
            handle.write(b"x" * 100)
        stamp = now - rng.uniform(0, 3 * 3600)
        os.utime(tmp, (stamp, stamp))
    return {
        "entries": entries,
        "by_kind": counts,
        "lock_files": locks,
        "tmp_files": 50,
        "directories": len(made_dirs),
        "apparent_bytes": apparent,
    }


# Walks


def walk_names(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def _scan(path: str, visit: Callable[[str, os.stat_result], None]) -> int:
    count = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                count += _scan(entry.path, visit)
            elif entry.is_file(follow_symlinks=False):
                visit(entry.path, entry.stat(follow_symlinks=False))
                count += 1
    return count


def walk_stat(root: Path) -> int:
    return _scan(str(root), lambda _path, _stat: None)


def walk_stat_trailers(root: Path, now: float) -> int:
    """Stats every file and reads the trailer of framed entries of intermediate age."""
    raw_prefix = f"{root}/objects/"
    derived_prefixes = tuple(f"{root}/{kind}/" for kind in KINDS if kind != "objects")

    def visit(path: str, stat: os.stat_result) -> None:
        if not path.startswith(derived_prefixes) or path.startswith(raw_prefix):
            return
        if not SHORTEST < now - stat.st_mtime <= LONGEST:
            return
        with open(path, "rb") as handle:  # noqa: PTH123
            handle.seek(stat.st_size - 12)
            tail = handle.read(12)
            length = int.from_bytes(tail[:4], "big")
            handle.seek(stat.st_size - 12 - length)
            json.loads(handle.read(length))

    return _scan(str(root), visit)


# Cleanup


def policies(root: Path) -> list[Any]:
    config = load_config(None, {"cache_dir": str(root), "data_dir": str(root.parent / "data")})
    caches = Caches(config, Metrics(), None, None, None)  # type: ignore[arg-type]
    try:
        return caches.policies()
    finally:
        caches.close()


def cleanup(root: Path, now: float, dry_run: bool, max_size: int | None = None) -> CleanupReport:
    return run_cleanup(
        root, policies(root), SpaceBudget(max_size=max_size), now, Metrics(), dry_run=dry_run
    )


def report_json(report: CleanupReport) -> dict[str, Any]:
    return {
        "removed": report.removed,
        "removed_bytes": report.removed_bytes,
        "stale_files": report.stale_files,
        "kept": sum(kind.entries for kind in report.kinds.values()),
        "expired": sum(kind.expired for kind in report.kinds.values()),
        "evicted": sum(kind.evicted for kind in report.kinds.values()),
    }


def cli_dry_run(root: Path, workdir: Path) -> None:
    config = workdir / "cleanup.yml"
    config.write_text(yaml.safe_dump({"cache_dir": str(root), "logging": {"level": "warning"}}))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "symvault",
            "cleanup",
            "--dry-run",
            "--config",
            str(config),
            "--data-dir",
            str(workdir / "cli-data"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        env=server_environment(),
    )


def run_once(workdir: Path, entries: int, seed: int, cold_available: bool) -> dict[str, Any]:
    root = workdir / "cache"
    now = time.time()
    timings: dict[str, dict[str, float]] = {"warm": {}, "cold": {}}
    details: dict[str, Any] = {}
    other = 0.0
    busy = 0.0

    def measure(label: str, cold: bool, action: Callable[[], Any]) -> Any:
        nonlocal other, busy
        os.sync()
        if cold:
            drop_caches()
        wait_for_quiet_machine()
        with ForeignLoad() as load:
            started = time.perf_counter()
            result = action()
            elapsed = time.perf_counter() - started
        other += load.seconds
        busy += elapsed
        timings["cold" if cold else "warm"][label] = round(elapsed, 3)
        print(f"    {'cold' if cold else 'warm'} {label}: {elapsed:.2f} s", flush=True)
        return result

    started = time.perf_counter()
    tree = generate_tree(root, entries, seed, now)
    details["generate_seconds"] = round(time.perf_counter() - started, 1)
    details["tree"] = tree
    files = measure("walk_names", False, lambda: walk_names(root))
    details["files_walked"] = files
    measure("walk_stat", False, lambda: walk_stat(root))
    measure("walk_stat_trailers", False, lambda: walk_stat_trailers(root, now))
    dry = measure("cleanup_dry_run", False, lambda: cleanup(root, now, dry_run=True))
    details["dry_run"] = report_json(dry)
    measure("cli_dry_run", False, lambda: cli_dry_run(root, workdir))
    if cold_available:
        measure("walk_names", True, lambda: walk_names(root))
        measure("walk_stat", True, lambda: walk_stat(root))
        measure("walk_stat_trailers", True, lambda: walk_stat_trailers(root, now))
        measure("cleanup_dry_run", True, lambda: cleanup(root, now, dry_run=True))
    real = measure("cleanup", False, lambda: cleanup(root, now, dry_run=False))
    details["cleanup"] = report_json(real)
    if real.removed != dry.removed:
        raise RuntimeError(f"dry run said {dry.removed} removals, cleanup made {real.removed}")
    budget = int(0.8 * tree["apparent_bytes"])
    details["budget_max_size"] = budget
    variants: list[tuple[str, int | None]] = [("cleanup_budget", budget)]
    if cold_available:
        variants.insert(0, ("cleanup", None))
    for label, max_size in variants:
        generate_tree(root, entries, seed, now)
        cold = cold_available
        result = measure(label, cold, lambda m=max_size: cleanup(root, now, False, m))
        details[f"{label}_{'cold' if cold else 'warm'}"] = report_json(result)
    shutil.rmtree(root, ignore_errors=True)
    for mode in ("warm", "cold"):
        base = timings[mode].get("walk_stat")
        if base:
            timings[mode + "_vs_walk_stat"] = {
                label: round(value / base, 2) for label, value in timings[mode].items()
            }
    return {
        "seconds": timings,
        **details,
        "other_cpu_seconds": round(other, 2),
        "disturbed": is_disturbed(other, busy),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=default_workdir() / "cleanup")
    parser.add_argument("--name", default="cache_cleanup", help="result file name")
    args = parser.parse_args()
    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    cold = drop_caches_available()
    if not cold:
        print("cannot drop the page cache (not root?): warm measurements only")

    runs = []
    repeated = 0
    for index in range(args.runs):
        print(f"run {index + 1}", flush=True)
        run, thrown_away = undisturbed_run(
            lambda: run_once(workdir, args.entries, args.seed, cold),
            lambda result: bool(result["disturbed"]),
        )
        repeated += thrown_away
        runs.append(run)

    medians: dict[str, dict[str, float]] = {}
    for mode in ("warm", "cold"):
        labels = runs[0]["seconds"][mode]
        medians[mode] = {
            label: median([run["seconds"][mode][label] for run in runs]) for label in labels
        }
        base = medians[mode].get("walk_stat")
        if base:
            medians[mode + "_vs_walk_stat"] = {
                label: round(value / base, 2) for label, value in medians[mode].items()
            }
    path = write_result(
        args.name,
        {
            "target": "report cleanup time over 100,000 entries against a plain walk",
            "machine": machine_info(workdir),
            "settings": {
                "runs": args.runs,
                "entries": args.entries,
                "seed": args.seed,
                "cold_measured": cold,
                "runs_repeated_because_disturbed": repeated,
            },
            "median": medians,
            "runs": runs,
        },
    )
    for mode in ("warm", "cold"):
        if medians[mode]:
            print(
                f"{mode}: "
                + ", ".join(f"{label} {value:.2f} s" for label, value in medians[mode].items())
            )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
