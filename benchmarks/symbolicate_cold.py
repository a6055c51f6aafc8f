"""Cold symbolication: one `/symbolicate` request whose 8 modules come from a symbol server.

Target: with cold caches, the request takes at most 1.2 x the time of downloading the same
8 files and converting them directly, one after the other (so downloads and conversions must
overlap).

The debug files of the 8 modules of the symbolication benchmarks (`_harness.bench_modules`)
are served in `native` layout by tests/support/symbol_server.py's `SymbolServer` on
127.0.0.1, which answers every request (found or not) after an artificial delay: 0 and 100 ms
by default, a symbol server next door and one across a WAN. The symvault server is started
fresh for every measurement (empty cache) with an `http` source for it
(`connect_to_reserved_ips: true`, `logging.level: warning`).

In every run and for every delay, in alternating order:

* server: the wall time of one `POST /symbolicate` (the 64-frame stack trace of
  symbolicate_warm.py, `http` source), checked to symbolicate all frames; the symbol
  server's log says which paths were asked for. With `apply_source_context` off (the request
  then needs exactly the 8 files) and with the default options (source bundles are looked
  for too: more requests to the symbol server, none found);
* direct: the same 8 files downloaded one after the other with httpx (one client, as the
  server's downloader keeps connections too), each written to a file, then each converted
  with symbolic (`Archive.open`, the object, `make_symcache`, `dump_into` a file), one after
  the other. Its sum is the baseline. One unrecorded pass runs first (first-use costs of
  httpx and symbolic in this process).

The fresh server's first request also pays for first use of lazily imported code; the same
request is then sent again in another scope (`?scope=second`): entries of non-public sources
are per scope, so its cache is just as empty, but the process is warm. Both are reported;
the target is judged on the first.

Usage: uv run python benchmarks/symbolicate_cold.py [--runs 5] [--delays 0 0.1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import symbolic

from _harness import (
    BenchModule,
    ForeignLoad,
    add_server_options,
    bench_fixtures,
    bench_modules,
    default_workdir,
    delayed_symbol_server,
    is_disturbed,
    machine_info,
    median,
    native_layout,
    process_cpu_seconds,
    running_server,
    server_config,
    symbolicate_request,
    undisturbed_run,
    wait_for_quiet_machine,
    write_result,
)

TARGET = 1.2


def direct(modules: list[BenchModule], base_url: str, out: Path) -> dict[str, Any]:
    """Downloads the 8 files one by one, then converts them one by one."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    downloads = []
    started = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        for module in modules:
            begun = time.perf_counter()
            response = client.get(base_url + module.native_path())
            response.raise_for_status()
            (out / module.name).write_bytes(response.content)
            downloads.append(time.perf_counter() - begun)
    downloaded = time.perf_counter()
    conversions = []
    for module in modules:
        begun = time.perf_counter()
        archive = symbolic.Archive.open(str(out / module.name))
        obj = next(o for o in archive.iter_objects() if o.debug_id == module.debug_id)
        with (out / f"{module.name}.symcache").open("wb") as handle:
            obj.make_symcache().dump_into(handle)
        conversions.append(time.perf_counter() - begun)
    finished = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    return {
        "download_seconds": round(downloaded - started, 4),
        "convert_seconds": round(finished - downloaded, 4),
        "total_seconds": round(finished - started, 4),
        "per_file_download": [round(value, 4) for value in downloads],
        "per_file_convert": [round(value, 4) for value in conversions],
    }


def through_server(
    workdir: Path, index: int, body: dict[str, Any], config: dict[str, Any], symbols: Any
) -> dict[str, Any]:
    """One request to a fresh server (empty cache); its wall time and the symbol server's log.

    Then the same request in another scope: the cache is empty for it too (entries of
    non-public sources are per scope), but the server process has served a request before.
    """
    with running_server(workdir / f"data-{index}", config) as server, server.client() as client:
        client.get("/healthcheck")  # connection made before timing
        symbols.requests.clear()
        figures = {}
        for label, scope in (("", "first"), ("second_scope_", "second")):
            symbols.requests.clear()
            wait_for_quiet_machine()
            cpu = process_cpu_seconds(server.pid)
            started = time.perf_counter()
            response = client.post("/symbolicate", json=body, params={"scope": scope})
            elapsed = time.perf_counter() - started
            cpu = process_cpu_seconds(server.pid) - cpu
            check(response.json())
            figures[f"{label}seconds"] = round(elapsed, 4)
            figures[f"{label}server_cpu_seconds"] = round(cpu, 2)
            if not label:
                paths = [request.path for request in symbols.requests]
                figures["symbol_server_requests"] = len(paths)
                figures["symbol_server_paths"] = paths
    return figures


def check(result: dict[str, Any]) -> None:
    if result.get("status") != "completed":
        raise RuntimeError(f"request not completed: {str(result)[:500]}")
    statuses = {frame["status"] for frame in result["stacktraces"][0]["frames"]}
    missing = [m["debug_id"] for m in result["modules"] if m["debug_status"] != "found"]
    if statuses != {"symbolicated"} or missing:
        raise RuntimeError(f"frames {statuses}, modules not found {missing}")


