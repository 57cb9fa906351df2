"""The `lestats ask` subcommand (wired into server.cli; needs aiohttp only).

Exit codes: 0 done; 1 the server refused the request or the job failed; 3 no answer
(server unreachable or timeout); 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import ast
import asyncio
import json
import sys

from client.http import DEFAULT_TIMEOUT, DEFAULT_URL, Answer, Client, ClientError
from compute.endpoints import ENDPOINTS

REFUSED, NO_ANSWER, INTERRUPTED = 1, 3, 130
KEY_COLUMNS = ("state", "category", "stratification")


def add_ask_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ask = subparsers.add_parser(
        "ask", help="ask a running server for one statistic",
        description="Submit a job, wait for it with long polling and print the answer.")
    # Not argparse choices: the server is the authority on its endpoints, and its
    # answer to an unknown one is what the user should read.
    ask.add_argument("endpoint", metavar="ENDPOINT",
                     help=f"one of: {', '.join(ENDPOINTS)}")
    ask.add_argument("--question", required=True, help="the question's full text")
    ask.add_argument("--state", help="for state_* endpoints: a LocationDesc, e.g. Ohio")
    ask.add_argument("--json", action="store_true", help="print the answer as JSON")
    ask.add_argument("--url", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
    ask.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                     help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT:g})")
    ask.set_defaults(run=run_ask)
    return ask


def run_ask(args: argparse.Namespace) -> int:
    async def ask() -> Answer:
        async with Client(args.url, args.timeout) as client:
            return await client.ask(args.endpoint, args.question, args.state)

    try:
        data = asyncio.run(ask())
    except ClientError as exc:
        hint = ""
        if exc.status == 404 and args.endpoint not in ENDPOINTS:
            hint = f" (no endpoint {args.endpoint!r}; known: {', '.join(ENDPOINTS)})"
        print(f"lestats: {args.endpoint}: {exc}{hint}", file=sys.stderr)
        return NO_ANSWER if exc.status is None else REFUSED
    except TimeoutError as exc:
        print(f"lestats: {args.endpoint}: {exc}", file=sys.stderr)
        return NO_ANSWER
    except KeyboardInterrupt:
        return INTERRUPTED
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json
          else table(args.endpoint, data))
    return 0


def table(endpoint: str, data: Answer) -> str:
    """The answer as aligned columns: one row per value, tuple keys split into
    columns (state, category, stratification), numbers right-aligned to 3 decimals."""
    rows = _rows(data)
    if not rows:
        return "(no data)"
    width = max(len(cells) for cells, _ in rows)
    keys = [""] if endpoint == "global_mean" else list(KEY_COLUMNS[:width])
    keys += [""] * (width - len(keys))
    header = [*keys, "global − state" if "diff" in endpoint else "mean"]
    lines = [[*cells, *[""] * (width - len(cells)),
              "no data" if value is None else f"{value:.3f}"] for cells, value in rows]
    sizes = [max(len(line[i]) for line in (header, *lines)) for i in range(width + 1)]

    def render(line: list[str]) -> str:
        text = [cell.ljust(size) for cell, size in zip(line[:-1], sizes)]
        return "  ".join([*text, line[-1].rjust(sizes[-1])])

    return "\n".join([render(header), render(["-" * size for size in sizes]),
                      *map(render, lines)])


def _rows(data: dict, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], float | None]]:
    rows: list[tuple[tuple[str, ...], float | None]] = []
    for key, value in data.items():
        cells = (*prefix, *_key_cells(key))
        if isinstance(value, dict):
            rows.extend(_rows(value, cells))
        else:
            rows.append((cells, value))
    return rows


def _key_cells(key: str) -> tuple[str, ...]:
    """The *_by_category keys are str() of a tuple (SPEC §2): split them back."""
    if key.startswith("("):
        try:
            parts = ast.literal_eval(key)
        except (ValueError, SyntaxError):
            return (key,)
        if isinstance(parts, tuple) and all(isinstance(p, str) for p in parts):
            return parts
    return (key,)
