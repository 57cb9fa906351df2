"""The client commands of `lestats` (wired into server.cli; need aiohttp only):
`ask` one statistic, list the `questions` and the `states` a server knows.

`ask --question` takes the full text, the CDC QuestionID (Q036) or an unambiguous
beginning of the text, resolved against the server's own /api/questions.

Exit codes: 0 done; 1 the server refused the request, the job failed, or a
--question matched several questions; 3 no answer (server unreachable or timeout);
130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import sys

from client.http import (
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    Answer,
    Client,
    ClientError,
    QuestionInfo,
)
from compute.endpoints import ENDPOINTS

REFUSED, NO_ANSWER, INTERRUPTED = 1, 3, 130
KEY_COLUMNS = ("state", "category", "stratification")


class Ambiguous(Exception):
    """A --question that begins several questions; the message lists them."""


def add_client_parsers(subparsers: argparse._SubParsersAction) -> None:
    add_ask_parser(subparsers)
    for name, what in (
        ("questions", "the questions (id, better direction, text)"),
        ("states", "the states (every LocationDesc)"),
    ):
        command = subparsers.add_parser(
            name,
            help=f"list {what} a running server knows",
            description=f"Print {what}, one a line.",
        )
        command.add_argument("--json", action="store_true", help="print the list as JSON")
        _add_connection(command)
        command.set_defaults(run=run_listing, listing=name)


def _add_connection(command: argparse.ArgumentParser) -> None:
    command.add_argument("--url", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
    command.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT:g})",
    )


def add_ask_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ask = subparsers.add_parser(
        "ask",
        help="ask a running server for one statistic",
        description="Submit a job, wait for it with long polling and print the answer.",
    )
    # Not argparse choices: the server is the authority on its endpoints, and its
    # answer to an unknown one is what the user should read.
    ask.add_argument("endpoint", metavar="ENDPOINT", help=f"one of: {', '.join(ENDPOINTS)}")
    ask.add_argument(
        "--question",
        required=True,
        help="the question: its full text, its CDC id (Q036) or an unambiguous "
        "beginning of the text (`lestats questions` lists them)",
    )
    ask.add_argument("--state", help="for state_* endpoints: a LocationDesc, e.g. Ohio")
    ask.add_argument(
        "--year-start",
        type=int,
        metavar="YEAR",
        help="only rows with YearStart >= YEAR (docs/analytics.md)",
    )
    ask.add_argument("--year-end", type=int, metavar="YEAR", help="only rows with YearEnd <= YEAR")
    ask.add_argument("--json", action="store_true", help="print the answer as JSON")
    _add_connection(ask)
    ask.set_defaults(run=run_ask)
    return ask


def resolve_question(given: str, known: list[QuestionInfo]) -> str:
    """The full text `given` stands for: itself when it is a question; the question
    whose CDC id it is; the one question it begins (ignoring case). Anything else is
    sent as it is, so that the server's own reason (and suggestion) is what the user
    reads."""
    texts = [q["text"] for q in known]
    if given in texts:
        return given
    for question in known:
        if question.get("id", "").casefold() == given.strip().casefold():
            return question["text"]
    folded = given.casefold()
    starting = [text for text in texts if given and text.casefold().startswith(folded)]
    if len(starting) > 1:
        raise Ambiguous(
            f"--question {given!r} begins {len(starting)} questions; give more "
            "of the text, or the id from `lestats questions`:\n  " + "\n  ".join(starting)
        )
    return starting[0] if starting else given


def run_ask(args: argparse.Namespace) -> int:
    async def ask() -> Answer:
        async with Client(args.url, args.timeout) as client:
            try:
                known = await client.questions()
            except ClientError as exc:
                if exc.status is None:
                    raise
                known = []  # a server without this extension: send the text as given
            question = resolve_question(args.question, known)
            return await client.ask(
                args.endpoint,
                question,
                args.state,
                year_start=args.year_start,
                year_end=args.year_end,
            )

    try:
        data = asyncio.run(ask())
    except Ambiguous as exc:
        print(f"lestats: {args.endpoint}: {exc}", file=sys.stderr)
        return REFUSED
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
    print(
        json.dumps(data, indent=2, ensure_ascii=False) if args.json else table(args.endpoint, data)
    )
    return 0


def run_listing(args: argparse.Namespace) -> int:
    async def fetch() -> list[QuestionInfo] | list[str]:
        async with Client(args.url, args.timeout) as client:
            if args.listing == "questions":
                return await client.questions()
            return await client.states()

    try:
        items = asyncio.run(fetch())
    except ClientError as exc:
        print(f"lestats: {args.listing}: {exc}", file=sys.stderr)
        return NO_ANSWER if exc.status is None else REFUSED
    except TimeoutError as exc:
        print(f"lestats: {args.listing}: {exc}", file=sys.stderr)
        return NO_ANSWER
    except KeyboardInterrupt:
        return INTERRUPTED
    if args.json:
        print(json.dumps(items, indent=2, ensure_ascii=False))
    elif args.listing == "states":
        print("\n".join(str(item) for item in items))
    else:
        print(question_lines(items))  # type: ignore[arg-type]
    return 0


def question_lines(questions: list[QuestionInfo]) -> str:
    """One question a line: id (when the data has ids), better direction, text."""
    width = max((len(q.get("id", "")) for q in questions), default=0)
    return "\n".join(
        " ".join(
            filter(
                None, [q.get("id", "").ljust(width), (q["direction"] or "-").ljust(6), q["text"]]
            )
        )
        for q in questions
    )


def table(endpoint: str, data: Answer) -> str:
    """The answer as aligned columns: one row per value, tuple keys split into
    columns (state, category, stratification), numbers right-aligned to 3 decimals;
    an estimate is one row per state with its interval, rows and sample size."""
    if endpoint in ESTIMATES:
        return _estimate_table(data)
    rows = _rows(data)
    if not rows:
        return "(no data)"
    width = max(len(cells) for cells, _ in rows)
    keys = (
        [""]
        if endpoint == "global_mean"
        else ["state", "year"]
        if endpoint == "state_trend"
        else list(KEY_COLUMNS[:width])
    )
    keys += [""] * (width - len(keys))
    header = [*keys, "global − state" if "diff" in endpoint else "mean"]
    lines = [
        [*cells, *[""] * (width - len(cells)), "no data" if value is None else f"{value:.3f}"]
        for cells, value in rows
    ]
    return _render(header, lines)


ESTIMATES = ("state_estimate", "states_estimate")
ESTIMATE_COLUMNS = ("estimate", "ci_low", "ci_high", "rows", "sample_size")


def _estimate_table(data: Answer) -> str:
    if not data:
        return "(no data)"
    lines = [
        [
            state,
            *(
                ["no data"] + [""] * 4
                if value is None
                else [f"{value[c]:.3f}" for c in ESTIMATE_COLUMNS[:3]]
                + [_count(value[c]) for c in ESTIMATE_COLUMNS[3:]]
            ),
        ]
        for state, value in data.items()
    ]
    return _render(["state", *ESTIMATE_COLUMNS], lines, numbers=len(ESTIMATE_COLUMNS))


def _count(value: float) -> str:
    """Rows and sample sizes are whole numbers: written in full (4717, not 4.7e+03)."""
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def _render(header: list[str], lines: list[list[str]], numbers: int = 1) -> str:
    """Columns padded to their widest cell: text left-aligned, the last `numbers`
    columns (the numbers) right-aligned."""
    sizes = [max(len(line[i]) for line in (header, *lines)) for i in range(len(header))]
    first_number = len(header) - numbers

    def render(line: list[str]) -> str:
        return "  ".join(
            cell.rjust(size) if i >= first_number else cell.ljust(size)
            for i, (cell, size) in enumerate(zip(line, sizes))
        ).rstrip()

    return "\n".join([render(header), render(["-" * size for size in sizes]), *map(render, lines)])


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
    """The *_by_category keys are str() of a tuple (docs/api.md, "The nine
    statistics"): split them back."""
    if key.startswith("("):
        try:
            parts = ast.literal_eval(key)
        except (ValueError, SyntaxError):
            return (key,)
        if isinstance(parts, tuple) and all(isinstance(p, str) for p in parts):
            return parts
    return (key,)
