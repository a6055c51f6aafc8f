"""The command line: `symvault serve`, `token create`, `check`, `cleanup`, `symbolicate`.

Every command takes `--config FILE` and `--data-dir DIR`; see
docs/configuration.md for the keys of the config file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from symvault.config import Config, load_config
from symvault.errors import ConfigError, DebugFileError, SymvaultError

__all__ = ["main"]

DEFAULT_ORGANIZATION = "default"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="YAML configuration file")
    common.add_argument("--data-dir", type=Path, help="data directory (overrides data_dir)")

    parser = argparse.ArgumentParser(
        prog="symvault",
        description="A debug information file store and native symbolication service.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="run the HTTP server")
    serve.add_argument("--bind", help="HOST:PORT to listen on (overrides server.bind)")

    token = commands.add_parser("token", parents=[common], help="manage API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser(
        "create", parents=[common], help="create a token and print it"
    )
    create.add_argument("--org", required=True, help="organization the token belongs to")
    create.add_argument("--project", help="limit the token to one project")
    create.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        metavar="SCOPE",
        help="a scope such as project:write (repeatable; default: all scopes)",
    )
    create.add_argument("--label", default="", help="a note about what the token is for")

    cleanup = commands.add_parser(
        "cleanup", parents=[common], help="remove expired cache entries and uploaded chunks"
    )
    cleanup.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    cleanup.add_argument(
        "--repeat", metavar="INTERVAL", help="keep running, every INTERVAL (e.g. 1h)"
    )

    symbolicate = commands.add_parser(
        "symbolicate",
        parents=[common],
        help="symbolicate addresses offline, with a debug file or a request file",
    )
    what = symbolicate.add_mutually_exclusive_group(required=True)
    what.add_argument("--debug-file", type=Path, help="look addresses up in this debug file")
    what.add_argument(
        "--request",
        type=Path,
        help="a /symbolicate request (JSON) to run with the configured sources",
    )
    symbolicate.add_argument(
        "--image-addr",
        default="0",
        help="load address of the module: addresses are absolute and this is subtracted",
    )
    symbolicate.add_argument("--arch", help="the object to use in a multi-architecture file")
    symbolicate.add_argument("--json", action="store_true", help="print JSON instead of text")
    symbolicate.add_argument("addresses", nargs="*", metavar="ADDR")

    check = commands.add_parser(
        "check", parents=[common], help="show what the store would detect in files"
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = str(args.data_dir)
    if getattr(args, "bind", None):
        overrides["server.bind"] = args.bind
    return load_config(args.config, overrides)


def _serve(config: Config) -> int:
    import uvicorn

    from symvault.api.app import create_api
    from symvault.app import build_services
    from symvault.logs import configure_logging
    from symvault.store.accounts import ALL_SCOPES

    configure_logging(config.logging.level, config.logging.format, config.logging.access_log)
    services = build_services(config)
    if not services.accounts.has_tokens():
        token = services.accounts.create_token(
            DEFAULT_ORGANIZATION, scopes=ALL_SCOPES, label="created on first start"
        )
        _print_welcome(config, token)
    options: dict[str, Any] = {
        "host": config.server.host,
        "port": config.server.port,
        "log_config": None,
        "access_log": config.logging.access_log,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
        "lifespan": "on",
    }
    if config.server.workers > 1:
        import os

        from symvault.api.asgi import CONFIG_VARIABLE

        services.db.dispose()
        os.environ[CONFIG_VARIABLE] = config.model_dump_json()
        uvicorn.run(
            "symvault.api.asgi:from_environment",
            factory=True,
            workers=config.server.workers,
            **options,
        )
        return 0
    uvicorn.Server(uvicorn.Config(create_api(services), **options)).run()
    return 0


def _print_welcome(config: Config, token: str) -> None:
    host = config.server.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (a wildcard bind is reached via loopback)
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    url = config.server.public_url or f"http://{host}:{config.server.port}/"
    print(
        f"Created an admin token for organization {DEFAULT_ORGANIZATION!r} "
        "(shown only this once):\n\n"
        f"    {token}\n\n"
        "Upload debug files with:\n\n"
        f"    sentry-cli --url {url} --auth-token {token} debug-files upload "
        f"--org {DEFAULT_ORGANIZATION} --project my-project --wait PATH\n\n"
        "Create more tokens with `symvault token create --org ORG`.\n",
        flush=True,
    )


def _create_token(config: Config, args: argparse.Namespace) -> int:
    from symvault.app import build_services
    from symvault.store.accounts import ALL_SCOPES

    services = build_services(config)
    try:
        token = services.accounts.create_token(
            args.org, args.project, args.scopes or ALL_SCOPES, args.label
        )
    finally:
        services.db.dispose()
    print(token)
    return 0


def _cleanup(config: Config, dry_run: bool, repeat: str | None) -> int:
    import signal
    import time

    from symvault.config import parse_duration

    try:
        interval = parse_duration(repeat).total_seconds() if repeat else None
    except ValueError as exc:
        raise ConfigError(f"--repeat: {exc}") from exc

    from symvault.app import STALE_STAGING_SECONDS, build_services

    # With --repeat, SIGINT and SIGTERM end the loop between runs rather than
    # wherever they land (inside a database call, say, whose locks they would leave
    # taken); a second signal ends the process at once.
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)
        signal.signal(signum, signal.SIG_DFL)

    if interval is not None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, stop)

    services = build_services(config)
    try:
        while not stopping:
            report = services.caches.cleanup(dry_run=dry_run)
            print(report.summary(), flush=True)
            if not dry_run:
                chunks = services.chunks.sweep(config.upload.chunk_retention)
                staged = services.storage.sweep_staging(STALE_STAGING_SECONDS)
                print(
                    f"removed {chunks} expired upload chunks, {staged} stale temporary files",
                    flush=True,
                )
            if interval is None:
                return 0
            deadline = time.monotonic() + interval
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return 130 if stopping[0] == signal.SIGINT else 0
    finally:
        services.caches.close()
        services.db.dispose()


def _symbolicate(args: argparse.Namespace) -> int:
    if args.request is not None:
        return _symbolicate_request(_config(args), args.request)
    from symvault.symbolication.offline import lookup_file

    if not args.addresses:
        print("symvault: give at least one address to look up", file=sys.stderr)
        return 2
    results = lookup_file(args.debug_file, args.addresses, args.image_addr, args.arch)
    status = 0 if all("error" not in result for result in results) else 1
    if args.json:
        print(json.dumps(results, indent=2))
        return status
    for result in results:
        print(result["address"])
        if "error" in result:
            print(f"  {result['error']}")
        for frame in result.get("frames", []):
            location = frame.get("abs_path") or "??"
            line = frame.get("lineno", 0)
            print(f"  {frame['function']}  {location}:{line}")
    return status


def _symbolicate_request(config: Config, path: Path) -> int:
    from symvault.app import build_services
    from symvault.errors import UnprocessableEntity
    from symvault.symbolication.offline import run_request

    services = build_services(config)
    try:
        response = run_request(services.symbolicator, config.sources, path)
    except UnprocessableEntity as exc:
        print(f"symvault: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        services.symbolicator.close()
        services.caches.close()
        services.db.dispose()
    print(json.dumps(response, indent=2))
    return 0


def _check(files: Sequence[Path], as_json: bool) -> int:
    from symvault.store.detection import detect_file

    status = 0
    report: list[dict[str, Any]] = []
    for path in files:
        entry: dict[str, Any] = {"path": str(path)}
        try:
            metas = detect_file(path, path.name)
        except (DebugFileError, OSError) as exc:
            entry["error"] = str(exc)
            status = 1
        else:
            entry["objects"] = [
                {
                    "file_format": meta.file_format,
                    "kind": meta.kind,
                    "arch": meta.arch,
                    "debug_id": meta.debug_id,
                    "code_id": meta.code_id,
                    "object_name": meta.object_name,
                    "features": sorted(meta.features),
                }
                for meta in metas
            ]
        report.append(entry)
    if as_json:
        print(json.dumps(report, indent=2))
        return status
    for entry in report:
        print(entry["path"])
        if "error" in entry:
            print(f"  error: {entry['error']}")
            continue
        for obj in entry["objects"]:
            print(f"  {obj['file_format']} {obj['kind'] or '-'} {obj['arch']}")
            print(f"    debug id:    {obj['debug_id']}")
            print(f"    code id:     {obj['code_id'] or '-'}")
            print(f"    object name: {obj['object_name']}")
            print(f"    features:    {', '.join(obj['features']) or '-'}")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args.files, args.json)
        if args.command == "symbolicate":
            return _symbolicate(args)
        config = _config(args)
        if args.command == "serve":
            return _serve(config)
        if args.command == "token":
            return _create_token(config, args)
        if args.command == "cleanup":
            return _cleanup(config, args.dry_run, args.repeat)
    except SymvaultError as exc:
        detail = exc.detail if hasattr(exc, "detail") else str(exc)
        print(f"symvault: {detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
