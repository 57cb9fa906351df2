"""`lestats`: serve the API, ask it, or make data for it. A thin layer over the modules.

Exit codes of `data fetch`: 0 saved; 1 the download is unusable; 130 Ctrl-C. Any
command whose output pipe is closed early (`| head`) exits 141 without a traceback."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from client import cli as client_cli
from compute import demo
from server import fetch

REFUSED, INTERRUPTED = 1, 130
BROKEN_PIPE = 128 + signal.SIGPIPE


def _serve(args: argparse.Namespace) -> int:
    from server.config import ConfigError, load_settings
    from server.serve import serve

    flags = {
        "data": args.data,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "state_dir": args.state_dir,
        "broker": args.broker,
        "frontends": args.frontends,
    }
    try:
        settings = load_settings(args.config, flags)
    except ConfigError as exc:
        print(f"lestats: {exc}", file=sys.stderr)
        return 2
    return serve(settings)


def _worker(args: argparse.Namespace) -> int:
    from server.config import ConfigError, load_settings

    try:
        settings = load_settings(
            args.config, {"data": args.data, "workers": args.workers, "broker": args.broker}
        )
    except ConfigError as exc:
        print(f"lestats: {exc}", file=sys.stderr)
        return 2
    if not settings.broker:
        print(
            "lestats: a worker node needs --broker redis://HOST:PORT/DB (or LESTATS_BROKER)",
            file=sys.stderr,
        )
        return 2
    from server.cluster import node

    return node.run(settings)


def _demo(args: argparse.Namespace) -> int:
    if args.rows < 1:
        print("lestats: --rows must be at least 1", file=sys.stderr)
        return 2
    path = demo.write(args.out, args.rows, args.seed)
    print(f"wrote {args.rows} synthetic rows to {path}")
    return 0


def add_fetch_parser(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    get = data_subparsers.add_parser(
        "fetch",
        help="download the CDC dataset for `lestats serve`",
        description="Download the CDC BRFSS nutrition, physical activity and obesity "
        "CSV, check that it loads, and save it atomically.",
    )
    get.add_argument(
        "--url", default=fetch.DEFAULT_URL, help="CSV to download (default: the CDC's full dataset)"
    )
    get.add_argument("--out", help=f"file to write (default {fetch.default_cache_path()})")
    get.set_defaults(run=run_fetch)
    return get


def run_fetch(args: argparse.Namespace) -> int:
    try:
        path, ds = asyncio.run(fetch.fetch(args.url, args.out))
    except fetch.FetchError as exc:
        print(f"lestats: {exc}", file=sys.stderr)
        return REFUSED
    except KeyboardInterrupt:
        print("lestats: interrupted; nothing was saved", file=sys.stderr)
        return INTERRUPTED
    years = ds.arrays["year"][ds.arrays["year"] > 0]  # 0 = no YearStart in the file
    span = f"{years.min()}–{years.max()}" if years.size else "unknown"
    print(
        f"saved {path}\n"
        f"rows: {ds.rows_read} read, {ds.rows_loaded} with a value, "
        f"{ds.rows_ignored} ignored (no numeric Data_Value)\n"
        f"questions: {len(ds.questions)}\n"
        f"states: {len(ds.locations)}\n"
        f"years: {span}"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="lestats",
        description=(
            "Le Stats Sportif: an asynchronous job API over the CDC BRFSS nutrition, "
            "physical activity and obesity data."
        ),
    )
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--config", help="TOML settings file (default ./config.toml)")
    serve.add_argument("--data", help="CSV file to serve")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 5000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: CPUs)")
    serve.add_argument("--state-dir", help="job journal and results (default ./results)")
    serve.add_argument(
        "--broker",
        help="redis://HOST:PORT/DB: join that cluster as a "
        "front-end (docs/cluster.md); --workers then counts this "
        "machine's worker processes, 0 = none",
    )
    serve.add_argument(
        "--frontends",
        type=int,
        help="cluster mode: front-end processes sharing the port (SO_REUSEPORT; default 1)",
    )
    serve.set_defaults(run=_serve)

    node = commands.add_parser(
        "worker",
        help="run a cluster worker node (no HTTP)",
        description="Take jobs from the cluster's Redis and answer "
        "them on this machine (docs/cluster.md).",
    )
    node.add_argument("--config", help="TOML settings file (default ./config.toml)")
    node.add_argument("--broker", help="redis://HOST:PORT/DB of the cluster")
    node.add_argument("--data", help="CSV file (the same data as the front-ends)")
    node.add_argument("--workers", type=int, help="worker processes (default: CPUs)")
    node.set_defaults(run=_worker)
    client_cli.add_client_parsers(commands)

    data = commands.add_parser("data", help="make or get data to serve")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    make_demo = data_commands.add_parser("demo", help="write the synthetic demo dataset")
    make_demo.add_argument("out", help="CSV file to write")
    make_demo.add_argument("--rows", type=int, default=demo.DEFAULT_ROWS)
    make_demo.add_argument("--seed", type=int, default=0)
    make_demo.set_defaults(run=_demo)
    add_fetch_parser(data_commands)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
        sys.stdout.flush()  # here, so that a closed pipe is met inside the try
    except BrokenPipeError:
        # The reader went away (`lestats questions | head`): not an error worth a
        # traceback. Point stdout at /dev/null so the interpreter's own flush at exit
        # does not fail again, and exit as a process killed by SIGPIPE would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
