"""Cold symbolication, variants against each other: alternating fresh servers.

The cold request of symbolicate_cold.py swings by ±30 % from one run to the next on this
machine, more than most changes move it, so a change is judged by fresh servers of two (or
more) variants started in turn, many times, on the same symbol server: round 1 in the given
order, round 2 in reverse, and so on. Each server answers the 8-module request twice, in a
new scope each time (`first`: a fresh process; `second`: the same process, caches just as
empty for that scope), as in symbolicate_cold.py.

A variant is a name and settings: `KEY=VALUE` is a server configuration setting (YAML
value), `env.NAME=VALUE` an environment variable of the server process (`env.NAME=` removes
it), e.g.

    uv run python benchmarks/symbolicate_cold_ab.py --rounds 8 \\
        --variant base --variant threads4 symbolication.fetch_threads=4 \\
        --variant arenas1 env.MALLOC_ARENA_MAX=1

Prints and records, per variant, the medians and ranges of the wall time of both requests
and the server's CPU time for them.

Usage: uv run python benchmarks/symbolicate_cold_ab.py --variant NAME [SETTING ...] ...
    [--rounds 8] [--delay 0] [--default-options]
"""

from __future__ import annotations

import argparse
import functools
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import (
    ForeignLoad,
    default_workdir,
    delayed_symbol_server,
    is_disturbed,
    machine_info,
    median,
    native_symbols,
    server_config,
    symbolicate_request,
    undisturbed_run,
    write_result,
)
from symbolicate_cold import through_server

#: The figures of one fresh server, as `through_server` names them.
FIGURES = (
    "seconds",
    "server_cpu_seconds",
    "second_scope_seconds",
    "second_scope_server_cpu_seconds",
)


#: Settings of every variant's server, before its own.
BASE_SETTINGS = ("connect_to_reserved_ips=true", "logging.level=warning")


@dataclass(frozen=True)
class Variant:
    name: str
    settings: tuple[str, ...]
    """Server configuration settings, `KEY=VALUE` as `--set` takes them."""
    environment: dict[str, str | None]
    """Environment variables of the server process; None removes one."""

    @classmethod
    def parse(cls, words: Sequence[str]) -> Variant:
        name, *settings = words
        environment: dict[str, str | None] = {}
        config_settings = []
        for setting in settings:
            key, sep, value = setting.partition("=")
            if not sep:
                raise SystemExit(f"variant {name}: expected KEY=VALUE, got {setting!r}")
            if key.startswith("env."):
                environment[key.removeprefix("env.")] = value or None
            else:
                config_settings.append(setting)
        return cls(name, tuple(config_settings), environment)

    @property
    def config(self) -> dict[str, Any]:
        """The variant's own settings as a configuration tree."""
        return server_config(self.settings)

    @property
    def full_config(self) -> dict[str, Any]:
        """The whole configuration of the variant's servers."""
        return server_config([*BASE_SETTINGS, *self.settings])


def summary(measurements: list[dict[str, Any]]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for figure in FIGURES:
        values = [float(m[figure]) for m in measurements]
        figures[figure] = {"median": median(values), "min": min(values), "max": max(values)}
    return figures


def measure(
    variant: Variant, workdir: Path, index: int, body: dict[str, Any], symbols: Any
) -> dict[str, Any]:
    """One fresh server of `variant`: its two requests (`through_server`)."""
    with ForeignLoad() as load:
        figures = through_server(
            workdir, index, body, variant.full_config, symbols, variant.environment
        )
    figures["other_cpu_seconds"] = round(load.seconds, 2)
    busy = figures["seconds"] + figures["second_scope_seconds"]
    figures["disturbed"] = is_disturbed(load.seconds, busy)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variant",
        action="append",
        nargs="+",
        required=True,
        metavar="WORD",
        help="a variant: NAME [KEY=VALUE | env.NAME=VALUE ...] (repeatable)",
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per symbol server answer")
    parser.add_argument(
        "--default-options",
        action="store_true",
        help="the request with its default options (source bundles looked for too)",
    )
    parser.add_argument("--workdir", type=Path, default=default_workdir() / "symbolicate-cold-ab")
    parser.add_argument("--name", default="symbolicate_cold_ab", help="result file name")
    args = parser.parse_args()
    variants = [Variant.parse(words) for words in args.variant]
    if len({variant.name for variant in variants}) != len(variants):
        raise SystemExit("variant names must differ")

    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    native = native_symbols(workdir)
    options = {} if args.default_options else {"apply_source_context": False}

    measured: dict[str, list[dict[str, Any]]] = {variant.name: [] for variant in variants}
    repeated = 0
    with delayed_symbol_server(native.directory, args.delay) as symbols:
        source = {"type": "http", "id": "symbols", "url": symbols.url}
        body = symbolicate_request(native.modules, [source], **options)
        for index in range(args.rounds):
            order = variants if index % 2 == 0 else variants[::-1]
            for variant in order:
                figures, thrown_away = undisturbed_run(
                    functools.partial(measure, variant, workdir, index, body, symbols),
                    lambda figures: bool(figures["disturbed"]),
                )
                repeated += thrown_away
                measured[variant.name].append(figures)
            print(
                f"round {index + 1}: "
                + ", ".join(
                    f"{name} {runs[-1]['seconds']:.3f} / {runs[-1]['second_scope_seconds']:.3f} s"
                    for name, runs in measured.items()
                ),
                flush=True,
            )

    results = {name: summary(runs) for name, runs in measured.items()}
    path = write_result(
        args.name,
        {
            "what": "alternating fresh servers: a cold 8-module request in a fresh process "
            "(seconds) and then in another scope (second_scope_seconds)",
            "machine": machine_info(workdir),
            "settings": {
                "rounds": args.rounds,
                "delay_s": args.delay,
                "request_options": options,
                "variants": {
                    v.name: {"config": v.config, "environment": v.environment} for v in variants
                },
                "runs_repeated_because_disturbed": repeated,
            },
            "variants": {
                name: {"median": results[name], "runs": runs} for name, runs in measured.items()
            },
        },
    )
    for name, figures in results.items():
        first, second = figures["seconds"], figures["second_scope_seconds"]
        print(
            f"{name}: first {first['median']:.3f} s ({first['min']:.3f}-{first['max']:.3f}), "
            f"second {second['median']:.3f} s ({second['min']:.3f}-{second['max']:.3f}), "
            f"server CPU {figures['server_cpu_seconds']['median']:.2f} / "
            f"{figures['second_scope_server_cpu_seconds']['median']:.2f} s"
        )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
