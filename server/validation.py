"""Request checks of docs/api.md, "Errors", done once, before a job exists.

Every failure is a `BadRequest` whose message is the sentence the client reads.
"""
from __future__ import annotations

import difflib
import json
import re

from compute.dataset import Dataset
from compute.endpoints import Endpoint

_JOB_ID = re.compile(r"(?:job_id_)?([1-9][0-9]{0,17})")


class BadRequest(Exception):
    pass


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
        raise BadRequest(f"unknown question {_shown(question)}"
                         f"{_suggestion(question, ds.questions)}")
    if endpoint.needs_direction and ds.direction(question) is None:
        raise BadRequest(f"{endpoint.name} needs a question where lower or higher is "
                         f"better, and {_shown(question)} has no such direction")
    state = None
    if endpoint.needs_state:
        state = _text_field(body, "state")
        if state not in ds.location_index:
            raise BadRequest(f"unknown state {_shown(state)}"
                             f"{_suggestion(state, ds.locations)}")
    return question, state


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
