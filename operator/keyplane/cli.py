"""`keyplane run | render | crds | demo | app-demo`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from . import __version__
from .settings import Settings, add_arguments, load


def _now(value: str | None) -> datetime:
    """--now, else SOURCE_DATE_EPOCH (reproducible renders), else the clock."""
    if value:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if epoch := os.environ.get("SOURCE_DATE_EPOCH"):
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    return datetime.now(tz=UTC)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore", "kopf.objects", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def run_operator(
    settings: Settings, *, stop_flag: asyncio.Event | None = None, ready_flag: asyncio.Event | None = None
) -> None:
    """Run the operator until stopped (used by `keyplane run`, the demo and the tests)."""
    import kopf

    from . import handlers  # noqa: F401  (registers the Kopf handlers)

    await kopf.operator(
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        standalone=settings.peering_name is None,
        peering_name=settings.peering_name,
        priority=settings.priority,
        liveness_endpoint=settings.liveness_endpoint or None,
        memo=kopf.Memo(settings=settings),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from .heap import fix_mmap_threshold

    settings = load(args)
    _configure_logging(args.verbose)
    if fix_mmap_threshold():  # this process only: the tests and the demo call run_operator in theirs
        logging.getLogger("keyplane").debug("glibc malloc: large buffers mapped and unmapped, not kept in the heap")
    asyncio.run(run_operator(settings))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from .render import run_render

    settings = load(args)
    return run_render(args.file, settings, _now(args.now), sys.stdout, sys.stderr, offline=args.offline)


def cmd_crds(args: argparse.Namespace) -> int:
    from .api.crds import all_crds, dump_crd, write_crds

    if args.output:
        for path in write_crds([Path(p) for p in args.output]):
            print(path)
    else:
        sys.stdout.write("---\n".join(dump_crd(c) for c in all_crds()))
    return 0


def missing_extra(extra: str) -> list[str]:
    """Distributions of `keyplane[extra]` that are not installed (none known when keyplane is not installed)."""
    import importlib.metadata  # here, not at the top: every `keyplane render` would pay ~30 ms for it

    try:
        requirements = importlib.metadata.requires("keyplane") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    missing = []
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        name = re.match(r"[A-Za-z0-9._-]+", spec.strip())
        if name is None or not re.search(rf"""\bextra\s*==\s*["']{re.escape(extra)}["']""", marker):
            continue
        try:
            importlib.metadata.distribution(name.group(0))
        except importlib.metadata.PackageNotFoundError:
            missing.append(name.group(0))
    return missing


def require_extra(command: str, extra: str) -> bool:
    """False, after a one-line hint on stderr, when the optional dependencies `command` needs are absent.

    The container image ships the operator only: without this, `keyplane demo` there ends in a traceback.
    """
    if missing := missing_extra(extra):
        print(f"keyplane {command} needs the optional '{extra}' dependencies (not installed: "
              f"{', '.join(missing)}): pip install 'keyplane[{extra}]'", file=sys.stderr)
        return False
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    if not require_extra("demo", "demo"):
        return 2
    from .demo import run_demo

    _configure_logging(args.verbose) if args.verbose else logging.basicConfig(level=logging.WARNING)
    return asyncio.run(run_demo(Path(args.examples), timeout=args.timeout))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keyplane", description="Declarative SSO and SCIM for Kubernetes.")
    parser.add_argument("--version", action="version", version=f"keyplane {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig / in-cluster config")
    add_arguments(run)
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=cmd_run)

    render = sub.add_parser("render", help="reconcile manifests offline and print what the operator would write")
    render.add_argument("-f", "--file", action="append", required=True, help="file or directory (repeatable)")
    render.add_argument("--now", help="evaluation time (RFC 3339); default SOURCE_DATE_EPOCH or the clock")
    render.add_argument("--offline", action="store_true", help="do not fetch metadata URLs")
    add_arguments(render)
    render.set_defaults(func=cmd_render)

    crds = sub.add_parser("crds", help="print (or write) the CustomResourceDefinitions")
    crds.add_argument("-o", "--output", action="append", help="directory to write into (repeatable)")
    crds.set_defaults(func=cmd_crds)

    demo = sub.add_parser("demo", help="run the operator on an emulated API server with examples/quickstart")
    demo.add_argument("--examples", default="examples/quickstart")
    demo.add_argument("--timeout", type=float, default=60.0)
    demo.add_argument("-v", "--verbose", action="store_true")
    demo.set_defaults(func=cmd_demo)

    sub.add_parser("app-demo", add_help=False, help="serve the app side (SSO + SCIM) from a bundle file")
    return parser


def run() -> NoReturn:
    """The `keyplane` program (the console script and `python -m keyplane`): `main()`, then exit."""
    # The objects of the modules imported so far live as long as the process: gc.freeze() keeps them out
    # of the collector's full passes. Frozen again before exiting, because Python's shutdown runs full
    # collections over every object still alive: for a render of 1000 objects (about a million objects,
    # none of them garbage) that took 60-80 ms, a twentieth of the render. Every command has closed its
    # files, clients and event loop by then; stdout and stderr are flushed at exit as always.
    gc.freeze()
    code = main()
    gc.freeze()
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["app-demo"]:  # its own parser takes every option, --help included
        if not require_extra("app-demo", "app"):
            return 2
        from .app.demo import main as app_demo_main

        return app_demo_main(arguments[1:])
    args = build_parser().parse_args(arguments)
    return int(args.func(args))


if __name__ == "__main__":
    run()
