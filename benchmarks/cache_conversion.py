"""Building a symcache and a CFI cache through the cache layer, against symbolic alone.

Target: `caches.symcaches.fetch` + `caches.cficaches.fetch` on a cold cache cost at most
1.15 x converting the same files with `symbolic` directly.

Two modules, each served by a `filesystem` source in `native` layout:

* `large_elf`: the fixture program built with `--large` (tests/fixtures/build.py): its code
  file `large` (symbol table + unwind info, 8 MB) and its debug companion `large.debug`
  (DWARF, 24 MB). The cache layer builds the symcache from `large.debug` and the CFI cache
  from `large`, as Symbolicator would; the direct conversion does the same.
* `libLLVM`: the biggest shared library with a build id on this machine (libLLVM-14,
  110 MB, symbol table + unwind info, no debug info): both caches from the one file.

Each run and module, in alternating order (direct first in odd runs, cache layer first in
even ones), after waiting for a quiet machine:

* direct: `symbolic.Archive.open(path)`, the object with the module's debug id,
  `make_symcache()` + `dump_into` a file, `make_cficache()` + `write_to` a file;
* cache layer: a fresh `Caches` (from `symvault.app.build_services` with a new data
  directory, so the cache is empty) and `symcaches.fetch(...)` + `cficaches.fetch(...)` for
  the module: candidate listing, object metadata of each candidate, conversion, trailer,
  rename into place.

The source files are in the page cache for both (read once before); everything written goes
to the same filesystem and is flushed (`sync`) between measurements, outside the timings.

Usage: uv run python benchmarks/cache_conversion.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import symbolic

from _harness import (
    ForeignLoad,
    bench_fixtures,
    default_workdir,
    is_disturbed,
    machine_info,
    median,
    undisturbed_run,
    wait_for_quiet_machine,
    write_result,
)
from symvault.app import build_services
from symvault.config import load_config
from symvault.model.objects import ObjectId, ObjectType
from symvault.model.sources import parse_sources

TARGET = 1.15
SYSTEM_LIBRARIES = Path("/usr/lib/x86_64-linux-gnu")


@dataclass(frozen=True)
class Case:
    """A module, the files a native-layout directory holds for it, and which file each
    cache is built from."""

    name: str
    debug_id: str
    code_id: str
    files: dict[str, Path]
    """Relative path in the source directory -> original file."""
    symcache_from: str
    cficache_from: str


def native_path(code_id: str, suffix: str = "") -> str:
    return f"{code_id[:2]}/{code_id[2:]}{suffix}"


def read_ids(path: Path) -> tuple[str, str]:
    obj = next(symbolic.Archive.open(str(path)).iter_objects())
    return obj.debug_id, obj.code_id


def biggest_library() -> Path:
    """The biggest ELF shared library with a build id in /usr/lib/x86_64-linux-gnu."""
    preferred = SYSTEM_LIBRARIES / "libLLVM-14.so.1"
    if preferred.exists():
        return preferred
    libraries = sorted(
        (p for p in SYSTEM_LIBRARIES.glob("*.so*") if p.is_file() and not p.is_symlink()),
        key=lambda p: p.stat().st_size,
        reverse=True,
    )
    for library in libraries:
        try:
            if read_ids(library)[1]:
                return library
        except symbolic.SymbolicError:
            continue
    raise SystemExit("no shared library with a build id found")


def cases(manifest: dict[str, Any]) -> list[Case]:
    large = manifest["large_elf"]
    library = biggest_library()
    debug_id, code_id = read_ids(library)
    return [
        Case(
            "large_elf",
            large["debug_id"],
            large["code_id"],
            {
                native_path(large["code_id"]): Path(large["path"]),
                native_path(large["code_id"], ".debug"): Path(manifest["large_elf_debug"]["path"]),
            },
            symcache_from=native_path(large["code_id"], ".debug"),
            cficache_from=native_path(large["code_id"]),
        ),
        Case(
            library.name.split(".so")[0],
            debug_id,
            code_id,
            {native_path(code_id): library},
            symcache_from=native_path(code_id),
            cficache_from=native_path(code_id),
        ),
    ]


def prepare_source(case: Case, directory: Path) -> None:
    """Copies the case's files into a native-layout directory and reads them once."""
    for relative, original in case.files.items():
        target = directory / relative
        if not target.exists() or target.stat().st_size != original.stat().st_size:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(original, target)
        with target.open("rb") as handle:
            while handle.read(1 << 20):
                pass


