"""Server-side assembly of a 1 GiB debug file, against the raw limit of the same machine.

Target: the server assembles at no less than half the throughput of the raw limit.

Every run starts a fresh server (fresh data directory), uploads the chunks of a 1 GiB ELF
debug file over HTTP (uncompressed, 8 MiB chunks), then measures raw limit, server, raw limit
again, and compares the server with the mean of the two raw measurements:

* raw limit: this process reads the server's stored chunk files in order and writes them to
  one file in the server's data directory while computing its SHA-1, in 1 MiB blocks (the
  block size of the server's `Assembler._concatenate`), in a tight loop;
* server: from sending the assemble request that starts the job until a poll of the assemble
  endpoint (every 20 ms) answers `ok`. A watcher thread splits this time using the server's
  staging file (`store/tmp/assemble-*`): it appears when concatenation starts, reaches full
  size when concatenation + hashing ends, and is renamed into the store once detection is done.

Before each phase the page cache is dropped (`--warm` keeps it and reads the chunks once
instead), so all phases start from the same state. One unrecorded raw pass runs first.

Usage: uv run python benchmarks/upload_assembly.py [--runs 5] [--size-mib 1024] [--warm]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any

from _harness import (
    GIB,
    MIB,
    ForeignLoad,
    Server,
    StagingWatcher,
    add_server_options,
    check_free_space,
    chunk_checksums,
    default_workdir,
    drop_caches,
    drop_caches_available,
    is_disturbed,
    machine_info,
    make_big_debug_file,
    median,
    process_cpu_seconds,
    running_server,
    server_config,
    server_log_events,
    sha1_file,
    undisturbed_run,
    wait_for_quiet_machine,
    write_result,
)

CHUNK_SIZE = 8 * MIB
CHUNKS_PER_REQUEST = 3  # 3 x 8 MiB stays under the default maxRequestSize of 32 MiB
COPY_BLOCK = MIB  # the block size of the server's `Assembler._concatenate`
ASSEMBLE_PATH = "/api/0/projects/default/bench/files/difs/assemble/"
UPLOAD_PATH = "/api/0/organizations/default/chunk-upload/"


def upload_chunks(server: Server, path: Path, chunks: list[str]) -> None:
    """Uploads every chunk of `path` uncompressed, a few per request, two requests at once."""

    def send(first: int) -> None:
        with path.open("rb") as handle:
            handle.seek(first * CHUNK_SIZE)
            files = [
                ("file", (checksum, handle.read(CHUNK_SIZE)))
                for checksum in chunks[first : first + CHUNKS_PER_REQUEST]
            ]
        with server.client() as client:
            client.post(UPLOAD_PATH, files=files).raise_for_status()

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(send, range(0, len(chunks), CHUNKS_PER_REQUEST)))


def prepare_cache(cold: bool, paths: list[Path]) -> None:
    if cold:
        drop_caches()
    else:
        os.sync()
        for path in paths:  # bring every chunk into the page cache
            with path.open("rb") as handle:
                while handle.read(COPY_BLOCK):
                    pass
    wait_for_quiet_machine()


def raw_concatenate(sources: list[Path], target: Path) -> tuple[float, float, str]:
    """The raw limit: (seconds, CPU seconds, SHA-1) of concatenating `sources` into `target`."""
    buffer = bytearray(COPY_BLOCK)
    view = memoryview(buffer)
    digest = hashlib.sha1(usedforsecurity=False)
    cpu = time.process_time()
    started = time.perf_counter()
    with target.open("wb") as out:
        for source in sources:
            with source.open("rb") as handle:
                while count := handle.readinto(buffer):
                    digest.update(view[:count])
                    out.write(view[:count])
    elapsed = time.perf_counter() - started
    return elapsed, time.process_time() - cpu, digest.hexdigest()


@dataclass
class ServerPhase:
    seconds: float
    cpu_seconds: float
    split: dict[str, float | None]
    log_ok_after: float | None


def server_assemble(
    server: Server, checksum: str, chunks: list[str], size: int, poll: float
) -> ServerPhase:
    """Starts assembly with one assemble request and polls until the file is `ok`."""
    body = {checksum: {"name": "big.debug", "chunks": chunks}}
    with server.client() as client, StagingWatcher(server.staging_dir, size) as watcher:
        cpu = process_cpu_seconds(server.pid)
        wall = time.time()
        started = time.perf_counter()
        answer = client.post(ASSEMBLE_PATH, json=body).json()[checksum]
        answered = time.perf_counter()
        while answer["state"] in ("created", "assembling"):
            time.sleep(poll)
            answer = client.post(ASSEMBLE_PATH, json=body).json()[checksum]
        finished = time.perf_counter()
        cpu = process_cpu_seconds(server.pid) - cpu
    if answer["state"] != "ok":
        raise RuntimeError(f"assembly ended in {answer['state']}: {answer['detail']}")
    if answer["dif"]["size"] != size:
        raise RuntimeError(f"assembled {answer['dif']['size']} bytes, expected {size}")

    def since(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else round(end - start, 3)

    split = {
        "first_answer": since(started, answered),
        "until_concatenation_starts": since(started, watcher.appeared),
        "concatenate_and_hash": since(watcher.appeared, watcher.complete),
        "detect_and_validate": since(watcher.complete, watcher.gone),
        "record_and_poll": since(watcher.gone, finished),
    }
    logged = server_log_events(server.log(), "assemble.ok")
    log_ok_after = round(logged[-1][0] - wall, 3) if logged else None
    return ServerPhase(finished - started, cpu, split, log_ok_after)


def raw_phase(
    sources: list[Path], target: Path, checksum: str, size: int, server_pid: int
) -> dict[str, float]:
    with ForeignLoad(server_pid) as other:
        seconds, cpu, digest = raw_concatenate(sources, target)
    target.unlink()
    if digest != checksum:
        raise RuntimeError("raw concatenation produced the wrong SHA-1")
    return {
        "seconds": round(seconds, 3),
        "mib_per_s": round(size / MIB / seconds, 1),
        "cpu_seconds": round(cpu, 3),
        "other_cpu_seconds": other.seconds,
    }


def run_once(
    index: int,
    workdir: Path,
    big: Path,
    checksum: str,
    chunks: list[str],
    cold: bool,
    poll: float,
    config: dict[str, Any],
) -> dict[str, Any]:
    """Raw limit, server, raw limit again: the server is compared with the mean of both."""
    size = big.stat().st_size
    with running_server(workdir / f"data-{index}", config) as server:
        upload_chunks(server, big, chunks)
        sources = [server.chunk_path(chunk) for chunk in chunks]
        raw_target = server.data_dir / "raw-concatenated.bin"
        prepare_cache(cold, sources)
        raw_before = raw_phase(sources, raw_target, checksum, size, server.pid)
        prepare_cache(cold, sources)
        with ForeignLoad(server.pid) as other:
            measured = server_assemble(server, checksum, chunks, size, poll)
        prepare_cache(cold, sources)
        raw_after = raw_phase(sources, raw_target, checksum, size, server.pid)
    raw_seconds = (raw_before["seconds"] + raw_after["seconds"]) / 2
    raw = {
        "seconds": round(raw_seconds, 3),
        "mib_per_s": round(size / MIB / raw_seconds, 1),
        "before": raw_before,
        "after": raw_after,
    }
    server_result = {
        "seconds": round(measured.seconds, 3),
        "mib_per_s": round(size / MIB / measured.seconds, 1),
        "cpu_seconds": round(measured.cpu_seconds, 2),
        "other_cpu_seconds": other.seconds,
        "split_seconds": measured.split,
        "assemble_ok_logged_after": measured.log_ok_after,
    }
    disturbed = is_disturbed(other.seconds, measured.seconds) or any(
        is_disturbed(phase["other_cpu_seconds"], phase["seconds"])
        for phase in (raw_before, raw_after)
    )
    return {
        "disturbed": disturbed,
        "raw": raw,
        "server": server_result,
        "ratio": round(raw_seconds / measured.seconds, 3),
    }


def warm_up(big: Path, workdir: Path) -> None:
    """One unrecorded pass, so that one-off costs do not land on the first measurement."""
    target = workdir / "warm-up.bin"
    raw_concatenate([big], target)
    target.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the random section")
    parser.add_argument("--warm", action="store_true", help="do not drop the page cache")
    parser.add_argument("--poll", type=float, default=0.02, help="assemble poll interval (s)")
    parser.add_argument("--workdir", type=Path, default=default_workdir() / "assembly")
    parser.add_argument("--keep-file", action="store_true", help="keep the big debug file")
    parser.add_argument("--name", default=None, help="result file name (without .json)")
    add_server_options(parser)
    args = parser.parse_args()
    config = server_config(args.set)

    workdir: Path = args.workdir
    size = args.size_mib * MIB
    check_free_space(workdir, 4 * size + GIB // 4)
    cold = not args.warm and drop_caches_available()
    if not args.warm and not cold:
        print("cannot drop the page cache (not root?): measuring with a warm cache")
    cache = "cold" if cold else "warm"

    big = make_big_debug_file(workdir, size)
    checksum = sha1_file(big)
    chunks = chunk_checksums(big, CHUNK_SIZE)
    total = big.stat().st_size
    print(f"{big.name}: {total} bytes, {len(chunks)} chunks, page cache {cache}")

    warm_up(big, workdir)
    runs = []
    repeated = 0
    try:
        for index in range(args.runs):
            attempt = partial(
                run_once, index, workdir, big, checksum, chunks, cold, args.poll, config
            )
            run, thrown_away = undisturbed_run(attempt, itemgetter("disturbed"))
            repeated += thrown_away
            runs.append(run)
            split = run["server"]["split_seconds"]
            print(
                f"run {index + 1}: raw {run['raw']['seconds']:.2f} s "
                f"({run['raw']['mib_per_s']:.0f} MiB/s), server {run['server']['seconds']:.2f} s "
                f"({run['server']['mib_per_s']:.0f} MiB/s; concatenate+hash "
                f"{split['concatenate_and_hash']} s, detect {split['detect_and_validate']} s), "
                f"ratio {run['ratio']:.2f}"
            )
    finally:
        if not args.keep_file:
            big.unlink(missing_ok=True)

    ratio = median([run["ratio"] for run in runs])
    summary = {
        "raw_seconds": median([run["raw"]["seconds"] for run in runs]),
        "raw_mib_per_s": median([run["raw"]["mib_per_s"] for run in runs]),
        "server_seconds": median([run["server"]["seconds"] for run in runs]),
        "server_mib_per_s": median([run["server"]["mib_per_s"] for run in runs]),
        "server_concatenate_and_hash_seconds": median(
            [run["server"]["split_seconds"]["concatenate_and_hash"] or 0.0 for run in runs]
        ),
        "server_detect_seconds": median(
            [run["server"]["split_seconds"]["detect_and_validate"] or 0.0 for run in runs]
        ),
        "ratio": ratio,
    }
    met = ratio >= 0.5
    path = write_result(
        args.name or ("upload_assembly" if cold else "upload_assembly_warm"),
        {
            "target": "server assembly throughput >= 0.5 x raw concatenate+SHA-1 throughput",
            "met": met,
            "machine": machine_info(workdir),
            "settings": {
                "file_bytes": total,
                "chunks": len(chunks),
                "chunk_size": CHUNK_SIZE,
                "copy_block": COPY_BLOCK,
                "page_cache": cache,
                "poll_interval_s": args.poll,
                "runs": args.runs,
                "runs_repeated_because_disturbed": repeated,
                "server_config": config,
            },
            "median": summary,
            "runs": runs,
        },
    )
    print(
        f"median: raw {summary['raw_mib_per_s']:.0f} MiB/s, server "
        f"{summary['server_mib_per_s']:.0f} MiB/s, ratio {ratio:.2f} "
        f"(target >= 0.5: {'met' if met else 'NOT met'}); written to {path}"
    )


if __name__ == "__main__":
    main()
