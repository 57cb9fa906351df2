"""Request checks of docs/api.md, "Errors", done once, before a job exists.

Every failure is a `BadRequest` whose message is the sentence the client reads.
"""

from __future__ import annotations

import difflib
import json
import re

from compute.dataset import Dataset
from compute.endpoints import YEAR_FIELDS, Endpoint

_JOB_ID = re.compile(r"(?:job_id_)?([1-9][0-9]{0,17})")
_COUNT = re.compile(r"[0-9]{1,18}")


class BadRequest(Exception):
    pass


def is_json_type(content_type: str) -> bool:
    """`application/json`, or a JSON-based type (`application/<name>+json`, RFC 6839).

    Any parameter (`charset=...`) is ignored: JSON text is UTF-8 (RFC 8259), and
    json.loads also reads UTF-16/32. The types a browser may send cross-site without
    asking (text/plain, form encodings) are refused, so a job POST from another
    site's page needs a CORS preflight, which this server never grants.
    """
    kind = content_type.strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json") and "/" not in kind[12:]
    )


def parse_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _text_field(body: dict, name: str) -> str:
    if name not in body:
        raise BadRequest(f"the field '{name}' is missing")
    value = body[name]
    if not isinstance(value, str):
        raise BadRequest(f"the field '{name}' must be a string")
    return value


def _suggestion(value: str, known: list[str]) -> str:
    close = difflib.get_close_matches(value[:500], known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _shown(value: str) -> str:
    return repr(value if len(value) <= 200 else value[:200] + "…")


def job_fields(endpoint: Endpoint, body: dict, ds: Dataset) -> tuple[str, str | None]:
    """(question, state) of a valid request for `endpoint`."""
    question = _text_field(body, "question")
    if question not in ds.question_index:
        raise BadRequest(
            f"unknown question {_shown(question)}{_suggestion(question, ds.questions)}"
        )
    if endpoint.needs_direction and ds.direction(question) is None:
        raise BadRequest(
            f"{endpoint.name} needs a question where lower or higher is "
            f"better, and {_shown(question)} has no such direction"
        )
    state = None
    if endpoint.needs_state:
        state = _text_field(body, "state")
        if state not in ds.location_index:
            raise BadRequest(f"unknown state {_shown(state)}{_suggestion(state, ds.locations)}")
    return question, state


def year_fields(body: dict, ds: Dataset) -> tuple[int | None, int | None]:
    """The optional inclusive year range (year_start, year_end) of a statistic; a
    field that is absent or null is no bound (docs/analytics.md)."""
    given = {name: body.get(name) for name in YEAR_FIELDS}
    if all(value is None for value in given.values()):
        return None, None
    years = ds.years
    if not years:
        raise BadRequest(
            "the data has no YearStart/YearEnd values, so it cannot be filtered by year"
        )
    covered = f"the data covers {years[0]}-{years[-1]}"
    for name, value in given.items():
        if value is None:
            continue
        # bool is an int in Python: refused. 2015.0 is an integer to JSON Schema (and
        # to the OpenAPI document a client validates against): taken as 2015.
        if isinstance(value, float) and value.is_integer():
            value = given[name] = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadRequest(f"the field '{name}' must be an integer year; {covered}")
        if not years[0] <= value <= years[-1]:
            raise BadRequest(
                f"{name} {value} is outside the years the data covers ({years[0]}-{years[-1]})"
            )
    start, end = given["year_start"], given["year_end"]
    if start is not None and end is not None and start > end:
        raise BadRequest(f"year_start {start} is after year_end {end}; {covered}")
    return start, end


def job_id(text: str) -> int | None:
    """The integer of `17` or `job_id_17`; None for anything else."""
    match = _JOB_ID.fullmatch(text)  # not match(): "$" also matches before a final "\n"
    return int(match.group(1)) if match else None


def wait_seconds(text: str | None, limit: float) -> float:
    if text is None:
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        raise BadRequest("the parameter 'wait' must be a number of seconds") from None
    if not 0 <= seconds <= limit:  # also rejects nan
        raise BadRequest(f"the parameter 'wait' must be between 0 and {limit:g} seconds")
    return seconds


def listing_page(after: str | None, limit: str | None, max_limit: int) -> tuple[int, int | None]:
    """(after, limit) of GET /api/jobs?after=ID&limit=N; limit None = everything."""
    if after is not None and not _COUNT.fullmatch(after):
        raise BadRequest("the parameter 'after' must be a job id (0 or more)")
    if limit is not None and not (_COUNT.fullmatch(limit) and 1 <= int(limit) <= max_limit):
        raise BadRequest(f"the parameter 'limit' must be a whole number from 1 to {max_limit}")
    return int(after or 0), None if limit is None else int(limit)
