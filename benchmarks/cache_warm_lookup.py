"""Warm cache lookups: `DerivedCache.fetch` of symcaches that are already on disk.

Target: a warm lookup (the entry is on disk) costs under 100 microseconds of server time.

The 8 modules of the symbolication benchmarks (ELF C/C++/Rust, PE/PDB, Mach-O x86_64 and
arm64, WebAssembly, Breakpad) sit in a `filesystem` source in `native` layout; their
symcaches are computed once, then looked up in the benchmark process, each call timed on its
own (`perf_counter_ns`), cycling over the 8 modules:

* `memo_hit`: `symcaches.fetch(...)` within MEMO_SECONDS of the previous lookup of the same
  module: answered from the in-memory memo.
* `memo_expired`: the memo has always expired: the `Caches` object gets an injected clock
  that moves MEMO_SECONDS / 8 + 10 ms ahead before every call, so each module's previous
  lookup is more than MEMO_SECONDS old. The lookup goes to disk (stat of the entry; the
  parsed trailer and result are still remembered by the process, keyed by the file's
  identity). Fake time advances 5.7 s per lookup of a module, so every ~630 lookups of a
  module the entry is due for its hourly mtime touch (`os.utime`), after which its trailer is
  read and parsed again, as in a server asked for the module every 5 s.
* `fresh_process`: a new `Caches` object for every batch of 8 lookups (one per module): no
  memo, no remembered trailers: stat, open, read and parse the trailer, build the result.
  `fresh_process_cold_disk` is the same after dropping the page cache (root only).
* `memo_hit_3_sources`, `memo_expired_3_sources`: the same with two sources that do not have
  the modules (empty directories, so their entries are `notfound` placeholders) before the
  one that has them, as with a configuration of several symbol servers.

And the symcache lookups themselves, per call:

* `handle_hit`: `SymcacheHandles.get(entry)` for an entry whose symcache is already mapped;
* `symcache_open`: `symbolic.SymCache.open(path)` (what a handle miss costs);
* `lookup_memo_hit`: symvault's `Symcache.lookup(address)` for an address seen before;
* `symbolic_lookup`: symbolic's `SymCache.lookup(address)` plus reading each location's
  fields (what `Symcache.lookup` does on a miss), and `symbolic_lookup_bare` without reading
  the fields; the 64 addresses of the symbolication benchmark's stack trace.

Usage: uv run python benchmarks/cache_warm_lookup.py [--runs 5] [--calls 20000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import symbolic

from _harness import (
    BenchModule,
    ForeignLoad,
    default_workdir,
    drop_caches,
    drop_caches_available,
    is_disturbed,
    lookup_plan,
    machine_info,
    median,
    native_symbols,
    percentile,
    undisturbed_run,
    wait_for_quiet_machine,
    write_result,
)
from symvault.caches.derived import MEMO_SECONDS, DerivedCache
from symvault.caches.service import Caches
from symvault.caches.symcaches import SymcacheHandles
from symvault.config import load_config
from symvault.metrics import Metrics
from symvault.model.sources import SourceConfig, parse_sources

TARGET_US = 100.0


class FakeClock:
    """A clock that the benchmark moves forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make_caches(cache_dir: Path, clock: Callable[[], float] = time.time) -> Caches:
    """A `Caches` for filesystem sources only (no store: no database needed)."""
    config = load_config(None, {"cache_dir": str(cache_dir), "data_dir": str(cache_dir.parent)})
    return Caches(config, Metrics(), None, None, None, clock=clock)  # type: ignore[arg-type]


def timed_calls(calls: int, call: Callable[[int], object]) -> list[float]:
    """Microseconds of each of `calls` calls of `call(i)`."""
    clock = time.perf_counter_ns
    samples = []
    for index in range(calls):
        started = clock()
        call(index)
        samples.append((clock() - started) / 1000)
    return samples


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "calls": len(samples),
        "mean_us": round(statistics.fmean(samples), 3),
        "median_us": round(statistics.median(samples), 3),
        "p99_us": round(percentile(samples, 0.99), 3),
        "max_us": round(max(samples), 1),
    }


