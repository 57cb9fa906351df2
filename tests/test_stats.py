"""The nine vectorised statistics against the naive reference, to 1e-9."""
from __future__ import annotations

import json

import pytest

from compute.dataset import load_csv
from compute.endpoints import ENDPOINTS
from compute.questions import direction
from compute.stats import answer
from tests.reference import Reference, assert_close


def _check_all(path):
    ds, ref = load_csv(path), Reference(path)
    assert ds.questions == ref.questions
    checked = 0
    for name, endpoint in ENDPOINTS.items():
        for question in ds.questions:
            if endpoint.needs_direction and direction(question) is None:
                continue
            for state in (ds.locations if endpoint.needs_state else [None]):
                got = json.loads(answer(ds, name, question, state))
                assert_close(got, ref.answer(name, question, state),
                             where=f"{name}({question!r}, {state!r})")
                checked += 1
    return checked


def test_tricky_data_agrees_with_reference(tricky_csv):
    assert _check_all(tricky_csv) > 100


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
