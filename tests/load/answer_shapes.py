"""Shape checks for the `data` of a finished job, one per endpoint (docs/api.md,
"The nine statistics").

A load test must not count a job whose answer is wrong in shape: a 200 with the
wrong keys, a missing state, a NaN, a broken order. These checks are cheap (they run
inside the load generator for every job) and know only what any client knows: the
list of states, the questions and their direction. They check types, keys and order,
not the numbers themselves (tests/unit/test_stats.py compares numbers with a reference).

`check(endpoint, data, ctx, question, state)` returns None when the shape is right,
otherwise one sentence saying what is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# Python's str() of a tuple of strings, as the *_by_category keys are (docs/api.md,
# "The nine statistics").
# A label may itself hold an apostrophe, in which case repr() switches to "…"; the
# pattern accepts both quotings.
_ITEM = r"""(?:'[^']*'|"[^"]*")"""
_PAIR_KEY = re.compile(rf"^\(({_ITEM}), ({_ITEM})\)$")
_TRIPLE_KEY = re.compile(rf"^\(({_ITEM}), ({_ITEM}), ({_ITEM})\)$")
# The same, over all keys joined by newlines at once: mean_by_category has ~1,650 keys
# and matching them one by one cost the load generator ~1.5 ms of CPU per answer.
_LINE_ITEM = r"""(?:'[^'\n]*'|"[^"\n]*")"""
_PAIR_LINES = re.compile(rf"^\({_LINE_ITEM}, {_LINE_ITEM}\)$", re.M)
_TRIPLE_LINES = re.compile(rf"^\(({_LINE_ITEM}), {_LINE_ITEM}, {_LINE_ITEM}\)$", re.M)


@dataclass
class Context:
    """What a client knows about the deployment: from /api/states and /api/questions."""

    states: list[str]
    directions: dict[str, str | None]  # question → "lower" | "higher" | None
    state_set: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.state_set = frozenset(self.states)

    @property
    def questions(self) -> list[str]:
        return list(self.directions)

    @property
    def ranked_questions(self) -> list[str]:
        """Questions best5/worst5 accept (those with a direction)."""
        return [q for q, d in self.directions.items() if d in ("lower", "higher")]

    @classmethod
    def from_api(cls, states_body: dict, questions_body: dict) -> Context:
        states = states_body["states"]
        directions = {q["text"]: q.get("direction") for q in questions_body["questions"]}
        if not states or not directions:
            raise ValueError("the server lists no states or no questions")
        return cls(states=list(states), directions=directions)


def _all_numbers(values) -> bool:
    """Every value a finite int or float (not bool), fast for long lists."""
    if not all(type(v) is float or type(v) is int for v in values):
        return False
    return math.isfinite(math.fsum(values)) or all(math.isfinite(v) for v in values)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number_or_null(value) -> bool:
    return value is None or _is_number(value)


def _state_map(data, ctx: Context, what: str) -> str | None:
    """{state: number} with known states only, at least one entry."""
    if not isinstance(data, dict):
        return f"{what}: expected an object, got {type(data).__name__}"
    if not data:
        return f"{what}: empty object"
    for key, value in data.items():
        if key not in ctx.state_set:
            return f"{what}: unknown state {key!r}"
        if not _is_number(value):
            return f"{what}: value of {key!r} is not a finite number ({value!r})"
    return None


def _ordered(values: list[float], ascending: bool) -> bool:
    if ascending:
        return all(a <= b for a, b in zip(values, values[1:]))
    return all(a >= b for a, b in zip(values, values[1:]))


def _single_state(data, state: str | None, what: str, value_ok) -> str | None:
    if not isinstance(data, dict) or list(data) != [state]:
        keys = list(data) if isinstance(data, dict) else type(data).__name__
        return f"{what}: expected exactly the key {state!r}, got {keys!r}"
    if not value_ok(data[state]):
        return f"{what}: bad value {data[state]!r} for {state!r}"
    return None


def states_mean(data, ctx, question, state):
    problem = _state_map(data, ctx, "states_mean")
    if problem is None and not _ordered(list(data.values()), ascending=True):
        problem = "states_mean: means are not in ascending order"
    return problem


def state_mean(data, ctx, question, state):
    return _single_state(data, state, "state_mean", _number_or_null)


def _ranked(name: str, best: bool):
    def check(data, ctx, question, state):
        problem = _state_map(data, ctx, name)
        if problem is not None:
            return problem
        if len(data) > 5:
            return f"{name}: {len(data)} states, expected at most 5"
        direction = ctx.directions.get(question)
        if direction in ("lower", "higher"):
            ascending = (direction == "lower") == best
            if not _ordered(list(data.values()), ascending):
                return f"{name}: not ordered {'best' if best else 'worst'} first"
        return None

    return check


best5 = _ranked("best5", best=True)
worst5 = _ranked("worst5", best=False)


def global_mean(data, ctx, question, state):
    if not isinstance(data, dict) or list(data) != ["global_mean"]:
        return f"global_mean: expected {{'global_mean': number}}, got {data!r:.80}"
    if not _is_number(data["global_mean"]):
        return f"global_mean: not a finite number ({data['global_mean']!r})"
    return None


def diff_from_mean(data, ctx, question, state):
    # Same order as states_mean (mean ascending), so the diff (global − mean)
    # descends: float subtraction from one constant is monotone.
    problem = _state_map(data, ctx, "diff_from_mean")
    if problem is None and not _ordered(list(data.values()), ascending=False):
        problem = "diff_from_mean: not in states_mean order (diffs must descend)"
    return problem


