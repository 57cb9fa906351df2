"""The statistics as pure functions over a Dataset's arrays: the nine of the original
API (docs/api.md) and the analytics extensions (docs/analytics.md).

Every function takes the dataset, a question code and (for the per-state ones) a
location code, and returns the `data` of the answer as plain Python objects in the
order the contract asks for. Group means are sums over runs of equal codes in the
question's (sorted) slice divided by the run lengths; a group with no valued rows
has no run and is omitted. COMPUTE maps each endpoint of compute.endpoints (the
table the server's routes, validation, OpenAPI document and client are built from)
to its function. A year range is applied before any of them runs: the dataset is
cut down to the question's rows inside the range (Dataset.restricted), so every
function reads the same sorted layout with or without a range, and without one the
original code path runs untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from compute.dataset import Dataset
from compute.endpoints import ENDPOINTS
from compute.questions import LOWER

Answer = dict[str, Any]  # the `data` of a finished job, before JSON encoding


def _run_means(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(key, mean) of every run of equal keys. Rows are sorted by question, location,
    category and stratification, so inside a question's slice every location and every
    group is one run: a single pass, no sorting, no table as wide as all groups."""
    if keys.size == 0:
        return keys, values
    starts = np.flatnonzero(np.diff(keys, prepend=keys[0] - 1))
    sums = np.add.reduceat(values, starts)
    counts = np.diff(starts, append=keys.size)
    return keys[starts], sums / counts


def _location_means(ds: Dataset, q: int) -> tuple[np.ndarray, np.ndarray]:
    """(location codes, means) of the locations with at least one valued row."""
    rows = ds.question_slice(q)
    return _run_means(ds.arrays["location"][rows], ds.arrays["value"][rows])


