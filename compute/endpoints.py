"""The table of statistics the API offers: names, the fields each needs, a summary.

It is the one table the server's routes, validation, OpenAPI document and the HTTP
client are built from, and it imports nothing heavy (no numpy), so a client can
import it alone. The functions that compute each one are compute.stats.COMPUTE.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    name: str
    needs_state: bool
    needs_direction: bool
    summary: str
    # A one-state statistic that also reads the other states' rows (the global mean):
    # a year range must then filter the whole question, not just the state's run.
    reads_all_states: bool = False


ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint("states_mean", False, False, "Mean of every state, ascending (ties by name)"),
        Endpoint("state_mean", True, False, "Mean of one state"),
        Endpoint("best5", False, True, "The 5 best states, best first"),
        Endpoint("worst5", False, True, "The 5 worst states, worst first"),
        Endpoint("global_mean", False, False, "Mean over all valued rows"),
        Endpoint(
            "diff_from_mean",
            False,
            False,
            "global mean − state mean for every state, in states_mean order",
        ),
        Endpoint(
            "state_diff_from_mean",
            True,
            False,
            "global mean − state mean for one state",
            reads_all_states=True,
        ),
        Endpoint("mean_by_category", False, False, "Mean per (state, category, stratification)"),
        Endpoint(
            "state_mean_by_category",
            True,
            False,
            "Mean per (category, stratification) of one state",
        ),
        Endpoint("state_trend", True, False, "Mean of one state per YearStart, years ascending"),
        Endpoint(
            "state_estimate",
            True,
            False,
            "Sample-size-weighted estimate of one state's Total rows, with a 95 % CI",
        ),
        Endpoint(
            "states_estimate",
            False,
            False,
            "The same estimate for every location, ascending (ties by name)",
        ),
    )
}

# Optional body fields of every statistic: an inclusive range of years.
YEAR_FIELDS = ("year_start", "year_end")