def run_once(
    index: int,
    workdir: Path,
    modules: list[BenchModule],
    symbols_dir: Path,
    delay: float,
    config: dict[str, Any],
) -> dict[str, Any]:
    symbols = delayed_symbol_server(symbols_dir, delay)
    result: dict[str, Any] = {"delay": delay}
    other = 0.0
    busy = 0.0
    with symbols:
        source = {"type": "http", "id": "symbols", "url": symbols.url}
        variants = {
            "server": symbolicate_request(modules, [source], apply_source_context=False),
            "server_default_options": symbolicate_request(modules, [source]),
        }
        order = ["direct", *variants] if index % 2 == 0 else [*variants, "direct"]
        for what in order:
            with ForeignLoad() as load:
                if what == "direct":
                    wait_for_quiet_machine()
                    result[what] = direct(modules, symbols.url, workdir / "direct")
                    busy += result[what]["total_seconds"]
                else:
                    result[what] = through_server(workdir, index, variants[what], config, symbols)
                    busy += result[what]["seconds"]
            other += load.seconds
    baseline = result["direct"]["total_seconds"]
    result["order"] = order
    result["ratio"] = round(result["server"]["seconds"] / baseline, 3)
    result["ratio_default_options"] = round(
        result["server_default_options"]["seconds"] / baseline, 3
    )
    result["ratio_second_scope"] = round(result["server"]["second_scope_seconds"] / baseline, 3)
    result["other_cpu_seconds"] = round(other, 2)
    result["disturbed"] = is_disturbed(other, busy)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delays", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--workdir", type=Path, default=default_workdir() / "symbolicate-cold")
    parser.add_argument("--name", default="symbolicate_cold", help="result file name")
    add_server_options(parser)
    args = parser.parse_args()
    extra = server_config(args.set)
    config = {
        **extra,
        "connect_to_reserved_ips": True,
        "logging": {"level": "warning"},
    }
    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    modules = bench_modules(bench_fixtures(), workdir / "modules")
    symbols_dir = workdir / "symbols"
    placed = native_layout(modules, symbols_dir)
    sizes = {module.name: module.file.stat().st_size for module in modules}
    print(f"files: {json.dumps(sizes)}", flush=True)

    with delayed_symbol_server(symbols_dir, 0.0) as symbols:  # first-use costs, unrecorded
        direct(modules, symbols.url, workdir / "direct")
    results: dict[str, Any] = {}
    repeated = 0
    for delay in args.delays:
        runs = []
        for index in range(args.runs):
            run, thrown_away = undisturbed_run(
                lambda index=index, delay=delay: run_once(
                    index, workdir, modules, symbols_dir, delay, config
                ),
                lambda result: bool(result["disturbed"]),
            )
            repeated += thrown_away
            runs.append(run)
            print(
                f"delay {delay * 1000:.0f} ms run {index + 1}: direct "
                f"{run['direct']['total_seconds']:.3f} s (download "
                f"{run['direct']['download_seconds']:.3f}, convert "
                f"{run['direct']['convert_seconds']:.3f}), server {run['server']['seconds']:.3f} s "
                f"({run['server']['symbol_server_requests']} requests to the symbol server), "
                f"ratio {run['ratio']:.2f}; default options "
                f"{run['server_default_options']['seconds']:.3f} s "
                f"({run['server_default_options']['symbol_server_requests']} requests), ratio "
                f"{run['ratio_default_options']:.2f}",
                flush=True,
            )
        results[f"{delay * 1000:.0f}ms"] = {
            "median": {
                "direct_seconds": median([r["direct"]["total_seconds"] for r in runs]),
                "direct_download_seconds": median([r["direct"]["download_seconds"] for r in runs]),
                "direct_convert_seconds": median([r["direct"]["convert_seconds"] for r in runs]),
                "server_seconds": median([r["server"]["seconds"] for r in runs]),
                "ratio": median([r["ratio"] for r in runs]),
                "server_default_options_seconds": median(
                    [r["server_default_options"]["seconds"] for r in runs]
                ),
                "ratio_default_options": median([r["ratio_default_options"] for r in runs]),
                "server_second_scope_seconds": median(
                    [r["server"]["second_scope_seconds"] for r in runs]
                ),
                "ratio_second_scope": median([r["ratio_second_scope"] for r in runs]),
                "server_default_options_second_scope_seconds": median(
                    [r["server_default_options"]["second_scope_seconds"] for r in runs]
                ),
            },
            "runs": runs,
        }

    worst = max(result["median"]["ratio"] for result in results.values())
    met = worst <= TARGET
    path = write_result(
        args.name,
        {
            "target": f"cold /symbolicate of 8 modules <= {TARGET} x sequential download + "
            "conversion of the same files",
            "met": met,
            "machine": machine_info(workdir),
            "settings": {
                "runs": args.runs,
                "delays_s": args.delays,
                "files": sizes,
                "native_paths": placed,
                "server_config": config,
                "runs_repeated_because_disturbed": repeated,
            },
            "delays": results,
        },
    )
    for label, result in results.items():
        summary = result["median"]
        print(
            f"delay {label}: direct {summary['direct_seconds']:.3f} s, server "
            f"{summary['server_seconds']:.3f} s, ratio {summary['ratio']:.2f} (default options "
            f"{summary['server_default_options_seconds']:.3f} s, "
            f"{summary['ratio_default_options']:.2f}); warm process, other scope "
            f"{summary['server_second_scope_seconds']:.3f} s, "
            f"{summary['ratio_second_scope']:.2f}"
        )
    print(f"worst ratio {worst:.2f} (target <= {TARGET}: {'met' if met else 'NOT met'}); {path}")


if __name__ == "__main__":
    main()
