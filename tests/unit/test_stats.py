"""The vectorised statistics (the nine and the analytics extensions, with and without a
year range) against the naive reference, to 1e-9."""

from __future__ import annotations

import json

import pytest

from compute.dataset import load_csv
from compute.endpoints import ENDPOINTS
from compute.questions import direction
from compute.stats import answer
from tests.reference import Reference, assert_close


def _check_all(path, years=(None, None)):
    ds, ref = load_csv(path), Reference(path)
    assert ds.questions == ref.questions
    checked = 0
    for name, endpoint in ENDPOINTS.items():
        for question in ds.questions:
            if endpoint.needs_direction and direction(question) is None:
                continue
            for state in ds.locations if endpoint.needs_state else [None]:
                got = json.loads(answer(ds, name, question, state, *years))
                assert_close(
                    got,
                    ref.answer(name, question, state, *years),
                    where=f"{name}({question!r}, {state!r}, {years})",
                )
                checked += 1
    return checked


def test_tricky_data_agrees_with_reference(tricky_csv):
    assert _check_all(tricky_csv) > 100


# Both bounds, either alone, one year, the whole range, and the single-year state's
# year (2015) left out and alone.
RANGES = [
    (2013, 2018),
    (2016, None),
    (None, 2014),
    (2015, 2015),
    (2011, 2022),
    (2016, 2022),
    (2012, 2012),
]


@pytest.mark.parametrize("years", RANGES)
def test_year_ranges_agree_with_reference(tricky_csv, years):
    assert _check_all(tricky_csv, years) > 100


def test_year_range_on_demo_data(demo_csv):
    assert _check_all(demo_csv, (2014, 2019)) > 1000


def test_estimates_have_nulls_and_values(tricky_csv):
    """The tricky data exercises both answers of the estimate (guards the fixture)."""
    from compute.questions import LOWER_IS_BETTER

    ds = load_csv(tricky_csv)
    data = json.loads(answer(ds, "states_estimate", LOWER_IS_BETTER[1]))
    nulls = [state for state, value in data.items() if value is None]
    assert "Alaska" in nulls and list(data)[-len(nulls) :] == sorted(nulls)
    valued = [value for value in data.values() if value is not None]
    assert len(valued) >= 3
    assert all(v["ci_low"] < v["estimate"] < v["ci_high"] for v in valued)
    trend = json.loads(answer(ds, "state_trend", LOWER_IS_BETTER[0], "Wyoming"))
    assert list(trend["Wyoming"]) == ["2015"]
    assert json.loads(answer(ds, "state_trend", LOWER_IS_BETTER[0], "Wyoming", 2016)) == {
        "Wyoming": {}
    }


def test_no_year_end_column_means_year_end_is_year_start(tmp_path):
    """A file without YearEnd (the subset variant): each row ends the year it starts."""
    from tests.conftest import tricky_rows
    from tests.support.fixtures import write_rows

    path = write_rows(tmp_path / "no-end.csv", tricky_rows(7))
    ds = load_csv(path)
    assert not ds.year_end_column
    assert ds.arrays["year_end"].tolist() == ds.arrays["year"].tolist()
    assert _check_all(path, (2013, 2016)) > 100


def test_demo_data_agrees_with_reference(demo_csv):
    assert _check_all(demo_csv) > 1000


def test_state_without_values_is_null_or_empty(tricky_csv):
    from compute.questions import LOWER_IS_BETTER

    ds = load_csv(tricky_csv)
    question = LOWER_IS_BETTER[1]
    assert json.loads(answer(ds, "state_mean", question, "Guam")) == {"Guam": None}
    assert json.loads(answer(ds, "state_diff_from_mean", question, "Guam")) == {"Guam": None}
    assert json.loads(answer(ds, "state_mean_by_category", question, "Guam")) == {"Guam": {}}
    assert "Guam" not in json.loads(answer(ds, "states_mean", question))


def test_ties_are_ordered_by_name(tricky_csv):
    ds = load_csv(tricky_csv)
    from compute.questions import LOWER_IS_BETTER

    keys = list(json.loads(answer(ds, "states_mean", LOWER_IS_BETTER[0])))
    assert keys.index("Tie One") + 1 == keys.index("Tie Two")


@pytest.mark.parametrize("endpoint", ["best5", "worst5"])
def test_ranking_respects_direction(tricky_csv, endpoint):
    from compute.questions import HIGHER_IS_BETTER, LOWER_IS_BETTER

    ds = load_csv(tricky_csv)
    for question, good_is_low in ((LOWER_IS_BETTER[0], True), (HIGHER_IS_BETTER[0], False)):
        values = list(json.loads(answer(ds, endpoint, question)).values())
        ascending = (endpoint == "best5") == good_is_low
        assert values == sorted(values, reverse=not ascending)
        assert len(values) == 5