def state_diff_from_mean(data, ctx, question, state):
    return _single_state(data, state, "state_diff_from_mean", _number_or_null)


def _tuple_items(key: str, pattern: re.Pattern) -> tuple[str, ...] | None:
    match = pattern.match(key)
    return None if match is None else tuple(item[1:-1] for item in match.groups())


def _keys_match(keys: list[str], lines: re.Pattern) -> list[str] | None:
    """The first items of all keys if every key has the tuple form, else None."""
    joined = "\n".join(keys)
    if joined.count("\n") != len(keys) - 1:
        return None
    found = lines.findall(joined)
    return found if len(found) == len(keys) else None


def mean_by_category(data, ctx, question, state):
    if not isinstance(data, dict) or not data:
        return f"mean_by_category: expected a non-empty object, got {data!r:.80}"
    first = _keys_match(list(data), _TRIPLE_LINES)
    if (
        first is not None
        and {item[1:-1] for item in first} <= ctx.state_set
        and _all_numbers(list(data.values()))
    ):
        return None
    for key, value in data.items():  # slow path: name the problem
        items = _tuple_items(key, _TRIPLE_KEY)
        if items is None:
            return f"mean_by_category: key {key!r} is not a (state, category, stratification) tuple"
        if items[0] not in ctx.state_set:
            return f"mean_by_category: unknown state in key {key!r}"
        if not _is_number(value):
            return f"mean_by_category: value of {key!r} is not a finite number"
    return None


def state_mean_by_category(data, ctx, question, state):
    if not isinstance(data, dict) or list(data) != [state]:
        return f"state_mean_by_category: expected exactly the key {state!r}"
    inner = data[state]
    if not isinstance(inner, dict):
        return "state_mean_by_category: the state's value is not an object"
    if not inner or (
        _keys_match(list(inner), _PAIR_LINES) is not None and _all_numbers(list(inner.values()))
    ):
        return None
    for key, value in inner.items():  # slow path: name the problem
        if _tuple_items(key, _PAIR_KEY) is None:
            return f"state_mean_by_category: key {key!r} is not a (category, stratification) tuple"
        if not _is_number(value):
            return f"state_mean_by_category: value of {key!r} is not a finite number"
    return None


def state_trend(data, ctx, question, state):
    def by_year(inner) -> bool:
        return (
            isinstance(inner, dict)
            and all(k.isdigit() for k in inner)
            and [int(k) for k in inner] == sorted(int(k) for k in inner)
            and _all_numbers(list(inner.values()))
        )

    return _single_state(data, state, "state_trend", by_year)


_ESTIMATE_KEYS = ["estimate", "ci_low", "ci_high", "rows", "sample_size"]


def _estimate_ok(value) -> bool:
    """null, or an estimate inside its interval from at least one row (docs/analytics.md)."""
    if value is None:
        return True
    return (
        isinstance(value, dict)
        and list(value) == _ESTIMATE_KEYS
        and _all_numbers(list(value.values()))
        and type(value["rows"]) is int
        and value["rows"] >= 1
        and value["sample_size"] > 0
        and value["ci_low"] <= value["estimate"] <= value["ci_high"]
    )


def state_estimate(data, ctx, question, state):
    return _single_state(data, state, "state_estimate", _estimate_ok)


def states_estimate(data, ctx, question, state):
    if not isinstance(data, dict) or not data:
        return f"states_estimate: expected a non-empty object, got {data!r:.80}"
    for key, value in data.items():
        if key not in ctx.state_set:
            return f"states_estimate: unknown state {key!r}"
        if not _estimate_ok(value):
            return f"states_estimate: bad estimate {value!r} for {key!r}"
    values = list(data.values())
    first = values[: sum(v is not None for v in values)]  # must hold every estimate
    if None in first or not _ordered([v["estimate"] for v in first], ascending=True):
        return "states_estimate: not estimates ascending, then the nulls"
    return None


CHECKS = {
    "states_mean": states_mean,
    "state_mean": state_mean,
    "best5": best5,
    "worst5": worst5,
    "global_mean": global_mean,
    "diff_from_mean": diff_from_mean,
    "state_diff_from_mean": state_diff_from_mean,
    "mean_by_category": mean_by_category,
    "state_mean_by_category": state_mean_by_category,
    "state_trend": state_trend,
    "state_estimate": state_estimate,
    "states_estimate": states_estimate,
}
NEEDS_STATE = frozenset(
    {
        "state_mean",
        "state_diff_from_mean",
        "state_mean_by_category",
        "state_trend",
        "state_estimate",
    }
)
NEEDS_DIRECTION = frozenset({"best5", "worst5"})


def check(endpoint: str, data, ctx: Context, question: str, state: str | None = None) -> str | None:
    """None if `data` has the shape of a correct answer to this job, else the problem."""
    try:
        checker = CHECKS[endpoint]
    except KeyError:
        return f"no shape check for endpoint {endpoint!r}"
    return checker(data, ctx, question, state)


def check_body(
    endpoint: str, body, ctx: Context, question: str, state: str | None = None
) -> str | None:
    """Check a whole `GET /api/get_results` body of a finished job."""
    if not isinstance(body, dict) or body.get("status") != "done":
        return f"not a finished job: {body!r:.120}"
    if "data" not in body:
        return "finished job without 'data'"
    return check(endpoint, body["data"], ctx, question, state)
