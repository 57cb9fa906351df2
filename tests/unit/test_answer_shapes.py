"""The load test's shape checks accept every real answer and reject broken ones."""

from __future__ import annotations

import json
import random

import pytest

from compute import demo
from compute.dataset import load_csv
from compute.endpoints import ENDPOINTS
from compute.questions import direction
from compute.stats import answer
from tests.load import answer_shapes
from tests.load.answer_shapes import Context, check, check_body


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return load_csv(demo.write(tmp_path_factory.mktemp("shapes") / "demo.csv", count=3000, seed=5))


@pytest.fixture(scope="module")
def ctx(dataset):
    return Context(
        states=list(dataset.locations), directions={q: direction(q) for q in dataset.questions}
    )


def test_every_endpoint_has_a_check():
    assert set(answer_shapes.CHECKS) == set(ENDPOINTS)
    assert answer_shapes.NEEDS_STATE == {e.name for e in ENDPOINTS.values() if e.needs_state}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_real_answers_pass(dataset, ctx, endpoint):
    rng = random.Random(endpoint)
    for _ in range(20):
        question = rng.choice(
            ctx.ranked_questions if endpoint in ("best5", "worst5") else ctx.questions
        )
        state = rng.choice(ctx.states) if ENDPOINTS[endpoint].needs_state else None
        data = json.loads(answer(dataset, endpoint, question, state))
        assert check(endpoint, data, ctx, question, state) is None
        assert check_body(endpoint, {"status": "done", "data": data}, ctx, question, state) is None


def test_context_from_the_api_bodies():
    ctx = Context.from_api(
        {"states": ["Ohio", "Utah"]},
        {"questions": [{"text": "Q1", "direction": "lower"}, {"text": "Q2", "direction": None}]},
    )
    assert ctx.questions == ["Q1", "Q2"] and ctx.ranked_questions == ["Q1"]


Q = "Percent of adults aged 18 years and older who have obesity"  # lower is better
CTX = Context(states=["Alabama", "Ohio", "Utah", "Iowa", "Maine", "Texas"], directions={Q: "lower"})
BROKEN = [
    ("states_mean", {"Ohio": 30.0, "Utah": 20.0}, None, "ascending"),
    ("states_mean", {"Atlantis": 1.0}, None, "unknown state"),
    ("states_mean", {}, None, "empty"),
    ("states_mean", {"Ohio": float("nan")}, None, "finite"),
    ("states_mean", {"Ohio": "30"}, None, "finite"),
    ("states_mean", [["Ohio", 1.0]], None, "object"),
    ("state_mean", {"Utah": 1.0}, "Ohio", "exactly the key"),
    ("state_mean", {"Ohio": "x"}, "Ohio", "bad value"),
    ("best5", {s: float(i) for i, s in enumerate(CTX.states)}, None, "at most 5"),
    ("best5", {"Ohio": 3.0, "Utah": 1.0}, None, "best first"),
    ("worst5", {"Ohio": 1.0, "Utah": 3.0}, None, "worst first"),
    ("global_mean", {"mean": 1.0}, None, "global_mean"),
    ("global_mean", {"global_mean": None}, None, "finite"),
    ("diff_from_mean", {"Ohio": -1.0, "Utah": 2.0}, None, "descend"),
    ("state_diff_from_mean", {}, "Ohio", "exactly the key"),
    ("mean_by_category", {"Ohio, Age, 18": 1.0}, None, "tuple"),
    ("mean_by_category", {"('Atlantis', 'Age (years)', '18 - 24')": 1.0}, None, "unknown state"),
    ("mean_by_category", {"('Ohio', 'Age (years)', '18 - 24')": None}, None, "finite"),
    ("state_mean_by_category", {"Ohio": {"('Ohio', 'Age', '18')": 1.0}}, "Ohio", "tuple"),
    ("state_mean_by_category", {"Ohio": []}, "Ohio", "not an object"),
    ("state_mean_by_category", {"Utah": {}}, "Ohio", "exactly the key"),
]


@pytest.mark.parametrize("endpoint,data,state,words", BROKEN)
def test_broken_answers_are_named(endpoint, data, state, words):
    problem = check(endpoint, data, CTX, Q, state)
    assert problem is not None and words in problem


def test_nulls_where_the_contract_allows_them():
    assert check("state_mean", {"Ohio": None}, CTX, Q, "Ohio") is None
    assert check("state_diff_from_mean", {"Ohio": None}, CTX, Q, "Ohio") is None
    assert check("state_mean_by_category", {"Ohio": {}}, CTX, Q, "Ohio") is None
    assert (
        check(
            "mean_by_category",
            {"('Ohio', 'Income', '$15,000 - $24,999')": 2.5, "('Ohio', \"Children's\", 'x')": 1.0},
            CTX,
            Q,
        )
        is None
    )


def test_unfinished_or_failed_jobs_do_not_count():
    assert "not a finished job" in check_body("global_mean", {"status": "running"}, CTX, Q)
    assert "not a finished job" in check_body(
        "global_mean", {"status": "error", "reason": "x"}, CTX, Q
    )
    assert "without 'data'" in check_body("global_mean", {"status": "done"}, CTX, Q)


def test_long_by_category_answers_are_checked_key_by_key():
    good = {
        f"('{s}', 'Age (years)', '{n} - {n + 9}')": 20.0 + n for s in CTX.states for n in range(300)
    }
    assert check("mean_by_category", good, CTX, Q) is None
    assert check("mean_by_category", {**good, "('Ohio', 'Gender', 'Male')": 7}, CTX, Q) is None
    for bad_key, bad_value, words in (
        ("('Atlantis', 'Gender', 'Male')", 1.0, "unknown state"),
        ("('Ohio', 'Gender')", 1.0, "tuple"),
        ("('Ohio', 'Gender', 'Male')\n('Ohio', 'Gender', 'Female')", 1.0, "tuple"),
        ("('Ohio', 'Gender', 'Male')", float("inf"), "finite"),
        ("('Ohio', 'Gender', 'Male')", True, "finite"),
    ):
        problem = check("mean_by_category", {**good, bad_key: bad_value}, CTX, Q)
        assert problem is not None and words in problem, (bad_key, problem)
    inner = {f"('Age (years)', '{n}')": float(n) for n in range(100)}
    assert check("state_mean_by_category", {"Ohio": inner}, CTX, Q, "Ohio") is None
    problem = check("state_mean_by_category", {"Ohio": {**inner, "('x')": 1.0}}, CTX, Q, "Ohio")
    assert problem is not None and "tuple" in problem
