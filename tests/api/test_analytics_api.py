"""The analytics extensions over HTTP (docs/analytics.md): the year range on every
statistic, its refusals, /api/years and /api/info, through the real application and
its real worker processes; and a real server over a file without YearEnd."""

from __future__ import annotations

import itertools

import pytest

from compute.endpoints import ENDPOINTS
from compute.questions import LOWER_IS_BETTER
from server.openapi import served
from tests.conftest import tricky_rows
from tests.reference import Reference, assert_close
from tests.support.fixtures import ANALYTICS_HEADER, write_rows
from tests.support.inprocess import running_app
from tests.support.live import start_server

OBESITY = LOWER_IS_BETTER[1]


@pytest.fixture(scope="module")
def tricky_csv(tmp_path_factory):
    """One of the tricky data sets (tests/unit/test_stats.py checks them all, offline)."""
    return write_rows(
        tmp_path_factory.mktemp("data") / "tricky.csv", tricky_rows(0), ANALYTICS_HEADER
    )


@pytest.fixture
async def api(tmp_path, tricky_csv, aiohttp_client):
    async with running_app(tricky_csv, tmp_path / "state", workers=2) as running:
        client = await aiohttp_client(running.app)
        client.running = running
        yield client


async def _answer(client, endpoint, body):
    response = await client.post(f"/api/{endpoint}", json=body)
    assert response.status == 200, await response.text()
    job_id = (await response.json())["job_id"]
    result = await (await client.get(f"/api/get_results/{job_id}?wait=10")).json()
    assert result["status"] == "done", result
    return result["data"]


async def test_every_statistic_with_a_year_range(api, tricky_csv):
    reference = Reference(tricky_csv)
    for years, (endpoint, spec) in itertools.product(
        [
            {"year_start": 2014, "year_end": 2019},
            {"year_start": 2016},
            {"year_end": 2013},
            {"year_start": 2015, "year_end": 2015},
        ],
        ENDPOINTS.items(),
    ):
        for state in ["Ohio", "Wyoming", "Alaska"] if spec.needs_state else [None]:
            body = {"question": OBESITY, **years, **({"state": state} if state else {})}
            got = await _answer(api, endpoint, body)
            want = reference.answer(
                endpoint, OBESITY, state, years.get("year_start"), years.get("year_end")
            )
            assert_close(got, want, where=f"{endpoint} {state} {years}")


async def test_null_years_are_no_range(api, tricky_csv):
    """A client that always sends both fields may send null for "no bound"; 2016.0
    is the year 2016 (an integer to JSON Schema)."""
    for endpoint in ("states_mean", "states_estimate"):
        plain = await _answer(api, endpoint, {"question": OBESITY})
        nulls = await _answer(
            api, endpoint, {"question": OBESITY, "year_start": None, "year_end": None}
        )
        assert nulls == plain
        whole = await _answer(api, endpoint, {"question": OBESITY, "year_start": 2016.0})
        assert (
            whole
            == await _answer(api, endpoint, {"question": OBESITY, "year_start": 2016})
            != plain
        )
        assert_close(plain, Reference(tricky_csv).answer(endpoint, OBESITY))


async def test_the_range_is_part_of_the_answer_cache_key(api):
    """The same question with and without a range: two different answers, each
    right (a worker memoises answers by job_key)."""
    body = {"question": OBESITY, "state": "Ohio"}
    whole = await _answer(api, "state_trend", body)
    years = [int(year) for year in whole["Ohio"]]
    assert len(years) >= 2
    cut = years[len(years) // 2]
    part = await _answer(api, "state_trend", {**body, "year_start": cut})
    again = await _answer(api, "state_trend", body)
    assert whole == again and part != whole
    assert part["Ohio"] == {y: v for y, v in whole["Ohio"].items() if int(y) >= cut}


BAD_RANGES = [
    ({"year_start": "2015"}, "'year_start' must be an integer year"),
    ({"year_end": 2015.5}, "'year_end' must be an integer year"),
    ({"year_end": float("inf")}, "'year_end' must be an integer year"),
    ({"year_start": True}, "'year_start' must be an integer year"),
    ({"year_start": [2015]}, "'year_start' must be an integer year"),
    ({"year_start": 2010}, "year_start 2010 is outside the years the data covers"),
    ({"year_end": 2023}, "year_end 2023 is outside the years the data covers"),
    ({"year_start": 2018, "year_end": 2014}, "year_start 2018 is after year_end 2014"),
    ({"year_end": -5}, "outside"),
]


async def test_bad_year_ranges_name_the_covered_range(api):
    years = await (await api.get("/api/years")).json()
    covered = f"{years['first']}-{years['last']}"
    for (fields, words), endpoint in itertools.product(BAD_RANGES, ENDPOINTS):
        body = {"question": OBESITY, "state": "Ohio", **fields}
        response = await api.post(f"/api/{endpoint}", json=body)
        assert response.status == 400, (endpoint, fields)
        reason = (await response.json())["reason"]
        assert words in reason and covered in reason, reason
    assert (await (await api.get("/api/num_jobs")).json()) == {"num_jobs": 0}


async def test_years_route_and_openapi_bounds(api, tricky_csv):
    years = await (await api.get("/api/years")).json()
    expected = Reference(tricky_csv).years()
    assert years == {
        "first": expected[0],
        "last": expected[-1],
        "years": expected,
        "year_end_column": True,
    }
    document = served(api.running.shared.dataset)
    schema = document["paths"]["/api/state_trend"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    assert schema["required"] == ["question", "state"]
    assert schema["properties"]["year_start"]["minimum"] == expected[0]
    assert schema["properties"]["year_end"]["maximum"] == expected[-1]


def test_a_file_without_year_end_is_served_and_said_so(tmp_path):
    """The subset file variant has YearStart only: YearEnd is taken to be YearStart,
    /api/info and /api/years say so, and so does the log."""
    data = write_rows(tmp_path / "no-end.csv", tricky_rows(4))
    server = start_server(tmp_path, data=data)
    try:
        status, years = server.get("/api/years")
        assert status == 200 and years["year_end_column"] is False
        assert years["years"] == Reference(data).years()
        status, info = server.get("/api/info")
        assert info["years"] == years
        status, body = server.post(
            "/api/states_mean", {"question": OBESITY, "year_end": years["years"][2]}
        )
        assert status == 200, body
    finally:
        assert server.stop() == 0, server.text()
    assert "has no YearEnd column: each row's YearEnd is taken to be its YearStart" in server.text()
