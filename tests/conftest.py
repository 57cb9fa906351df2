from __future__ import annotations

import random

import pytest

from compute import demo
from compute.questions import HIGHER_IS_BETTER, LOWER_IS_BETTER
from tests.support.fixtures import ANALYTICS_HEADER, write_rows
from tests.support.live import STARTED, LiveServer, assert_clean_stop, start_server

NO_DIRECTION = "Percent of adults who eat cake for breakfast"


def tricky_rows(seed: int) -> list[dict]:
    """Small data with everything the statistics must get right: empty and non-numeric
    values, exact ties between states, a state with no values for a question, a
    question with no direction, and a stratification with commas; for the analytics
    extensions, a state with a single year (Wyoming), rows that span two years, and
    empty or non-numeric sample sizes and confidence limits (Alaska has none of its
    obesity limits, so its estimate is null)."""
    rng = random.Random(seed)
    # The analytics columns draw from their own generator, so the values the nine
    # statistics read are the same as before those columns existed.
    extra = random.Random(seed + 1000)
    questions = [*LOWER_IS_BETTER[:2], HIGHER_IS_BETTER[0], NO_DIRECTION]
    states = ["Alabama", "Alaska", "Guam", "National", "Ohio", "Tie One", "Tie Two", "Wyoming"]
    strata = [
        ("Total", "Total"),
        ("Age (years)", "18 - 24"),
        ("Income", "$15,000 - $24,999"),
        ("Gender", "Female"),
    ]
    rows = []
    for question in questions:
        for state in states:
            for category, stratification in strata:
                for _ in range(rng.randint(1, 3)):
                    value = f"{rng.randint(100, 400) / 10}"
                    if rng.random() < 0.15:
                        value = rng.choice(["", "~", "NaN"])
                    if state.startswith("Tie"):
                        value = "25.5"  # two states with exactly the same mean
                    if state == "Guam" and question == LOWER_IS_BETTER[1]:
                        value = ""  # a known state without values for this question
                    year = rng.randint(2011, 2022)
                    if state == "Wyoming":
                        year = 2015
                    low = extra.randint(50, 250) / 10
                    limits = [f"{low}", f"{low + extra.randint(1, 120) / 10}"]
                    if extra.random() < 0.15:
                        limits[extra.randrange(2)] = extra.choice(["", "n/a"])
                    if state == "Alaska" and question == LOWER_IS_BETTER[1]:
                        limits = ["", ""]
                    size = extra.choice([str(extra.randint(30, 6000))] * 8 + ["", "0", "x"])
                    rows.append(
                        {
                            "question": question,
                            "location": state,
                            "value": value,
                            "category": category,
                            "stratification": stratification,
                            "year": year,
                            "year_end": year + (extra.random() < 0.1 and year < 2022),
                            "sample_size": size,
                            "low": limits[0],
                            "high": limits[1],
                        }
                    )
    rng.shuffle(rows)
    return rows


@pytest.fixture(autouse=True)
def no_server_outlives_its_test():
    """A test that fails half-way must not leave its server processes running (they
    would hold ports and shared memory for the rest of the run and beyond). Servers
    of wider-scoped fixtures are started before this runs and are left alone."""
    first = len(STARTED)
    yield
    for server in STARTED[first:]:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(10)
    del STARTED[first:]


@pytest.fixture(scope="session")
def demo_csv(tmp_path_factory):
    return demo.write(tmp_path_factory.mktemp("data") / "demo.csv", count=4000, seed=3)


@pytest.fixture(scope="session", params=[0, 1, 2])
def tricky_csv(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("tricky") / f"tricky-{request.param}.csv"
    return write_rows(path, tricky_rows(request.param), ANALYTICS_HEADER)


@pytest.fixture
def live_on(tmp_path):
    """Start real server processes: `live_on(data, **start_server options)`. After the
    test each must stop cleanly (exit 0) on SIGTERM and leave no shared memory behind
    (the check every end-to-end test makes)."""
    servers: list[LiveServer] = []

    def start(data=None, **options) -> LiveServer:
        where = tmp_path / f"server-{len(servers)}" if servers else tmp_path
        where.mkdir(exist_ok=True)
        servers.append(start_server(where, data=data, **options))
        return servers[-1]

    yield start
    for server in servers:
        assert_clean_stop(server)


@pytest.fixture
def live(live_on, demo_csv):
    """A real server process on the demo data (stopped and checked as by live_on)."""
    return live_on(demo_csv)