def direct(case: Case, source: Path, out: Path) -> dict[str, float]:
    """symbolic alone: open, pick the object, convert, write; both caches."""
    times: dict[str, float] = {}
    for kind, relative in (("symcache", case.symcache_from), ("cficache", case.cficache_from)):
        cpu = time.process_time()
        started = time.perf_counter()
        archive = symbolic.Archive.open(str(source / relative))
        obj = next(o for o in archive.iter_objects() if o.debug_id == case.debug_id)
        with (out / kind).open("wb") as handle:
            if kind == "symcache":
                obj.make_symcache().dump_into(handle)
            else:
                obj.make_cficache().write_to(handle)
        times[kind] = time.perf_counter() - started
        times[f"{kind}_cpu"] = time.process_time() - cpu
    return times


def through_caches(case: Case, source: Path, data_dir: Path) -> tuple[dict[str, float], dict]:
    """The cache layer on an empty cache: `symcaches.fetch` + `cficaches.fetch`."""
    config = load_config(
        None,
        {
            "data_dir": str(data_dir),
            "logging.level": "warning",
            "caches.precompute_on_upload": False,
        },
    )
    services = build_services(config)
    caches = services.caches
    sources = parse_sources([{"type": "filesystem", "id": "local", "path": str(source)}])
    object_id = ObjectId(
        debug_id=case.debug_id,
        code_id=case.code_id,
        code_file=f"/opt/{case.name}",
        debug_file=f"/opt/{case.name}",
        object_type=ObjectType.ELF,
    )
    times: dict[str, float] = {}
    chosen: dict[str, Any] = {}
    try:
        for kind, cache in (("symcache", caches.symcaches), ("cficache", caches.cficaches)):
            cpu = time.process_time()
            started = time.perf_counter()
            result = cache.fetch(object_id, sources, "global")
            times[kind] = time.perf_counter() - started
            times[f"{kind}_cpu"] = time.process_time() - cpu
            if not result.ok or result.entry is None:
                raise RuntimeError(f"{case.name}: {kind} {result.status}: {result.detail}")
            location = str(result.entry.info["object"]["location"])
            chosen[kind] = {
                "file": os.path.relpath(location, source),
                "entry_bytes": result.entry.size,
                "payload_bytes": result.entry.payload_size,
            }
    finally:
        caches.close()
        services.db.dispose()
    return times, chosen