def _ascending(codes: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Positions ordered by mean ascending, ties by name (codes follow name order)."""
    return np.lexsort((codes, means))


def _descending(codes: np.ndarray, means: np.ndarray) -> np.ndarray:
    return np.lexsort((codes, -means))


def _as_dict(ds: Dataset, codes: np.ndarray, values: np.ndarray, order: np.ndarray) -> Answer:
    names = ds.locations
    return {names[c]: v for c, v in zip(codes[order].tolist(), values[order].tolist())}


def _global_mean(ds: Dataset, q: int) -> float | None:
    values = ds.arrays["value"][ds.question_slice(q)]
    return float(values.sum() / values.size) if values.size else None


def _state_rows(ds: Dataset, q: int, s: int) -> slice:
    """The state's rows inside the question's slice (rows are sorted by location)."""
    rows = ds.question_slice(q)
    location = ds.arrays["location"][rows]
    lo, hi = np.searchsorted(location, [s, s + 1])
    return slice(rows.start + int(lo), rows.start + int(hi))


def _state_mean(ds: Dataset, q: int, s: int) -> float | None:
    values = ds.arrays["value"][_state_rows(ds, q, s)]
    return float(values.sum() / values.size) if values.size else None


def states_mean(ds: Dataset, q: int, s: None = None) -> Answer:
    codes, means = _location_means(ds, q)
    return _as_dict(ds, codes, means, _ascending(codes, means))


def state_mean(ds: Dataset, q: int, s: int) -> Answer:
    return {ds.locations[s]: _state_mean(ds, q, s)}


def _ranked(ds: Dataset, q: int, best: bool) -> Answer:
    codes, means = _location_means(ds, q)
    low_first = (ds.direction(ds.questions[q]) == LOWER) == best
    order = _ascending(codes, means) if low_first else _descending(codes, means)
    return _as_dict(ds, codes, means, order[:5])


def best5(ds: Dataset, q: int, s: None = None) -> Answer:
    return _ranked(ds, q, best=True)


def worst5(ds: Dataset, q: int, s: None = None) -> Answer:
    return _ranked(ds, q, best=False)


def global_mean(ds: Dataset, q: int, s: None = None) -> Answer:
    return {"global_mean": _global_mean(ds, q)}


def diff_from_mean(ds: Dataset, q: int, s: None = None) -> Answer:
    codes, means = _location_means(ds, q)
    overall = _global_mean(ds, q)
    return _as_dict(ds, codes, overall - means, _ascending(codes, means)) if codes.size else {}


def state_diff_from_mean(ds: Dataset, q: int, s: int) -> Answer:
    mean, overall = _state_mean(ds, q, s), _global_mean(ds, q)
    return {ds.locations[s]: None if mean is None or overall is None else overall - mean}


def _group_means(ds: Dataset, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    """(group codes, means) per (location, category, stratification) present in rows,
    in code order, which is (location, category, stratification) name order."""
    return _run_means(ds.arrays["group"][rows], ds.arrays["value"][rows])


def mean_by_category(ds: Dataset, q: int, s: None = None) -> Answer:
    codes, means = _group_means(ds, ds.question_slice(q))
    return dict(zip(ds.group_keys[codes].tolist(), means.tolist()))


def state_mean_by_category(ds: Dataset, q: int, s: int) -> Answer:
    codes, means = _group_means(ds, _state_rows(ds, q, s))
    pairs = codes % (len(ds.categories) * len(ds.stratifications))
    return {ds.locations[s]: dict(zip(ds.pair_keys[pairs].tolist(), means.tolist()))}


def state_trend(ds: Dataset, q: int, s: int) -> Answer:
    """The plain mean of every YearStart, over the rows state_mean reads (every
    stratification); rows without a YearStart have no year to go under."""
    rows = _state_rows(ds, q, s)
    years, values = ds.arrays["year"][rows], ds.arrays["value"][rows]
    dated = years > 0
    found, index = np.unique(years[dated], return_inverse=True)
    sums = np.bincount(index, weights=values[dated], minlength=found.size)
    means = sums / np.bincount(index, minlength=found.size)
    return {ds.locations[s]: {str(y): m for y, m in zip(found.tolist(), means.tolist())}}


# The two-sided 95 % normal quantile the CDC's confidence limits are built with.
Z95 = 1.959964


def _estimate_terms(ds: Dataset, rows: slice) -> tuple[np.ndarray, ...]:
    """(location, n, n·v, n²·s²) of the rows an estimate reads: category "Total" with a
    positive Sample_Size n and both confidence limits (a value they all have), where
    s = (high − low) / (2 × Z95) is the standard error the limits imply."""
    a = ds.arrays
    total = ds.categories.index("Total") if "Total" in ds.categories else -1
    n, low, high = a["sample_size"][rows], a["low"][rows], a["high"][rows]
    # n > 0 is False for NaN: a missing Sample_Size disqualifies the row too.
    ok = (a["category"][rows] == total) & (n > 0) & np.isfinite(low) & np.isfinite(high)
    n = n[ok]
    spread = (high[ok] - low[ok]) / (2 * Z95)
    return a["location"][rows][ok], n, n * a["value"][rows][ok], (n * spread) ** 2


def _estimate(
    count: int, weight: float, weighted: float, variance: float
) -> dict[str, float] | None:
    if count == 0:
        return None
    estimate = weighted / weight
    margin = Z95 * math.sqrt(variance) / weight
    return {
        "estimate": estimate,
        "ci_low": estimate - margin,
        "ci_high": estimate + margin,
        "rows": count,
        # Sample sizes are counts: shown as an integer when they add up to one.
        "sample_size": int(weight) if weight.is_integer() else weight,
    }


def state_estimate(ds: Dataset, q: int, s: int) -> Answer:
    _, n, nv, n2s2 = _estimate_terms(ds, _state_rows(ds, q, s))
    return {
        ds.locations[s]: _estimate(int(n.size), float(n.sum()), float(nv.sum()), float(n2s2.sum()))
    }


def states_estimate(ds: Dataset, q: int, s: None = None) -> Answer:
    """Every location with rows for the question: estimates ascending, ties by name,
    then the locations where no row qualifies (null), by name."""
    rows = ds.question_slice(q)
    location, n, nv, n2s2 = _estimate_terms(ds, rows)
    size = len(ds.locations)
    count = np.bincount(location, minlength=size).tolist()
    sums = [np.bincount(location, weights=w, minlength=size).tolist() for w in (n, nv, n2s2)]
    present = np.unique(ds.arrays["location"][rows]).tolist()
    answers = {c: _estimate(count[c], sums[0][c], sums[1][c], sums[2][c]) for c in present}

    def rank(c: int) -> tuple[bool, float, int]:
        found = answers[c]
        return (found is None, 0.0 if found is None else found["estimate"], c)

    return {ds.locations[c]: answers[c] for c in sorted(present, key=rank)}


# The statistic behind each endpoint of compute.endpoints.ENDPOINTS.
# (The state code is None for the endpoints that take no state.)
COMPUTE: dict[str, Callable[[Dataset, int, Any], Answer]] = {
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


def answer(
    ds: Dataset,
    endpoint: str,
    question: str,
    state: str | None = None,
    year_start: int | None = None,
    year_end: int | None = None,
) -> bytes:
    """The JSON `data` of one job, encoded once. Names and years must be valid
    (validated upstream)."""
    spec = ENDPOINTS[endpoint]
    q = ds.question_index[question]
    s = ds.location_index[state] if spec.needs_state and state is not None else None
    if year_start is not None or year_end is not None:
        # Most one-state statistics read the state's run only: filter just that.
        rows = ds.question_slice(q) if s is None or spec.reads_all_states else _state_rows(ds, q, s)
        ds = ds.restricted(q, rows, year_start, year_end)
    # orjson: the shortest round-trip repr of every float, like json, but ~10x faster on
    # the large by-category answers. NaN/Infinity cannot occur: empty groups are
    # omitted or null.
    return orjson.dumps(COMPUTE[endpoint](ds, q, s))