def fetch_loop(
    cache: DerivedCache,
    ids: list[Any],
    sources: Sequence[SourceConfig],
    calls: int,
    clock: FakeClock | None = None,
    step: float = 0.0,
) -> list[float]:
    count = len(ids)

    def call(index: int) -> None:
        if clock is not None:
            clock.now += step
        result = cache.fetch(ids[index % count], sources, "global")
        if not result.ok:
            raise RuntimeError(f"lookup failed: {result.status} {result.detail}")

    return timed_calls(calls, call)


def fresh_process(
    cache_dir: Path, ids: list[Any], sources: Sequence[SourceConfig], batches: int, cold: bool
) -> list[float]:
    samples: list[float] = []
    for _ in range(batches):
        caches = make_caches(cache_dir)
        if cold:
            drop_caches()
        try:
            samples += fetch_loop(caches.symcaches, ids, sources, len(ids))
        finally:
            caches.close()
    return samples


def symcache_lookups(
    caches: Caches, modules: list[BenchModule], sources: Sequence[SourceConfig], calls: int
) -> dict[str, dict[str, float]]:
    entries = []
    for module in modules:
        result = caches.symcaches.fetch(module.object_id(), sources, "global")
        assert result.entry is not None
        entries.append(result.entry)
    handles = SymcacheHandles()
    wrappers = [handles.get(entry) for entry in entries]
    raw = [symbolic.SymCache.open(str(entry.path)) for entry in entries]
    pairs = [(index, address) for index, addresses in lookup_plan(modules) for address in addresses]
    for index, address in pairs:  # fill the lookup memo, and check that every frame resolves
        if not wrappers[index].lookup(address):
            raise RuntimeError(f"{modules[index].name}: nothing at {address:#x}")
    count = len(entries)
    frames = len(pairs)

    def read_fields(locations: list[Any]) -> None:
        for location in locations:
            _ = (location.symbol, location.lang, location.sym_addr, location.full_path)
            _ = location.line

    return {
        "handle_hit": summary(timed_calls(calls, lambda i: handles.get(entries[i % count]))),
        "symcache_open": summary(
            timed_calls(
                max(count, calls // 20),
                lambda i: symbolic.SymCache.open(str(entries[i % count].path)),
            )
        ),
        "lookup_memo_hit": summary(
            timed_calls(
                calls,
                lambda i: wrappers[pairs[i % frames][0]].lookup(pairs[i % frames][1]),
            )
        ),
        "symbolic_lookup": summary(
            timed_calls(
                calls,
                lambda i: read_fields(raw[pairs[i % frames][0]].lookup(pairs[i % frames][1])),
            )
        ),
        "symbolic_lookup_bare": summary(
            timed_calls(calls, lambda i: raw[pairs[i % frames][0]].lookup(pairs[i % frames][1]))
        ),
    }


def run_once(
    workdir: Path,
    modules: list[BenchModule],
    symbols: Path,
    empty: list[Path],
    calls: int,
    batches: int,
    cold: bool,
) -> dict[str, Any]:
    cache_dir = workdir / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    one = parse_sources([{"type": "filesystem", "id": "symbols", "path": str(symbols)}])
    three = parse_sources(
        [
            *(
                {"type": "filesystem", "id": f"empty-{n}", "path": str(path)}
                for n, path in enumerate(empty)
            ),
            {"type": "filesystem", "id": "symbols", "path": str(symbols)},
        ]
    )
    ids = [module.object_id() for module in modules]
    # Compute every entry once (and the placeholders of the empty sources).
    caches = make_caches(cache_dir)
    fetch_loop(caches.symcaches, ids, one, len(ids))
    fetch_loop(caches.symcaches, ids, three, len(ids))
    caches.close()

    wait_for_quiet_machine()
    results: dict[str, Any] = {}
    with ForeignLoad() as load:
        started = time.perf_counter()
        timer = timed_calls(calls, lambda _: None)
        results["timer_overhead"] = summary(timer)
        step = MEMO_SECONDS / len(ids) + 0.01
        for label, sources in (("", one), ("_3_sources", three)):
            caches = make_caches(cache_dir)
            fetch_loop(caches.symcaches, ids, sources, len(ids))  # warm the process caches
            results[f"memo_hit{label}"] = summary(fetch_loop(caches.symcaches, ids, sources, calls))
            caches.close()
            clock = FakeClock()
            caches = make_caches(cache_dir, clock)
            fetch_loop(caches.symcaches, ids, sources, len(ids), clock, step)
            results[f"memo_expired{label}"] = summary(
                fetch_loop(caches.symcaches, ids, sources, calls, clock, step)
            )
            caches.close()
        results["fresh_process"] = summary(fresh_process(cache_dir, ids, one, batches, False))
        caches = make_caches(cache_dir)
        results.update(symcache_lookups(caches, modules, one, calls))
        caches.close()
        elapsed = time.perf_counter() - started
    if cold:
        results["fresh_process_cold_disk"] = summary(
            fresh_process(cache_dir, ids, one, max(3, batches // 10), True)
        )
    results["other_cpu_seconds"] = load.seconds
    results["disturbed"] = is_disturbed(load.seconds, elapsed)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per measurement")
    parser.add_argument("--batches", type=int, default=100, help="fresh Caches objects per run")
    parser.add_argument("--workdir", type=Path, default=default_workdir() / "warm-lookup")
    parser.add_argument("--name", default="cache_warm_lookup", help="result file name")
    args = parser.parse_args()
    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)

    native = native_symbols(workdir)
    modules, symbols = native.modules, native.directory
    empty = [workdir / "empty-a", workdir / "empty-b"]
    for path in empty:
        path.mkdir()
    cold = drop_caches_available()

    runs = []
    repeated = 0
    for index in range(args.runs):
        run, thrown_away = undisturbed_run(
            lambda: run_once(workdir, modules, symbols, empty, args.calls, args.batches, cold),
            lambda result: bool(result["disturbed"]),
        )
        repeated += thrown_away
        runs.append(run)
        print(
            f"run {index + 1}: "
            + ", ".join(
                f"{name} {value['median_us']:.2f}/{value['mean_us']:.2f} us"
                for name, value in run.items()
                if isinstance(value, dict)
            ),
            flush=True,
        )

    names = [name for name, value in runs[0].items() if isinstance(value, dict)]
    medians = {
        name: {
            "median_us": median([run[name]["median_us"] for run in runs]),
            "mean_us": median([run[name]["mean_us"] for run in runs]),
            "p99_us": median([run[name]["p99_us"] for run in runs]),
        }
        for name in names
    }
    disk_lookups = ("memo_expired", "memo_expired_3_sources", "fresh_process")
    worst = max(medians[name]["mean_us"] for name in ("memo_hit", *disk_lookups))
    met = worst < TARGET_US
    path = write_result(
        args.name,
        {
            "target": f"warm DerivedCache.fetch (entry on disk) < {TARGET_US} us",
            "met": met,
            "machine": machine_info(workdir),
            "settings": {
                "runs": args.runs,
                "calls": args.calls,
                "fresh_process_batches": args.batches,
                "modules": [module.name for module in modules],
                "memo_seconds": MEMO_SECONDS,
                "runs_repeated_because_disturbed": repeated,
            },
            "median": medians,
            "runs": runs,
        },
    )
    for name, value in medians.items():
        print(
            f"{name:28} median {value['median_us']:8.2f} us  mean {value['mean_us']:8.2f} us  "
            f"p99 {value['p99_us']:8.2f} us"
        )
    print(
        f"slowest warm lookup (mean) {worst:.1f} us (target < {TARGET_US} us: "
        f"{'met' if met else 'NOT met'}); written to {path}"
    )


if __name__ == "__main__":
    main()