def run_once(index: int, case: Case, source: Path, workdir: Path) -> dict[str, Any]:
    out = workdir / "direct-out"
    data_dir = workdir / f"data-{index}"
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    order = ["direct", "caches"] if index % 2 == 0 else ["caches", "direct"]
    measured: dict[str, dict[str, float]] = {}
    chosen: dict[str, Any] = {}
    other = 0.0
    for what in order:
        subprocess.run(["sync"], check=True)
        wait_for_quiet_machine()
        with ForeignLoad() as load:
            if what == "direct":
                measured[what] = direct(case, source, out)
            else:
                measured[what], chosen = through_caches(case, source, data_dir)
        other += load.seconds
    direct_sizes = {kind: (out / kind).stat().st_size for kind in ("symcache", "cficache")}
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)

    for kind in ("symcache", "cficache"):
        expected = case.symcache_from if kind == "symcache" else case.cficache_from
        if chosen[kind]["file"] != expected:
            raise RuntimeError(f"{case.name}: the cache layer used {chosen[kind]['file']}")
        if chosen[kind]["payload_bytes"] != direct_sizes[kind]:
            raise RuntimeError(f"{case.name}: {kind} sizes differ: {chosen}, {direct_sizes}")

    def total(times: dict[str, float], suffix: str = "") -> float:
        return times[f"symcache{suffix}"] + times[f"cficache{suffix}"]

    direct_total = total(measured["direct"])
    caches_total = total(measured["caches"])
    cpu_ratio = total(measured["caches"], "_cpu") / total(measured["direct"], "_cpu")
    return {
        "order": order,
        "direct_seconds": {k: round(v, 4) for k, v in measured["direct"].items()},
        "caches_seconds": {k: round(v, 4) for k, v in measured["caches"].items()},
        "direct_total": round(direct_total, 4),
        "caches_total": round(caches_total, 4),
        "ratio": round(caches_total / direct_total, 3),
        "cpu_ratio": round(cpu_ratio, 3),
        "symcache_ratio": round(measured["caches"]["symcache"] / measured["direct"]["symcache"], 3),
        "cficache_ratio": round(measured["caches"]["cficache"] / measured["direct"]["cficache"], 3),
        "chosen": chosen,
        "other_cpu_seconds": round(other, 2),
        "disturbed": is_disturbed(other, direct_total + caches_total),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=default_workdir() / "conversion")
    parser.add_argument("--name", default="cache_conversion", help="result file name")
    args = parser.parse_args()
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)

    manifest = bench_fixtures()
    results: dict[str, Any] = {}
    repeated = 0
    for case in cases(manifest):
        source = workdir / f"symbols-{case.name}"
        prepare_source(case, source)
        sizes = {rel: (source / rel).stat().st_size for rel in case.files}
        print(f"{case.name}: {sizes}", flush=True)
        runs = []
        for index in range(args.runs):
            run, thrown_away = undisturbed_run(
                lambda index=index, case=case, source=source: run_once(
                    index, case, source, workdir
                ),
                lambda result: bool(result["disturbed"]),
            )
            repeated += thrown_away
            runs.append(run)
            print(
                f"  run {index + 1} ({' then '.join(run['order'])}): direct "
                f"{run['direct_total']:.3f} s (symcache {run['direct_seconds']['symcache']:.3f}, "
                f"cficache {run['direct_seconds']['cficache']:.3f}), caches "
                f"{run['caches_total']:.3f} s (symcache {run['caches_seconds']['symcache']:.3f}, "
                f"cficache {run['caches_seconds']['cficache']:.3f}), ratio {run['ratio']:.3f}",
                flush=True,
            )
        results[case.name] = {
            "files": sizes,
            "symcache_from": case.symcache_from,
            "cficache_from": case.cficache_from,
            "median": {
                "direct_total": median([r["direct_total"] for r in runs]),
                "caches_total": median([r["caches_total"] for r in runs]),
                "ratio": median([r["ratio"] for r in runs]),
                "cpu_ratio": median([r["cpu_ratio"] for r in runs]),
                "symcache_ratio": median([r["symcache_ratio"] for r in runs]),
                "cficache_ratio": median([r["cficache_ratio"] for r in runs]),
            },
            "runs": runs,
        }
        summary = results[case.name]["median"]
        print(
            f"  median: direct {summary['direct_total']:.3f} s, caches "
            f"{summary['caches_total']:.3f} s, ratio {summary['ratio']:.3f}",
            flush=True,
        )

    worst = max(result["median"]["ratio"] for result in results.values())
    met = worst <= TARGET
    path = write_result(
        args.name,
        {
            "target": f"cache layer symcache + CFI cache build <= {TARGET} x symbolic directly",
            "met": met,
            "machine": machine_info(workdir),
            "settings": {
                "runs": args.runs,
                "runs_repeated_because_disturbed": repeated,
                "page_cache": "warm (source files read before each run)",
                "symbolic_symcache_version": symbolic.SYMCACHE_LATEST_VERSION,
                "symbolic_cficache_version": symbolic.CFICACHE_LATEST_VERSION,
            },
            "cases": results,
        },
    )
    print(f"worst median ratio {worst:.3f} (target <= {TARGET}: {'met' if met else 'NOT met'})")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
